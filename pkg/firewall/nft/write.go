// Kernel writes: the whole table replaced in one batch, or only the set
// elements that changed, and the check that the kernel still holds it.

package nft

import (
	"bytes"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// addElements queues elements in messages of at most chunk elements.
func addElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), chunk)
		// Keep an interval's start and end element in the same message.
		if n < len(elems) && elems[n].IntervalEnd {
			n++
		}
		if err := c.SetAddElements(s, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

func deleteElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for len(elems) > 0 {
		n := min(len(elems), chunk)
		if n < len(elems) && elems[n].IntervalEnd {
			n++
		}
		if err := c.SetDeleteElements(s, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// replace atomically swaps in the whole table: add (so that the delete
// cannot fail), delete, add again and fill, in one netlink batch.
func (b *Backend) replace(c *nftables.Conn, d *desired) error {
	c.AddTable(d.table)
	c.DelTable(d.table)
	c.AddTable(d.table)
	// Chains first: verdict map elements refer to them.
	for _, ch := range d.chains {
		c.AddChain(ch.chain)
	}
	for _, name := range d.counters {
		c.AddObj(&nftables.CounterObj{Table: d.table, Name: name})
	}
	for _, s := range d.sets {
		if err := c.AddSet(s.set, nil); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.set.Name, err)
		}
		if err := s.fill(c, s.set); err != nil {
			return fmt.Errorf("nftables: set %s: %w", s.set.Name, err)
		}
	}
	for _, ch := range d.chains {
		for i, r := range ch.rules {
			rule := &nftables.Rule{Table: d.table, Chain: ch.chain, Exprs: r}
			if ch.notes[i] != "" {
				rule.UserData = userdata.AppendString(nil, userdata.TypeComment, ch.notes[i])
			}
			c.AddRule(rule)
		}
	}
	b.restoreLearned(c, d)
	offset := clockOffset()
	unmute := b.mute()
	err := c.Flush()
	unmute(err == nil)
	if err != nil {
		return fmt.Errorf("nftables: replace table inet %s: %w", TableName, err)
	}
	b.tampered.Store(false)
	// A new table counts from zero, its named counters as its elements.
	b.carry = nil
	b.clockOffset = offset
	return nil
}

// onlineMargin is how close to its deadline an element of the online set
// counts as possibly expired in the kernel already.
const onlineMargin = 2 * time.Second

// diffOnline returns the changes that turn the online set o into s at now:
// a pause deletes one element instead of refilling 1,000 (each refilled
// element is two kernel events, and the refill took most of a pause's
// time). Elements that stay keep their kernel timeouts, which still end at
// the right instants while the clock has not stepped (the caller checks).
// It declines (ok false) when an element to delete may have expired in the
// kernel already: deleting it would fail the batch, and the caller's
// refill handles that case.
func diffOnline(o, s *setSpec, now time.Time) (del, add []nftables.SetElement, ok bool) {
	// Both are rendered in the config's order: what a pause changes is
	// one element in the middle, so only the middle is keyed.
	ol, sl := o.elems, s.elems
	lo, oh, sh := middle(len(ol), len(sl), func(i, j int) bool { return sameElem(ol[i], sl[j]) && o.until[i].Equal(s.until[j]) })
	have := make(map[string]bool, oh-lo)
	for _, e := range ol[lo:oh] {
		have[elemKey(e)] = true
	}
	want := make(map[string]bool, sh-lo)
	var addUntil []time.Time
	for i := lo; i < sh; i++ {
		k := elemKey(sl[i])
		want[k] = true
		if !have[k] {
			add = append(add, sl[i])
			addUntil = append(addUntil, s.until[i])
		}
	}
	for i := lo; i < oh; i++ {
		if want[elemKey(ol[i])] {
			continue
		}
		if u := o.until[i]; !u.IsZero() && u.Before(now.Add(onlineMargin)) {
			return nil, nil, false
		}
		del = append(del, ol[i])
	}
	return del, timed(add, addUntil, now), true
}

// setChange is what turns one applied set into its rendering: a delta
// (del, add) or, for a classic interval set or after a clock step, a
// refill.
type setChange struct {
	o, s     *setSpec
	refill   bool
	del, add []nftables.SetElement
}

// changes lists, set by set, what turns the applied table old into d,
// without the kernel (update writes it). Sets whose elements are the same
// are left out. It fails when d has a set that old lacks: only a replace
// can add it. stepped says that the wall clock stepped since the online
// set was filled (its timeouts must be worked out anew).
func changes(old, d *desired, now time.Time, stepped bool) ([]setChange, error) {
	var out []setChange
	for _, s := range d.sets {
		o := old.set(s.set.Name)
		if o == nil {
			return nil, fmt.Errorf("set %s is not in the applied table", s.set.Name)
		}
		s.set = o.set // keep the kernel's handle
		if s.dynamic {
			continue
		}
		if s.until != nil && !stepped {
			if del, add, ok := diffOnline(o, s, now); ok {
				if len(del)+len(add) > 0 {
					out = append(out, setChange{o: o, s: s, del: del, add: add})
				}
				continue
			}
		}
		if s.rebuild {
			if s.same(o) && (s.until == nil || !stepped) {
				continue
			}
			out = append(out, setChange{o: o, s: s, refill: true})
			continue
		}
		if s.pieces != nil {
			// Only the pieces that changed, between those that did not.
			lo, oh, sh := middle(len(o.pieces), len(s.pieces), func(i, j int) bool { return samePiece(o.pieces[i], s.pieces[j]) })
			if lo == oh && lo == sh {
				continue
			}
			del, add := diffElems((&setSpec{pieces: o.pieces[lo:oh]}).all(), (&setSpec{pieces: s.pieces[lo:sh]}).all())
			out = append(out, setChange{o: o, s: s, del: del, add: add})
			continue
		}
		if sameElems(o.elems, s.elems) {
			continue // also the same rendering, reused from the memo: a pause must not diff 100,000 prefixes
		}
		del, add := diffElems(o.elems, s.elems)
		out = append(out, setChange{o: o, s: s, del: del, add: add})
	}
	return out, nil
}

// update changes set elements only; it returns the number of changes.
func (b *Backend) update(c *nftables.Conn, old, d *desired) (int, error) {
	chs, err := changes(old, d, time.Now(), b.clockStepped())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ch := range chs {
		set := ch.o.set
		if ch.refill {
			if ch.s.until != nil {
				// The refill starts the element counters anew: keep what
				// they counted.
				b.carryCounts(c, set)
				b.clockOffset = clockOffset()
			}
			c.FlushSet(set)
			if err := ch.s.fill(c, set); err != nil {
				return 0, err
			}
			// A refill is an event per element, old and new.
			n += len(ch.o.elems) + len(ch.s.elems)
			continue
		}
		if len(ch.del) > 0 && ch.s.until != nil {
			b.carryDeleted(c, set, ch.del)
		}
		if err := deleteElements(c, set, ch.del); err != nil {
			return 0, err
		}
		if err := addElements(c, set, ch.add); err != nil {
			return 0, err
		}
		n += len(ch.del) + len(ch.add)
	}
	if n == 0 {
		return 0, nil
	}
	if n < muteAbove {
		return n, c.Flush()
	}
	unmute := b.mute()
	err = c.Flush()
	unmute(err == nil)
	return n, err
}

func elemKey(e nftables.SetElement) string {
	k := string(e.Key) + "|" + string(e.KeyEnd) + "|" + e.Comment
	if e.IntervalEnd {
		k += "|end"
	}
	if e.VerdictData != nil {
		k += fmt.Sprintf("|%d:%s", e.VerdictData.Kind, e.VerdictData.Chain)
	}
	return k
}

func sameElems(a, b []nftables.SetElement) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true // the same rendering, reused from the memo
	}
	for i := range a {
		if !sameElem(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameElem is elemKey(a) == elemKey(b) without building the keys: a pause
// compares every element of the per-device maps, 1,000 devices' worth.
func sameElem(a, b nftables.SetElement) bool {
	if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.KeyEnd, b.KeyEnd) || a.Comment != b.Comment || a.IntervalEnd != b.IntervalEnd {
		return false
	}
	if a.VerdictData == nil || b.VerdictData == nil {
		return a.VerdictData == b.VerdictData
	}
	return a.VerdictData.Kind == b.VerdictData.Kind && a.VerdictData.Chain == b.VerdictData.Chain
}

// middle returns where two renderings of a set differ: old[lo:oh] and
// cur[lo:ch] once the elements same at both ends are left out. Both are
// rendered in the config's order, so what a pause or a rename changes is
// a few elements in the middle of thousands, and only those are keyed.
func middle(old, cur int, same func(i, j int) bool) (lo, oh, ch int) {
	for lo < old && lo < cur && same(lo, lo) {
		lo++
	}
	oh, ch = old, cur
	for oh > lo && ch > lo && same(oh-1, ch-1) {
		oh, ch = oh-1, ch-1
	}
	return lo, oh, ch
}

// diffElems returns the elements to delete and to add. A map element whose
// value changes is deleted and added again.
func diffElems(old, cur []nftables.SetElement) (del, add []nftables.SetElement) {
	lo, oh, ch := middle(len(old), len(cur), func(i, j int) bool { return sameElem(old[i], cur[j]) })
	old, cur = old[lo:oh], cur[lo:ch]
	have := make(map[string]bool, len(old))
	for _, e := range old {
		have[elemKey(e)] = true
	}
	want := make(map[string]bool, len(cur))
	for _, e := range cur {
		k := elemKey(e)
		want[k] = true
		if !have[k] {
			add = append(add, e)
		}
	}
	for _, e := range old {
		if !want[elemKey(e)] {
			del = append(del, e)
		}
	}
	return del, add
}

// intact checks cheaply that the kernel still has our table with as many
// chains and sets as we applied. Deleted rules are caught by the monitor
// instead (see Watch), which costs nothing per check: listing the rules of
// thousands of per-device chains would cost a netlink dump each.
func (b *Backend) intact(c *nftables.Conn, d *desired) (bool, string) {
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		return false, "table missing"
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err.Error()
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			n++
		}
	}
	if n != len(d.chains) {
		return false, fmt.Sprintf("%d chains, want %d", n, len(d.chains))
	}
	sets, err := c.GetSets(d.table)
	if err != nil || len(sets) != len(d.sets) {
		return false, fmt.Sprintf("%d sets, want %d", len(sets), len(d.sets))
	}
	return true, ""
}
