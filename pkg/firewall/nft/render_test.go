package nft

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// TestRenderedTable pins, without root, what render builds from a ruleset
// that uses every feature: each set's definition and elements, each
// chain, and each rule's note with its expressions marshalled to the
// netlink bytes the kernel gets — so that a change's effect, the byte
// order of every value included, shows in review (testdata/render.txt,
// -update rewrites it).
func TestRenderedTable(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		// the golden holds a little-endian host's bytes (the VM lab runs
		// the kernel tests on big-endian s390x too)
		t.Skip("the golden is a little-endian host's")
	}
	at := time.Date(2030, 1, 7, 21, 0, 0, 0, time.UTC)
	child, _ := net.ParseMAC("02:c0:00:00:00:0a")
	parent, _ := net.ParseMAC("02:c0:00:00:00:0b")
	rs := &firewall.Ruleset{
		LAN: []string{"br-lan"}, DNSPort: 53, PagePort: 8099, OfflineDNSPort: 5456, FlowLimit: 50, FlowBurst: 1000,
		Bypass: []netip.Prefix{netip.MustParsePrefix("198.51.100.53/32"), netip.MustParsePrefix("2001:db8:53::/128")},
		Profiles: []firewall.Profile{
			{ID: "grownup", Open: true},
			{ID: "kid", Name: "Kid", DNSPort: 5453, Block: []netip.Prefix{
				netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8:bad::/48")},
				Services: []firewall.Service{{Name: "youtube"}, {Name: "roblox", UsedUp: true}}},
			{ID: "little", DNSPort: 5455, Allowlist: true, Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}},
		},
		Devices: []firewall.Device{
			{MAC: child, Name: "Kid phone", Profile: "kid", Offline: []firewall.Interval{{From: at, To: at.Add(10 * time.Hour)}},
				Slow: []firewall.Interval{{From: at.Add(-10 * time.Minute), To: at}}, SlowRate: 1_000_000},
			{MAC: parent, Name: "Parent laptop", Profile: "grownup"},
		},
		Unknown: &firewall.Unknown{Profile: "little", Offline: []firewall.Interval{{From: at, To: at.Add(time.Hour)}}},
	}
	d, err := render(rs, &memo{}, at.Add(-time.Hour), map[string]uint32{"br-lan": 7})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range d.sets {
		t := s.set
		fmt.Fprintf(&b, "set %s type %q map=%v data=%q interval=%v concat=%v timeout=%v/%v dynamic=%v counter=%v size=%d # %s\n",
			t.Name, t.KeyType.Name, t.IsMap, t.DataType.Name, t.Interval, t.Concatenation, t.HasTimeout, t.Timeout, t.Dynamic, t.Counter, t.Size, t.Comment)
		for i, e := range s.all() {
			fmt.Fprintf(&b, "  %x", e.Key)
			if len(e.KeyEnd) > 0 {
				fmt.Fprintf(&b, "-%x", e.KeyEnd)
			}
			if e.IntervalEnd {
				b.WriteString(" end")
			}
			if e.VerdictData != nil {
				fmt.Fprintf(&b, " : %d %s", e.VerdictData.Kind, e.VerdictData.Chain)
			}
			if e.Comment != "" {
				fmt.Fprintf(&b, " # %s", e.Comment)
			}
			if s.until != nil && !s.until[i].IsZero() {
				fmt.Fprintf(&b, " until %s", s.until[i].Format(time.RFC3339))
			}
			b.WriteString("\n")
		}
		if len(s.packed) > 0 {
			fmt.Fprintf(&b, "  packed %d keys of %d bytes: %x\n", len(s.packed)/s.keyLen, s.keyLen, s.packed)
		}
	}
	for _, name := range d.counters {
		fmt.Fprintf(&b, "counter %s\n", name)
	}
	for _, ch := range d.chains {
		c := ch.chain
		fmt.Fprintf(&b, "chain %s", c.Name)
		if c.Hooknum != nil {
			fmt.Fprintf(&b, " type %s hook %d priority %d", c.Type, *c.Hooknum, *c.Priority)
		}
		b.WriteString("\n")
		for i, r := range ch.rules {
			fmt.Fprintf(&b, "  # %s\n", ch.notes[i])
			for _, e := range r {
				raw, err := expr.Marshal(unix.NFPROTO_INET, e)
				if err != nil {
					t.Fatalf("chain %s rule %d: %T: %v", c.Name, i, e, err)
				}
				fmt.Fprintf(&b, "    %-10s %s\n", strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."), hex.EncodeToString(raw))
			}
		}
	}
	path := filepath.Join("testdata", "render.txt")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestRenderedTable -update)", err)
	}
	if string(want) != b.String() {
		t.Errorf("rendered table differs from %s (go test -update and review):\n%s", path, b.String())
	}
}

// Each name read back gives what it was made from; anything else is no
// device's.
func TestNamesAndTheirInverses(t *testing.T) {
	mac, _ := net.ParseMAC("02:c0:00:00:00:0a")
	if got, ok := macOfUsage(usageName(mac)); !ok || got != mac.String() {
		t.Errorf("macOfUsage(usageName(%s)) = %q %v", mac, got, ok)
	}
	for _, name := range []string{"usage_", "usage_02c00000000", "usage_02c00000000a0", "usage_zzc00000000a", "offline_02c00000000a", "usage-02c00000000a"} {
		if got, ok := macOfUsage(name); ok {
			t.Errorf("macOfUsage(%q) = %q, want none", name, got)
		}
	}
}
