package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Cutoff deletes conntrack entries of the devices with the given MACs
// (their IPv4 and IPv6 addresses from the neighbour table) that sel
// selects. Rules alone do not stop a
// flow that the kernel no longer shows to them (flow offload) and a
// connection's first-packet checks have already passed, so every change
// that forbids traffic is followed by this. It is shared by the backends:
// conntrack is the same under nftables and iptables.
func Cutoff(h *netlink.Handle, macs []net.HardwareAddr, sel Flows) (Cut, error) {
	if len(macs) == 0 {
		return Cut{}, nil
	}
	want := map[string]bool{}
	for _, m := range macs {
		want[m.String()] = true
	}
	neighs, err := h.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return Cut{}, fmt.Errorf("neighbours: %w", err)
	}
	f := &flowFilter{src: map[netip.Addr]bool{}, dns: sel.DNS, dnsPort: sel.DNSPort}
	for _, p := range sel.Dests {
		f.add(p)
	}
	for _, n := range neighs {
		if n.IP == nil || n.HardwareAddr == nil || !want[n.HardwareAddr.String()] || n.State&netlink.NUD_NOARP != 0 {
			continue
		}
		if a, ok := netip.AddrFromSlice(n.IP); ok {
			f.src[a.Unmap()] = true
		}
	}
	if len(f.src) == 0 {
		return Cut{}, nil
	}
	var c Cut
	var errs []error
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f)
		c.Flows += int(n)
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.Open = min(f.open, c.Flows)
	return c, errors.Join(errs...)
}

// flowFilter matches flows whose original source is one of src and, when
// dests is set, whose original destination is inside one of them, and
// with dns only flows to port 53. Prefixes
// are kept per length so that a check costs one map lookup per length, not
// one comparison per prefix: a new 100,000-entry list must not turn one
// pass over the conntrack table into minutes.
type flowFilter struct {
	src   map[netip.Addr]bool
	dests map[int]map[netip.Prefix]bool
	dns   bool
	// dnsPort, when set, spares DNS flows redirected to it (see Flows).
	dnsPort uint16
	open    int // matched TCP flows in state ESTABLISHED
}

func (f *flowFilter) add(p netip.Prefix) {
	if f.dests == nil {
		f.dests = map[int]map[netip.Prefix]bool{}
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	if f.dests[p.Bits()] == nil {
		f.dests[p.Bits()] = map[netip.Prefix]bool{}
	}
	f.dests[p.Bits()][p] = true
}

// tcpEstablished is the kernel's TCP_CONNTRACK_ESTABLISHED.
const tcpEstablished = 3

// MatchConntrackFlow implements netlink.CustomConntrackFilter; it counts
// the established TCP connections among the flows it matches.
func (f *flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if !f.match(flow) {
		return false
	}
	if tcp, ok := flow.ProtoInfo.(*netlink.ProtoInfoTCP); ok && tcp.State == tcpEstablished {
		f.open++
	}
	return true
}

func (f *flowFilter) match(flow *netlink.ConntrackFlow) bool {
	src, ok := netip.AddrFromSlice(flow.Forward.SrcIP)
	if !ok || !f.src[src.Unmap()] {
		return false
	}
	if f.dns && (flow.Forward.DstPort != 53 || (flow.Forward.Protocol != unix.IPPROTO_UDP && flow.Forward.Protocol != unix.IPPROTO_TCP)) {
		return false
	}
	if f.dns && f.dnsPort != 0 && flow.Reverse.SrcPort == f.dnsPort {
		return false // already answered by the filter it should go to
	}
	if f.dests == nil {
		return true
	}
	dst, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	if !ok {
		return false
	}
	dst = dst.Unmap()
	for bits, set := range f.dests {
		if p, err := dst.Prefix(bits); err == nil && set[p] {
			return true
		}
	}
	return false
}
