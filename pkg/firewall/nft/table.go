// The rendered table: what render builds and the kernel writes compare,
// set by set and chain by chain.

package nft

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// desired is a rendered ruleset: the structure (chains, rules, set
// definitions) and the elements of every set.
type desired struct {
	// sig identifies the structure; elements may change without it.
	sig   string
	table *nftables.Table
	sets  []*setSpec
	// chains and their rules in creation order (referenced chains first).
	chains []*chainSpec
	// counters are named counter objects, one per device.
	counters []string
}

type setSpec struct {
	set   *nftables.Set
	elems []nftables.SetElement
	// packed holds the keys of a set of plain keys instead of elems,
	// keyLen bytes each (the blocked prefixes).
	packed []byte
	keyLen int
	// rebuild marks classic interval sets, whose start/end element pairs are
	// replaced whole on change (flush and re-add in the same batch) rather
	// than diffed.
	rebuild bool
	// dynamic marks sets whose elements others add at run time (allowlist
	// addresses from the DNS filter): updates leave them alone.
	dynamic bool
	// until holds, for a set with timeouts (the online set), each
	// element's deadline; the zero time means none. Timeouts are relative,
	// so they are worked out when the elements are sent.
	until []time.Time
}

type chainSpec struct {
	chain *nftables.Chain
	rules [][]expr.Any
	notes []string
}

// shape digests what the kernel shows of the table besides set elements:
// each set's definition and comment, each chain's name and hook, each
// rule's note. Part of the signature, so that renaming a device or a
// profile (which changes notes and comments, not the hand-written part)
// replaces the table instead of leaving the old names in the kernel.
func (d *desired) shape() string {
	h := fnv.New64a()
	var b []byte
	str := func(v string) { b = append(append(b, v...), 0) }
	num := func(v int64) { b = append(strconv.AppendInt(b, v, 10), 0) }
	flag := func(v bool) {
		if v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	for _, s := range d.sets {
		t := s.set
		b = b[:0]
		str(t.Name)
		str(t.Comment)
		str(t.KeyType.Name)
		str(t.DataType.Name)
		for _, f := range []bool{t.IsMap, t.Interval, t.Concatenation, t.HasTimeout, t.Dynamic, t.Counter} {
			flag(f)
		}
		num(int64(t.Size))
		num(int64(t.Timeout))
		h.Write(b)
	}
	for _, ch := range d.chains {
		c := ch.chain
		b = b[:0]
		str(c.Name)
		str(string(c.Type))
		if c.Hooknum != nil && c.Priority != nil {
			num(int64(*c.Hooknum))
			num(int64(*c.Priority))
		}
		for _, n := range ch.notes {
			str(n)
		}
		h.Write(b)
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

func (d *desired) set(name string) *setSpec {
	for _, s := range d.sets {
		if s.set.Name == name {
			return s
		}
	}
	return nil
}

// add appends a rule built from expressions and groups of expressions.
func (c *chainSpec) add(note string, parts ...any) {
	var r []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case expr.Any:
			r = append(r, v)
		case []expr.Any:
			r = append(r, v...)
		default:
			panic(fmt.Sprintf("nft: rule part of type %T", p))
		}
	}
	c.rules = append(c.rules, r)
	c.notes = append(c.notes, note)
}

// fill adds the spec's elements to set, a message at a time.
func (s *setSpec) fill(c *nftables.Conn, set *nftables.Set) error {
	if s.until != nil {
		return addElements(c, set, timed(s.elems, s.until, time.Now()))
	}
	if s.packed == nil {
		return addElements(c, set, s.elems)
	}
	buf := make([]nftables.SetElement, 0, chunk)
	for keys := s.packed; len(keys) > 0; {
		buf = buf[:0]
		for len(keys) > 0 && len(buf) < chunk {
			buf = append(buf, nftables.SetElement{Key: keys[:s.keyLen:s.keyLen]})
			keys = keys[s.keyLen:]
		}
		if err := c.SetAddElements(set, buf); err != nil {
			return err
		}
	}
	return nil
}

// same reports whether s holds the same elements as o: for packed sets
// rendered by the prefix memo that is the same backing array.
func (s *setSpec) same(o *setSpec) bool {
	if s.packed != nil || o.packed != nil {
		return len(s.packed) == len(o.packed) && (len(s.packed) == 0 || &s.packed[0] == &o.packed[0])
	}
	return sameElems(o.elems, s.elems)
}

// timed gives each element the timeout that ends it at its deadline.
// Elements whose deadline has passed are left out: the kernel would not
// match them anyway.
func timed(elems []nftables.SetElement, until []time.Time, now time.Time) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(elems))
	for i, e := range elems {
		if !until[i].IsZero() {
			left := until[i].Sub(now)
			if left < time.Millisecond {
				continue
			}
			e.Timeout = left
		}
		out = append(out, e)
	}
	return out
}
