// The rendered table: what render builds and the kernel writes compare,
// set by set and chain by chain.

package nft

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"curfew/pkg/firewall"
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
	// counters are named counter objects, one per device and one per
	// profile's counted service; services gives the latter's profile and
	// service by counter name.
	counters []string
	services map[string]firewall.ServiceKey
	// parts are the configured devices' parts, in the ruleset's order.
	parts []*devicePart
	// windDown says that some device winds down: the hooks mark flows
	// and limit downloads (see winddown.go).
	windDown bool
	// configured and offline are the sets that several steps of render
	// ask for (see configuredSet, offlineMatch), once they are added.
	configured, offline *setSpec

	// byName indexes sets by name once render is done (see set).
	index  sync.Once
	byName map[string]*setSpec
}

type setSpec struct {
	set   *nftables.Set
	elems []nftables.SetElement
	// pieces holds the elements instead of elems in the devices' parts
	// (see devicePart.windows), a piece per device: a pause changes one
	// piece of thousands, and only changed pieces are compared (see
	// changes) or copied.
	pieces [][]nftables.SetElement
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
	// shape is the set's digest for desired.shape, worked out once: a
	// device's set is rendered once and reused while it is unchanged.
	shape uint64
	// until holds, for a set with timeouts (the online set), each
	// element's deadline; the zero time means none. Timeouts are relative,
	// so they are worked out when the elements are sent.
	until []time.Time
}

type chainSpec struct {
	chain *nftables.Chain
	rules [][]expr.Any
	notes []string
	// shape is as setSpec's.
	shape uint64
}

// shape digests what the kernel shows of the table besides set elements:
// each set's definition and comment, each chain's name and hook, each
// rule's note. Part of the signature, so that renaming a device or a
// profile (which changes notes and comments, not the hand-written part)
// replaces the table instead of leaving the old names in the kernel.
func (d *desired) shape() string {
	h := fnv.New64a()
	var sum [8]byte
	for _, s := range d.sets {
		if s.shape == 0 {
			s.shape = s.digest()
		}
		h.Write(binary.LittleEndian.AppendUint64(sum[:0], s.shape))
	}
	for _, ch := range d.chains {
		if ch.shape == 0 {
			ch.shape = ch.digest()
		}
		h.Write(binary.LittleEndian.AppendUint64(sum[:0], ch.shape))
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// shapeWriter writes the fields of a shape digest, each ended so that
// no two sequences of fields run together alike.
type shapeWriter []byte

func (b *shapeWriter) str(v string) { *b = append(append(*b, v...), 0) }
func (b *shapeWriter) num(v int64)  { *b = append(strconv.AppendInt(*b, v, 10), 0) }
func (b *shapeWriter) flag(v bool) {
	if v {
		*b = append(*b, 1)
	} else {
		*b = append(*b, 0)
	}
}

func (b shapeWriter) sum() uint64 {
	h := fnv.New64a()
	h.Write(b)
	return max(h.Sum64(), 1) // 0 means not digested yet
}

// digest is a set's share of shape: its definition and comment.
func (s *setSpec) digest() uint64 {
	t := s.set
	var b shapeWriter
	b.str(t.Name)
	b.str(t.Comment)
	b.str(t.KeyType.Name)
	b.str(t.DataType.Name)
	for _, f := range []bool{t.IsMap, t.Interval, t.Concatenation, t.HasTimeout, t.Dynamic, t.Counter} {
		b.flag(f)
	}
	b.num(int64(t.Size))
	b.num(int64(t.Timeout))
	return b.sum()
}

// digest is a chain's share of shape: its name, hook and rules' notes.
func (ch *chainSpec) digest() uint64 {
	c := ch.chain
	var b shapeWriter
	b.str(c.Name)
	b.str(string(c.Type))
	if c.Hooknum != nil && c.Priority != nil {
		b.num(int64(*c.Hooknum))
		b.num(int64(*c.Priority))
	}
	for _, n := range ch.notes {
		b.str(n)
	}
	return b.sum()
}

// set finds a set of a finished rendering by name: the DNS filter's
// allowlist additions ask on every answer, among a set per device.
func (d *desired) set(name string) *setSpec {
	d.index.Do(func() {
		d.byName = make(map[string]*setSpec, len(d.sets))
		for _, s := range d.sets {
			d.byName[s.set.Name] = s
		}
	})
	return d.byName[name]
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
	if s.pieces != nil {
		return addElements(c, set, s.all())
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
	if s.pieces != nil || o.pieces != nil {
		lo, oh, sh := middle(len(o.pieces), len(s.pieces), func(i, j int) bool { return samePiece(o.pieces[i], s.pieces[j]) })
		return lo == oh && lo == sh
	}
	return sameElems(o.elems, s.elems)
}

// all is the set's elements, whether kept whole or in pieces.
func (s *setSpec) all() []nftables.SetElement {
	if s.pieces == nil {
		return s.elems
	}
	n := 0
	for _, p := range s.pieces {
		n += len(p)
	}
	out := make([]nftables.SetElement, 0, n)
	for _, p := range s.pieces {
		out = append(out, p...)
	}
	return out
}

// samePiece says whether two pieces are one device part's, unchanged.
func samePiece(a, b []nftables.SetElement) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
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
