package ipt

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"curfew/pkg/firewall"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestRenderedRules pins, without root, the rules and ipsets the backend
// renders from a ruleset that uses every feature, in iptables-save's
// words: a change's effect on the kernel shows in review.
func TestRenderedRules(t *testing.T) {
	at := time.Date(2030, 1, 7, 21, 0, 0, 0, time.UTC)
	child, _ := net.ParseMAC("02:c0:00:00:00:0a")
	parent, _ := net.ParseMAC("02:c0:00:00:00:0b")
	rs := &firewall.Ruleset{
		LAN: []string{"br-lan"}, DNSPort: 53, PagePort: 8099, OfflineDNSPort: 5456, FlowLimit: 50, FlowBurst: 1000,
		Bypass: []netip.Prefix{netip.MustParsePrefix("198.51.100.53/32"), netip.MustParsePrefix("2001:db8:53::/128")},
		Profiles: []firewall.Profile{
			{ID: "grownup", Open: true},
			{ID: "kid", Name: "Kid", DNSPort: 5453, Block: []netip.Prefix{
				netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")},
				Services: []firewall.Service{{Name: "youtube"}, {Name: "roblox", UsedUp: true}}},
		},
		Devices: []firewall.Device{
			{MAC: child, Name: "Kid phone", Profile: "kid", Offline: []firewall.Interval{{From: at, To: at.Add(10 * time.Hour)}},
				Slow: []firewall.Interval{{From: at.Add(-10 * time.Minute), To: at}}, SlowRate: 1_000_000},
			{MAC: parent, Name: "Parent laptop", Profile: "grownup"},
		},
		Unknown: &firewall.Unknown{Profile: "kid", Offline: []firewall.Interval{{From: at, To: at.Add(time.Hour)}}},
	}
	r := render(rs)
	rules, sets := r.rules, r.sets
	var b strings.Builder
	keys := make([]chainKey, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b chainKey) int {
		return strings.Compare(fmt.Sprint(a.fam, "/", a.table, "/", a.chain), fmt.Sprint(b.fam, "/", b.table, "/", b.chain))
	})
	for _, k := range keys {
		b.WriteString("# " + k.String() + "\n")
		for _, r := range rules[k] {
			b.WriteString("-A " + k.chain + " " + strings.Join(r, " ") + "\n")
		}
	}
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b.WriteString("# ipset " + n + ":")
		for _, p := range sets[n] {
			b.WriteString(" " + p.String())
		}
		b.WriteString("\n")
	}
	names = names[:0]
	for n := range r.services {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "# ipset %s: hash:ip, IPv%d, timeout (%s of %s)\n", n, r.services[n].fam, r.services[n].key.Service, r.services[n].key.Profile)
	}
	path := filepath.Join("testdata", "rules.txt")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestRenderedRules -update)", err)
	}
	if string(want) != b.String() {
		t.Errorf("rendered rules differ from %s (go test -update and review):\n%s", path, b.String())
	}
}
