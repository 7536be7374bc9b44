// Expression helpers: the small pieces rules are built from, and the
// conversions of instants and ports to what the kernel compares.

package nft

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Kernel meta keys that google/nftables v0.3.0 has no constants for.
const (
	metaTimeNS = expr.MetaKey(30) // NFT_META_TIME_NS: ns since the epoch
)

// reg32 is the nftables register number of 32-bit register i
// (NFT_REG32_00 is 8; the 128-bit register 1 covers NFT_REG32_00 to 03).
func reg32(i uint32) uint32 { return 8 + i }

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func gotoChain(name string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name} }

// etherSaddr loads the source MAC into reg, after checking that the packet
// came in on an Ethernet device. That check is what the nft tool adds for
// `ether saddr`, and without it `nft list` can only show the raw load
// (@ll,48,48): a parent debugging over SSH must read "ether saddr".
func etherSaddr(reg uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_ETHER)},
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
	}
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

// latest is the last instant that kernel time (int64 ns) can hold, in
// 2262: later instants would wrap around to 1677 and enforce nothing.
var latest = time.Unix(0, math.MaxInt64)

// ns converts an instant to kernel time (ns since the epoch), clamped to
// what the kernel can hold.
func ns(t time.Time) uint64 {
	if t.Unix() <= 0 {
		return 0
	}
	if t.After(latest) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// redirectTo redirects a flow to the router's own port (NAT hook).
func redirectTo(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}
