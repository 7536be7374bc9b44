package firewall

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
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
