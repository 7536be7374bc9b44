// The wind-down: in the minutes before an offline window, what a device
// downloads is limited to its profile's rate, by the kernel alone.

package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/shape"
)

// A download is known by its flow, not by a MAC: a routed packet to the
// LAN has no Ethernet destination yet in the forward hook. So the flow
// carries its device from its first packet: the NAT prerouting hook (one
// packet per flow) finds the sender's MAC in wind_mark and jumps to the
// device's mark chain, which writes the device's id into the upper half
// of the conntrack mark (firewall.MarkMask). The forward hook then looks
// up a packet to the LAN by that half of its flow's mark in wind_flows
// and goes to the device's slow chain, which, inside one of the device's
// wind-down intervals (wind_down_M, an interval set of kernel time like
// its offline set), sets the packet's priority to the device's class of
// the shaper on the LAN interface (pkg/firewall/shape), which queues it
// there.

// windDownPart renders what device dev with conntrack mark mark adds
// for the wind-down into its part p.
func windDownPart(t *nftables.Table, p *devicePart, dev firewall.Device, mark uint32, name string) {
	p.slow = timeSet(t, windDownSet(dev.MAC), "wind-down intervals of "+name, dev.Slow)
	p.slowCh = &chainSpec{chain: &nftables.Chain{Name: slowChain(dev.MAC), Table: t}}
	p.slowCh.add(name+": downloads inside a wind-down interval go to its class of the shaper",
		&expr.Meta{Key: metaTimeNS, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: p.slow.set.Name},
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(shape.Priority(uint16(mark >> 16)))},
		&expr.Meta{Key: expr.MetaKeyPRIORITY, Register: 1, SourceRegister: true})
	p.markCh = &chainSpec{chain: &nftables.Chain{Name: markChain(dev.MAC), Table: t}}
	p.markCh.add(name+": its flows carry its id in the conntrack mark's upper half",
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(firewall.MarkMask)),
			Xor:  binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true})
	p.mark = nftables.SetElement{Key: dev.MAC, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: p.markCh.chain.Name}}
	p.flows = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(mark),
		VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: p.slowCh.chain.Name}}
}

// windDownMaps are the maps of the wind-down: a device's MAC to its mark
// chain, a flow's mark to its device's slow chain.
func windDownMaps(t *nftables.Table) (marks, flows *setSpec) {
	marks = &setSpec{set: &nftables.Set{Table: t, Name: "wind_mark", IsMap: true, Size: configuredMax,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "devices that wind down -> the chain that marks their flows"}}
	flows = &setSpec{set: &nftables.Set{Table: t, Name: "wind_flows", IsMap: true, Size: configuredMax,
		KeyType: nftables.TypeMark, DataType: nftables.TypeVerdict,
		Comment: "a flow's device id (conntrack mark & 0xffff0000) -> its device's wind-down"}}
	return marks, flows
}

// markRule is the NAT prerouting rule that marks the flows of a device
// that winds down (the jump returns to the rest of the chain).
func markRule(lan string) []expr.Any {
	return append(append(ifname(expr.MetaKeyIIFNAME, lan), etherSaddr(1)...),
		&expr.Lookup{SourceRegister: 1, SetName: "wind_mark", DestRegister: 0, IsDestRegSet: true})
}

// slowRule is the forward hook's rule that sends a packet to the LAN to
// its flow's device's slow chain (which returns: the packet goes on).
func slowRule(lan string) []expr.Any {
	return append(ifname(expr.MetaKeyOIFNAME, lan),
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(firewall.MarkMask),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Lookup{SourceRegister: 1, SetName: "wind_flows", DestRegister: 0, IsDestRegSet: true})
}
