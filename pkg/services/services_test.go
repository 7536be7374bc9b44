package services

import (
	"strings"
	"testing"
)

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

// What the lists were extended by reaches its service: a TikTok video
// from the EU CDN, a Twitch stream's segments.
func TestTheExtendedDomainsBelongToTheirService(t *testing.T) {
	for name, want := range map[string]string{
		"v16-webapp.tiktokcdn-eu.com":           "tiktok",
		"video-weaver.fra02.hls.live-video.net": "twitch",
		"cf-st.sc-cdn.net":                      "snapchat",
		"scontent.cdninstagram.com":             "instagram",
		"occ-0-1-2.1.nflxso.net":                "netflix",
		"prod.pscp.tv":                          "x",
	} {
		if got := Of(name); got != want {
			t.Errorf("Of(%q) = %q, want %q", name, got, want)
		}
	}
}

// Every listed domain is one the DNS filter can match: lower case,
// letters, digits, '-' and dots, at least two labels, listed once.
func TestTheCatalogueListsOnlyDomains(t *testing.T) {
	for _, s := range Builtin().All() {
		seen := map[string]bool{}
		for _, d := range s.Domains {
			ok := strings.Count(d, ".") >= 1 && !strings.HasPrefix(d, ".") && !strings.HasSuffix(d, ".") && !strings.Contains(d, "..")
			for _, c := range d {
				ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.')
			}
			if !ok || seen[d] {
				t.Errorf("%s: %q is not a domain, or is listed twice", s.Name, d)
			}
			seen[d] = true
		}
	}
}
