package devices

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDnsmasq(t *testing.T) {
	leases, bad, err := ParseDnsmasq(os.DirFS("testdata"), "dhcp.leases")
	if err != nil {
		t.Fatal(err)
	}
	if bad != 2 {
		t.Errorf("bad lines = %d, want 2", bad)
	}
	if len(leases) != 4 {
		t.Fatalf("leases = %+v", leases)
	}
	l := leases[0]
	if l.MAC != "aa:bb:cc:dd:ee:01" || l.Addr.String() != "192.0.2.100" || l.Hostname != "Alices-iPhone" || l.ClientID != "01:aa:bb:cc:dd:ee:01" || l.Expiry.Unix() != 1798300000 {
		t.Errorf("lease 0 = %+v", l)
	}
	if leases[2].Hostname != "" || !leases[2].Expiry.IsZero() {
		t.Errorf("'*' host and infinite lease: %+v", leases[2])
	}
	if v6 := leases[3]; v6.MAC != "" || v6.Addr.String() != "2001:db8:1::100" || v6.Hostname != "Alices-iPhone" {
		t.Errorf("IPv6 lease = %+v", v6)
	}
}

func TestParseOdhcpd(t *testing.T) {
	data, _ := os.ReadFile("testdata/odhcpd.json")
	now := time.Unix(1798300000, 0)
	leases, err := ParseOdhcpd(data, now)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(leases, func(a, b Lease) int { return strings.Compare(a.MAC, b.MAC) })
	if len(leases) != 3 || leases[0].MAC != "aa:bb:cc:dd:ee:03" || leases[0].Hostname != "Bobs-Tablet" || !leases[0].Expiry.Equal(now.Add(time.Hour)) {
		t.Fatalf("leases = %+v", leases)
	}
	// odhcpd keeps a name as the device sent it and flags it: markup, or
	// any name odhcpd calls broken, is no name
	for _, l := range leases[1:] {
		if l.Hostname != "" {
			t.Errorf("%s: host name %q kept", l.MAC, l.Hostname)
		}
	}
	if _, err := ParseOdhcpd([]byte("{"), now); err == nil || !strings.Contains(err.Error(), "odhcpd") {
		t.Errorf("err = %v", err)
	}
}

func TestHostName(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"an iPhone's name", "Alices-iPhone", "Alices-iPhone"},
		{"a Windows name with an underscore", "DESKTOP_7F3K2", "DESKTOP_7F3K2"},
		{"a fully qualified name", "tablet.lan.", "tablet.lan."},
		{"markup", `<img src=x onerror="x()">Tablet`, ""},
		{"quotes", `Bob's-phone`, ""},
		{"a space", "Bob phone", ""},
		{"a control character", "tab\x07let", ""},
		{"a right-to-left override", "tab\u202elet", ""},
		{"an empty label", "a..b", ""},
		{"a label of 64 bytes", strings.Repeat("a", 64), ""},
		{"a label of 63 bytes", strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{"254 bytes in all", strings.Repeat("abc.", 63) + "ab", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HostName(tc.in); got != tc.want {
				t.Errorf("HostName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// legal reports whether a parsed lease's host name could be one: what
// the parsers keep must pass HostName unchanged.
func legal(l Lease) bool { return HostName(l.Hostname) == l.Hostname }

func FuzzParseDnsmasq(f *testing.F) {
	data, _ := os.ReadFile("testdata/dhcp.leases")
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		leases, _, _ := parseDnsmasq(strings.NewReader(string(data)))
		for _, l := range leases {
			if !l.Addr.IsValid() || (l.Addr.Is4() && len(l.MAC) != 17) || !legal(l) {
				t.Fatalf("bad lease accepted: %+v", l)
			}
		}
	})
}

func FuzzParseOdhcpd(f *testing.F) {
	data, _ := os.ReadFile("testdata/odhcpd.json")
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		leases, err := ParseOdhcpd(data, time.Unix(0, 0))
		if err != nil {
			return
		}
		for _, l := range leases {
			if len(l.MAC) != 17 || !l.Addr.IsValid() || !legal(l) {
				t.Fatalf("bad lease accepted: %+v", l)
			}
		}
	})
}
