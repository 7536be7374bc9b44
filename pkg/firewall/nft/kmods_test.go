package nft

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"curfew/pkg/firewall"
)

// everything is a ruleset that uses every part of the table: windows,
// blocks, an allowlist, DoH addresses, unknown devices, the page and the
// flow limit.
func everything() *firewall.Ruleset {
	now := time.Date(2030, 1, 7, 21, 0, 0, 0, time.UTC)
	child, _ := net.ParseMAC("02:c0:00:00:00:0a")
	parent, _ := net.ParseMAC("02:c0:00:00:00:14")
	return &firewall.Ruleset{
		LAN: []string{"br-lan"}, DNSPort: 53, PagePort: 8099, FlowLimit: 50, FlowBurst: 1000,
		Bypass: []netip.Prefix{netip.MustParsePrefix("198.51.100.9/32"), netip.MustParsePrefix("2001:db8::9/128")},
		Profiles: []firewall.Profile{
			{ID: "kid", Block: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}, DNSPort: 5453},
			{ID: "little", Allowlist: true, Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")}, DNSPort: 5454},
			{ID: "parents", Open: true},
		},
		Devices: []firewall.Device{
			{MAC: child, Name: "Kid phone", Profile: "kid", Offline: []firewall.Interval{{From: now, To: now.Add(time.Hour)}},
				Slow: []firewall.Interval{{From: now.Add(-10 * time.Minute), To: now}}, SlowRate: 1_000_000},
			{MAC: parent, Name: "Parent laptop", Profile: "parents"},
		},
		Unknown: &firewall.Unknown{Profile: "kid", Offline: []firewall.Interval{{From: now, To: now.Add(time.Hour)}}},
	}
}

// kernelConfig is the kernel option each part of the table needs: the
// expression types, set features and chain types in a rendered table.
func kernelConfig(d *desired) []string {
	need := map[string]bool{
		// (the inet family is part of nf_tables itself, a target option)
		"CONFIG_NF_TABLES": true, "CONFIG_NF_TABLES_SET": true,
		// the daemon cuts connections through conntrack's netlink
		"CONFIG_NF_CT_NETLINK": true,
	}
	var walk func(e expr.Any)
	walk = func(e expr.Any) {
		switch e := e.(type) {
		case *expr.Counter:
			need["CONFIG_NFT_COUNTER"] = true
		case *expr.Objref:
			need["CONFIG_NFT_OBJREF"] = true
		case *expr.Ct:
			need["CONFIG_NFT_CT"] = true
		case *expr.Limit:
			need["CONFIG_NFT_LIMIT"] = true
		case *expr.Redir:
			need["CONFIG_NFT_REDIR"] = true
		case *expr.Reject:
			need["CONFIG_NFT_REJECT_INET"] = true
		case *expr.Fib:
			need["CONFIG_NFT_FIB_INET"] = true
		case *expr.Dynset:
			for _, x := range e.Exprs {
				walk(x)
			}
		case *expr.Meta, *expr.Payload, *expr.Cmp, *expr.Immediate, *expr.Bitwise, *expr.Byteorder,
			*expr.Verdict, *expr.Lookup, *expr.Range:
			// nf_tables itself, or its sets
		default:
			need["unmapped "+reflect.TypeOf(e).String()] = true
		}
	}
	for _, c := range d.chains {
		if c.chain.Type == nftables.ChainTypeNAT {
			need["CONFIG_NFT_NAT"] = true
		}
		for _, r := range c.rules {
			for _, e := range r {
				walk(e)
			}
		}
	}
	for _, s := range d.sets {
		if s.set.Counter {
			need["CONFIG_NFT_COUNTER"] = true
		}
	}
	if len(d.counters) > 0 {
		need["CONFIG_NFT_COUNTER"] = true
	}
	var out []string
	for k := range need {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// openwrtKmods reads, from OpenWrt's netfilter makefiles of one release,
// which kmod package carries each kernel option, and each kmod's
// dependencies.
func openwrtKmods(t *testing.T, include, packages string) (carrier map[string]string, deps map[string][]string) {
	t.Helper()
	inc, err := os.ReadFile(include)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile(packages)
	if err != nil {
		t.Fatal(err)
	}
	group := map[string]string{} // CONFIG_X -> NFT_CORE
	for _, m := range regexp.MustCompile(`nf_add,(\w+),(CONFIG_\w+),`).FindAllStringSubmatch(string(inc), -1) {
		if _, ok := group[m[2]]; !ok {
			group[m[2]] = m[1]
		}
	}
	carrier, deps = map[string]string{}, map[string][]string{}
	for _, def := range regexp.MustCompile(`(?ms)^define KernelPackage/([\w-]+)\n(.*?)^endef`).FindAllStringSubmatch(string(pkg), -1) {
		kmod, body := "kmod-"+def[1], def[2]
		for _, m := range regexp.MustCompile(`\$\((\w+)-m\)|\$\(KCONFIG_(\w+)\)`).FindAllStringSubmatch(body, -1) {
			g := m[1] + m[2]
			for cfg, gr := range group {
				if gr == g && carrier[cfg] == "" {
					carrier[cfg] = kmod
				}
			}
		}
		for _, m := range regexp.MustCompile(`(CONFIG_\w+)`).FindAllStringSubmatch(body, -1) {
			if _, grouped := group[m[1]]; !grouped && carrier[m[1]] == "" && !strings.Contains(body, m[1]+"=") {
				carrier[m[1]] = kmod
			}
		}
		for _, m := range regexp.MustCompile(`\+(?:\w+:)?(kmod-[\w-]+)`).FindAllStringSubmatch(body, -1) {
			deps[kmod] = append(deps[kmod], m[1])
		}
	}
	return carrier, deps
}

// TestPackageDependsOnTheKmodsTheTableNeeds: the package's DEPENDS names
// kmods that carry every kernel module the rendered table uses, in each
// OpenWrt release's netfilter makefiles (copies in shared/openwrt/ref). A
// table that needs a module no dependency brings is refused on a router
// without it: nothing enforced.
func TestPackageDependsOnTheKmodsTheTableNeeds(t *testing.T) {
	ref := filepath.Join("..", "..", "..", "..", "shared", "openwrt", "ref")
	if _, err := os.Stat(ref); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("OpenWrt's netfilter makefiles: %v (CI has shared/ beside the repository)", err)
		}
		t.Skipf("OpenWrt's netfilter makefiles: %v", err)
	}
	mk, err := os.ReadFile(filepath.Join("..", "..", "..", "openwrt", "curfew", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)DEPENDS:=\$\(GO_ARCH_DEPENDS\)(.*?)\nendef`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no DEPENDS in openwrt/curfew/Makefile")
	}
	var direct []string
	for _, d := range regexp.MustCompile(`\+(kmod-[\w-]+)`).FindAllSubmatch(m[1], -1) {
		direct = append(direct, string(d[1]))
	}
	d, err := render(everything(), &memo{}, time.Date(2030, 1, 7, 20, 0, 0, 0, time.UTC), map[string]uint32{"br-lan": 7})
	if err != nil {
		t.Fatal(err)
	}
	need := kernelConfig(d)
	t.Logf("the table needs %s; DEPENDS names %s", strings.Join(need, " "), strings.Join(direct, " "))
	for _, release := range []string{"v23.05.6", "v24.10.5", "v25.12.0-rc4"} {
		carrier, deps := openwrtKmods(t, filepath.Join(ref, "include-netfilter.mk."+release),
			filepath.Join(ref, "package-kernel-linux-modules-netfilter.mk."+release))
		brought := map[string]bool{}
		var add func(k string)
		add = func(k string) {
			if brought[k] {
				return
			}
			brought[k] = true
			for _, d := range deps[k] {
				add(d)
			}
		}
		for _, k := range direct {
			add(k)
		}
		for _, cfg := range need {
			k, ok := carrier[cfg]
			switch {
			case !ok:
				t.Errorf("%s: no kmod carries %s", release, cfg)
			case !brought[k]:
				t.Errorf("%s: %s is in %s, which the package's DEPENDS (%s) does not bring", release, cfg, k, strings.Join(direct, " "))
			}
		}
		for _, k := range direct {
			if k == "kmod-sched-core" {
				continue // the wind-down's shaper (sch_htb, pkg/firewall/shape), not netfilter
			}
			used := slices.ContainsFunc(need, func(cfg string) bool { return carrier[cfg] == k })
			if !used {
				t.Errorf("%s: DEPENDS names %s, but the table needs none of its modules", release, k)
			}
		}
	}
}
