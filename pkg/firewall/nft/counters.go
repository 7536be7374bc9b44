// Counters: screen-time bytes per device (kept across a refill of the
// online set) and the connections flow_limit dropped.

package nft

import (
	"context"
	"encoding/binary"
	"net"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// carryCounts adds what the online set's element counters hold to carry,
// by MAC, before the set is refilled.
func (b *Backend) carryCounts(c *nftables.Conn, set *nftables.Set) {
	elems, err := c.GetSetElements(set)
	if err != nil {
		b.log.Warn("nftables: online set counters not read before refilling it", "err", err)
		return
	}
	if b.carry == nil {
		b.carry = map[string]uint64{}
	}
	addElementBytes(b.carry, elems)
}

// carryDeleted adds what the online set's elements del counted to carry,
// before they are deleted. It asks the kernel for those elements alone
// (see elementBytes); a kernel that will not answer so gets the whole set
// dumped, which at 5,000 devices was half of a pause.
func (b *Backend) carryDeleted(c *nftables.Conn, set *nftables.Set, del []nftables.SetElement) {
	if b.carry == nil {
		b.carry = map[string]uint64{}
	}
	keys := make([][]byte, len(del))
	for i, e := range del {
		keys[i] = e.Key
	}
	by, err := b.elementBytes(set.Name, keys)
	if err == nil {
		for mac, n := range by {
			b.carry[mac] += n
		}
		return
	}
	b.log.Debug("nftables: single elements not read, dumping the set", "err", err)
	elems, err := c.GetSetElements(set)
	if err != nil {
		b.log.Warn("nftables: online set counters not read before deleting elements", "err", err)
		return
	}
	gone := make(map[string]bool, len(del))
	for _, e := range del {
		gone[string(e.Key)] = true
	}
	deleted := elems[:0]
	for _, e := range elems {
		if gone[string(e.Key)] {
			deleted = append(deleted, e)
		}
	}
	addElementBytes(b.carry, deleted)
}

// elementBytes reads, by MAC, the bytes the elements with these keys of
// a set with counters counted: NFT_MSG_GETSETELEM without NLM_F_DUMP,
// which the kernel answers with each element it looks up (the netlink
// library only dumps whole sets).
func (b *Backend) elementBytes(set string, keys [][]byte) (map[string]uint64, error) {
	ae := mnl.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *mnl.AttributeEncoder) error {
		for _, k := range keys {
			list.Nested(unix.NFTA_LIST_ELEM, func(e *mnl.AttributeEncoder) error {
				e.Nested(unix.NFTA_SET_ELEM_KEY, func(v *mnl.AttributeEncoder) error {
					v.Bytes(unix.NFTA_DATA_VALUE, k)
					return nil
				})
				return nil
			})
		}
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	conn, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: b.opts.NetNSFd})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	msgs, err := conn.Execute(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: mnl.Request | mnl.Acknowledge},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if err := elementsBytes(m.Data[4:], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// elementsBytes reads the key and counter of each element of a
// NEWSETELEM message's attributes into out.
func elementsBytes(b []byte, out map[string]uint64) error {
	ad, err := mnl.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *mnl.AttributeDecoder) error {
			for list.Next() {
				var key []byte
				var bytes uint64
				list.Nested(func(e *mnl.AttributeDecoder) error {
					for e.Next() {
						switch e.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							e.Nested(func(v *mnl.AttributeDecoder) error {
								for v.Next() {
									if v.Type() == unix.NFTA_DATA_VALUE {
										key = v.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_EXPR:
							e.Nested(func(x *mnl.AttributeDecoder) error { bytes += counterBytes(x); return nil })
						case nftables.NFTA_SET_ELEM_EXPRESSIONS:
							e.Nested(func(xs *mnl.AttributeDecoder) error {
								for xs.Next() {
									xs.Nested(func(x *mnl.AttributeDecoder) error { bytes += counterBytes(x); return nil })
								}
								return nil
							})
						}
					}
					return nil
				})
				if len(key) >= 6 {
					out[net.HardwareAddr(key[:6]).String()] += bytes
				}
			}
			return nil
		})
	}
	return ad.Err()
}

// counterBytes is a counter expression's bytes (0 for other expressions).
func counterBytes(x *mnl.AttributeDecoder) uint64 {
	var name string
	var n uint64
	for x.Next() {
		switch x.Type() {
		case unix.NFTA_EXPR_NAME:
			name = x.String()
		case unix.NFTA_EXPR_DATA:
			x.Nested(func(d *mnl.AttributeDecoder) error {
				d.ByteOrder = binary.BigEndian
				for d.Next() {
					if d.Type() == unix.NFTA_COUNTER_BYTES {
						n = d.Uint64()
					}
				}
				return nil
			})
		}
	}
	if name != "counter" {
		return 0
	}
	return n
}

// addElementBytes adds the bytes each element of the online set counted to
// its MAC's total.
func addElementBytes(by map[string]uint64, elems []nftables.SetElement) {
	for _, e := range elems {
		if e.Counter != nil && len(e.Key) >= 6 {
			by[net.HardwareAddr(e.Key[:6]).String()] += e.Counter.Bytes
		}
	}
}

// Counters returns the bytes each device sent through curfew so far, by
// MAC: what its named counter counted on the chains' way and what its
// element of the online set counted on the fast path. A replaced table
// starts again from zero.
func (b *Backend) Counters(ctx context.Context) (_ map[string]uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	c, err := b.conn()
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	objs, err := c.GetObjects(t)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for mac, n := range b.carry {
		out[mac] = n
	}
	if b.applied != nil {
		if s := b.applied.set("online"); s != nil {
			elems, err := c.GetSetElements(s.set)
			if err != nil {
				return nil, err
			}
			addElementBytes(out, elems)
		}
	}
	for _, o := range objs {
		co, ok := o.(*nftables.CounterObj)
		if !ok {
			continue
		}
		if mac, ok := macOfUsage(co.Name); ok {
			out[mac] += co.Bytes
		}
	}
	return out, nil
}

// FlowDrops returns, by MAC, how many new connections the kernel dropped
// because the device went over flow_limit: counts that run while the
// device keeps going over and start again after flowDroppedFor without.
func (b *Backend) FlowDrops(ctx context.Context) (_ map[string]uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	if b.applied == nil {
		return nil, nil
	}
	out := map[string]uint64{}
	for _, name := range []string{"flow_dropped", "flow_dropped_unknown"} {
		s := b.applied.set(name)
		if s == nil {
			continue
		}
		c, err := b.conn()
		if err != nil {
			return nil, err
		}
		elems, err := c.GetSetElements(s.set)
		if err != nil {
			return nil, err
		}
		for _, e := range elems {
			if e.Counter != nil && len(e.Key) >= 6 {
				out[net.HardwareAddr(e.Key[:6]).String()] += e.Counter.Packets
			}
		}
	}
	return out, nil
}
