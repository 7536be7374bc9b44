package services

import "testing"

func TestOfFindsTheServiceOfANameUnderItsDomains(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"www.youtube.com", "youtube"},
		{"youtube.com", "youtube"},
		{"r3---sn-4g5e6nzz.googlevideo.com", "youtube"},
		{"twitter.com", "x"},
		{"notyoutube.com", ""},
		{"com", ""},
		{"", ""},
		{"example.org", ""},
	} {
		if got := Of(c.name); got != c.want {
			t.Errorf("Of(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}
