package firewall

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestFlowFilterMatchesSourceAndDestination(t *testing.T) {
	f := &flowFilter{src: map[netip.Addr]bool{
		netip.MustParseAddr("192.0.2.10"): true, netip.MustParseAddr("2001:db8:1::10"): true}}
	flow := func(src, dst string) *netlink.ConntrackFlow {
		return &netlink.ConntrackFlow{Forward: netlink.IPTuple{SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}}
	}
	if !f.MatchConntrackFlow(flow("192.0.2.10", "198.51.100.1")) || !f.MatchConntrackFlow(flow("2001:db8:1::10", "2001:db8:100::1")) {
		t.Error("without destinations every flow of the device matches")
	}
	if f.MatchConntrackFlow(flow("192.0.2.20", "198.51.100.1")) {
		t.Error("another device's flow matched")
	}
	f.add(netip.MustParsePrefix("203.0.113.0/24"))
	f.add(netip.MustParsePrefix("2001:db8:bad::/48"))
	for _, tc := range []struct {
		src, dst string
		want     bool
	}{
		{"192.0.2.10", "203.0.113.77", true},
		{"192.0.2.10", "198.51.100.1", false},
		{"2001:db8:1::10", "2001:db8:bad:1::5", true},
		{"2001:db8:1::10", "2001:db8:100::1", false},
		{"192.0.2.20", "203.0.113.77", false},
	} {
		if got := f.MatchConntrackFlow(flow(tc.src, tc.dst)); got != tc.want {
			t.Errorf("%s -> %s: %v, want %v", tc.src, tc.dst, got, tc.want)
		}
	}
}

// A device's DNS flows are cut when its DNS goes elsewhere now, except
// those the kernel already redirected to the filter it should reach: a
// query in flight there must keep its conntrack entry to be answered.
func TestDNSCutSparesFlowsAlreadyAtTheirFilter(t *testing.T) {
	f := &flowFilter{src: map[netip.Addr]bool{netip.MustParseAddr("192.0.2.10"): true}, dns: true, dnsPort: 5301}
	dns := func(dst string, answeredFrom uint16) *netlink.ConntrackFlow {
		return &netlink.ConntrackFlow{
			Forward: netlink.IPTuple{SrcIP: net.ParseIP("192.0.2.10"), DstIP: net.ParseIP(dst), DstPort: 53, Protocol: unix.IPPROTO_UDP},
			Reverse: netlink.IPTuple{SrcIP: net.ParseIP("192.0.2.1"), SrcPort: answeredFrom, Protocol: unix.IPPROTO_UDP},
		}
	}
	for _, tc := range []struct {
		name string
		flow *netlink.ConntrackFlow
		want bool
	}{
		{"a flow to an outside resolver, not redirected", dns("198.51.100.1", 53), true},
		{"a flow redirected to another profile's filter", dns("198.51.100.1", 5302), true},
		{"a flow redirected to the filter it should reach", dns("198.51.100.1", 5301), false},
	} {
		if got := f.MatchConntrackFlow(tc.flow); got != tc.want {
			t.Errorf("%s: cut %v, want %v", tc.name, got, tc.want)
		}
	}
}
