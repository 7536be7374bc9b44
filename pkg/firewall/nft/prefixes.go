// Blocked prefixes, grouped by length into plain sets (a lookup per
// length, cheaper than an interval set), and remembered between renders.

package nft

import (
	"hash/fnv"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// prefixMemo keeps the rendered elements of each profile's blocked
// prefixes: with 100,000 prefixes, grouping them again for every pause
// would dominate a one-device change.
type prefixMemo map[string]prefixRendering

type prefixRendering struct {
	fingerprint uint64
	groups      []prefixGroup
	// first and n identify the slice rendered: the same slice again (the
	// daemon's PrefixCache hands it back while the list is unchanged)
	// needs no fingerprint either
	first *netip.Prefix
	n     int
}

func (m *prefixMemo) groups(profile string, ps []netip.Prefix) []prefixGroup {
	if r, ok := (*m)[profile]; ok && len(ps) > 0 && r.first == &ps[0] && r.n == len(ps) {
		return r.groups
	}
	h := fnv.New64a()
	var buf [18]byte
	for _, p := range ps {
		a := p.Addr().As16()
		copy(buf[:16], a[:])
		buf[16] = byte(p.Bits())
		buf[17] = 0
		if p.Addr().Is4() {
			buf[17] = 1 // ::ffff:a.b.c.d and a.b.c.d differ
		}
		h.Write(buf[:])
	}
	fp := h.Sum64()
	var first *netip.Prefix
	if len(ps) > 0 {
		first = &ps[0]
	}
	if r, ok := (*m)[profile]; ok && r.fingerprint == fp {
		r.first, r.n = first, len(ps)
		(*m)[profile] = r
		return r.groups
	}
	g := groupPrefixes(ps)
	if *m == nil {
		*m = prefixMemo{}
	}
	(*m)[profile] = prefixRendering{fingerprint: fp, groups: g, first: first, n: len(ps)}
	return g
}

// prefixGroup is every blocked prefix of one family and length: a hash set
// of masked addresses, looked up as `ip daddr & mask @set`. The addresses
// are kept packed (4 or 16 bytes each, one allocation): 100,000 prefixes
// as nftables.SetElement values would hold about 13 MB for as long as the
// rules are in force; elements are made a netlink message at a time when
// the set is (re)filled.
type prefixGroup struct {
	v6   bool
	bits int
	keys []byte
}

// size is the length of one packed address.
func (g prefixGroup) size() int {
	if g.v6 {
		return 16
	}
	return 4
}

// groupPrefixes splits prefixes by family and length. One hash lookup per
// length present costs the same for 10 or 100,000 prefixes; an interval set
// (a red-black tree) was measured at 0.7 of the no-table forwarding rate
// with 100,000 entries.
func groupPrefixes(ps []netip.Prefix) []prefixGroup {
	type key struct {
		v6   bool
		bits int
	}
	seen := map[netip.Prefix]bool{}
	byKey := map[key]*prefixGroup{}
	var keys []key
	for _, p := range ps {
		p = p.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		k := key{!p.Addr().Is4(), p.Bits()}
		g, ok := byKey[k]
		if !ok {
			g = &prefixGroup{v6: k.v6, bits: k.bits}
			byKey[k] = g
			keys = append(keys, k)
		}
		g.keys = append(g.keys, p.Addr().AsSlice()...)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].v6 != keys[j].v6 {
			return !keys[i].v6
		}
		return keys[i].bits > keys[j].bits
	})
	out := make([]prefixGroup, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out
}

// prefixRange is a prefix as classic interval-set elements: its first
// address, and the address after its last flagged IntervalEnd (none when
// the prefix reaches the end of the address space).
func prefixRange(p netip.Prefix) []nftables.SetElement {
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	out := []nftables.SetElement{{Key: first.AsSlice()}}
	if end := last.Next(); end.IsValid() {
		out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return out
}

// maskBytes is a network mask of bits ones in size bytes.
func maskBytes(bits, size int) []byte {
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// daddr loads the destination address of an IPv4 (fam 4) or IPv6 packet
// into register 1; other packets do not match.
func daddr(fam int) []expr.Any {
	proto, off, size := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if fam == 6 {
		proto, off, size = unix.NFPROTO_IPV6, 24, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
	}
}
