// Package nft is curfew's nftables backend: it renders a firewall.Ruleset
// into its own table, `table inet curfew`, over netlink (no nft binary at
// run time).
//
// Layout of the table (see README.md of this package for the hooks):
//
//	chain forward    hook forward, priority filter - 10: runs before fw4's
//	                 forward chain (priority filter). A reject here is final
//	                 whatever fw4 accepts later; an accept is not, so fw4's
//	                 own policy still applies to what we let through.
//	chain managed    per packet from a LAN interface: LAN-to-LAN returns,
//	                 then "ether saddr vmap @device_chain" goes to the device's
//	                 chain; MACs not listed fall through to the unknown
//	                 profile ("meta time @unknown_offline", then its chain).
//	chain device_M   "meta time @offline_M" rejects device M inside one of
//	                 its offline intervals, else on to its profile chain.
//	chain profile_X  DoT (853) and blocked prefixes of profile X.
//	chain dns        hook prerouting, priority dstnat - 10: DNS from managed
//	                 devices to any address is redirected to the router;
//	                 first, chain page sends plain HTTP of a device that is
//	                 offline now to the daemon's bedtime page.
//
// All changing data lives in sets and maps, so the per-packet cost does not
// grow with the number of devices or blocked prefixes, and a change for one
// device is a change of set elements. Offline intervals are absolute
// instants (an interval set of kernel time per device): the kernel starts and
// ends the coming week's windows on its own, at the right instant across
// DST, with no daemon running.
package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// TableName is the name of curfew's table in the inet family.
const TableName = "curfew"

// Kernel meta keys that google/nftables v0.3.0 has no constants for.
const (
	metaTimeNS = expr.MetaKey(30) // NFT_META_TIME_NS: ns since the epoch
)

// Options configure a Backend.
type Options struct {
	// NetNSFd, when non-zero, is a network namespace to work in (tests);
	// zero means the current one.
	NetNSFd int
	// Netlink is the handle for links, neighbours and conntrack in that
	// namespace; nil means one of the current namespace's, opened at first
	// use and kept (see handle).
	Netlink *netlink.Handle
	Log     *slog.Logger
}

// Backend is the nftables backend.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	applied *desired
	// tampered is set when another process deleted part of our table.
	tampered atomic.Bool
	// watching is the monitor Watch runs, nil while none does.
	watching atomic.Pointer[monitor]
	memo     prefixMemo
	// allowed remembers allowlist additions and when they expire.
	allowed map[string]map[netip.Addr]time.Time
	// carry holds, by MAC, the bytes that elements of the online set had
	// counted when they were deleted or the set refilled (a new element
	// counts from zero), so that Counters only ever grows until the table
	// is replaced.
	carry map[string]uint64
	// clockOffset is the wall clock minus the monotonic clock when the
	// online set was last filled: its element timeouts run on the
	// monotonic clock, so a step of the wall clock (NTP's first sync)
	// must refill it.
	clockOffset time.Duration
	// nl is the netlink connection to nf_tables, kept open from one call
	// to the next; nil before the first and after an error (see conn).
	nl *nftables.Conn
	// hmu guards h, the kept netlink handle (see handle).
	hmu sync.Mutex
	h   *netlink.Handle
}

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

// What the backend implements of pkg/firewall's contract, checked here.
var (
	_ firewall.Backend     = (*Backend)(nil)
	_ firewall.Resyncer    = (*Backend)(nil)
	_ firewall.Watcher     = (*Backend)(nil)
	_ firewall.Counters    = (*Backend)(nil)
	_ firewall.FlowCounter = (*Backend)(nil)
	_ firewall.Allower     = (*Backend)(nil)
)

// New returns a backend; it does not touch the kernel until Apply.
func New(opts Options) *Backend {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{opts: opts, log: log}
}

// Name implements firewall.Backend.
func (b *Backend) Name() string { return "nftables" }

// batchBuffer is the socket buffer for our netlink batches. A whole table
// with 100,000 prefixes and 1,000 devices is one batch of several MB, and
// every message in it is acknowledged; netlink refuses a batch larger than
// the send buffer, so, like the nft tool, we raise both with the FORCE
// options (we hold CAP_NET_ADMIN anyway). It is a limit, not an
// allocation: small batches cost no more.
const batchBuffer = 64 << 20

// chunk bounds the elements per netlink message: a message's element list
// is one nested attribute, whose length field is 16 bits.
const chunk = 512

// conn returns the netlink connection to nf_tables. It is kept open
// (lasting), because closing a netfilter netlink socket right after a
// commit waits in the kernel for the commit's RCU grace period (nf_tables
// finishes its pending destroy work when such a socket is released):
// measured at 10-20 ms per apply, most of a pause's time. A connection that saw an error may hold queued messages or unread
// acknowledgements, so every method that gets one drops it (drop) and the
// next call dials anew. Callers hold b.mu.
func (b *Backend) conn() (*nftables.Conn, error) {
	if b.nl != nil {
		return b.nl, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *mnl.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Control(func(fd uintptr) {
			// Without CAP_NET_ADMIN nothing else would work either; on
			// failure keep the defaults and let a big batch fail clearly.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer) == nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchBuffer/2)
			}
		})
	})}
	if b.opts.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.opts.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	b.nl = c
	return c, nil
}

// drop forgets the connection after err, if there is one. It is closed in
// the background: the close may wait for a grace period (see conn).
func (b *Backend) drop(err error) {
	if err == nil || b.nl == nil {
		return
	}
	go b.nl.CloseLasting() //nolint:errcheck // nothing is left to tell
	b.nl = nil
}

// Available reports whether nftables works here (the kernel has nf_tables
// and we may use it).
func Available(netnsFd int) error {
	c, err := New(Options{NetNSFd: netnsFd}).conn()
	if err != nil {
		return err
	}
	_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	return err
}

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

// Apply implements firewall.Backend.
func (b *Backend) Apply(ctx context.Context, rs *firewall.Ruleset) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	d, err := render(rs, &b.memo, time.Now(), b.lanIndexes(rs.LAN))
	if err != nil {
		return err
	}
	c, err := b.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if b.applied != nil && b.applied.sig == d.sig && !b.tampered.Load() {
		{
			n, err := b.update(c, b.applied, d)
			if err == nil {
				if n > 0 {
					b.log.Debug("nftables: updated set elements", "changes", n)
				}
				b.applied = d
				return nil
			}
			b.log.Warn("nftables: incremental update failed, replacing the table", "err", err)
			b.drop(err)
			if c, err = b.conn(); err != nil {
				return fmt.Errorf("nftables: %w", err)
			}
		}
	}
	if err := b.replace(c, d); err != nil {
		return err
	}
	b.applied = d
	return nil
}

// Resync replaces the table if it is missing or was changed by someone
// else; it reports whether it had to.
func (b *Backend) Resync(ctx context.Context) (_ bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	if b.applied == nil {
		return false, nil
	}
	c, err := b.conn()
	if err != nil {
		return false, err
	}
	ok, why := b.intact(c, b.applied)
	if b.tampered.Load() {
		ok, why = false, "rules deleted by another process"
	}
	if ok {
		return false, nil
	}
	b.log.Warn("nftables: table inet curfew was changed by someone else; restoring it", "why", why)
	return true, b.replace(c, b.applied)
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
	b.restoreAllowed(c, d)
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

// clockOffset is the wall clock minus the monotonic clock.
func clockOffset() time.Duration {
	var mono, wall unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	unix.ClockGettime(unix.CLOCK_REALTIME, &wall)
	return time.Duration(wall.Nano() - mono.Nano())
}

// clockStepped says whether the wall clock moved against the monotonic
// one since the online set was filled (by more than scheduling noise):
// its timeouts then end at the wrong wall-clock instants.
func (b *Backend) clockStepped() bool {
	d := clockOffset() - b.clockOffset
	return d > time.Second || d < -time.Second
}

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
// before they are deleted. The kernel dumps the whole set (there is no
// lookup of single elements in the netlink library): a few milliseconds
// for 1,000 devices, against a refill's 2,000 changes.
func (b *Backend) carryDeleted(c *nftables.Conn, set *nftables.Set, del []nftables.SetElement) {
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
	if b.carry == nil {
		b.carry = map[string]uint64{}
	}
	addElementBytes(b.carry, deleted)
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
	have := make(map[string]bool, len(o.elems))
	for _, e := range o.elems {
		have[elemKey(e)] = true
	}
	want := make(map[string]bool, len(s.elems))
	var addUntil []time.Time
	for i, e := range s.elems {
		k := elemKey(e)
		want[k] = true
		if !have[k] {
			add = append(add, e)
			addUntil = append(addUntil, s.until[i])
		}
	}
	for i, e := range o.elems {
		if want[elemKey(e)] {
			continue
		}
		if u := o.until[i]; !u.IsZero() && u.Before(now.Add(onlineMargin)) {
			return nil, nil, false
		}
		del = append(del, e)
	}
	return del, timed(add, addUntil, now), true
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

// update changes set elements only; it returns the number of changes.
func (b *Backend) update(c *nftables.Conn, old, d *desired) (int, error) {
	n := 0
	oldSets := make(map[string]*setSpec, len(old.sets)) // a set per device: no linear search each
	for _, o := range old.sets {
		oldSets[o.set.Name] = o
	}
	for _, s := range d.sets {
		o := oldSets[s.set.Name]
		if o == nil {
			// not in the applied table: only a replace can add it
			return 0, fmt.Errorf("set %s is not in the applied table", s.set.Name)
		}
		s.set = o.set // keep the kernel's handle
		if s.dynamic {
			continue
		}
		if s.until != nil && !b.clockStepped() {
			if del, add, ok := diffOnline(o, s, time.Now()); ok {
				if len(del) > 0 {
					b.carryDeleted(c, o.set, del)
				}
				if err := deleteElements(c, o.set, del); err != nil {
					return 0, err
				}
				if err := addElements(c, o.set, add); err != nil {
					return 0, err
				}
				n += len(del) + len(add)
				continue
			}
		}
		if s.rebuild {
			if s.same(o) && (s.until == nil || !b.clockStepped()) {
				continue
			}
			if s.until != nil {
				// The refill starts the element counters anew: keep what
				// they counted.
				b.carryCounts(c, o.set)
				b.clockOffset = clockOffset()
			}
			c.FlushSet(o.set)
			if err := s.fill(c, o.set); err != nil {
				return 0, err
			}
			// A refill is an event per element, old and new.
			n += len(o.elems) + len(s.elems)
			continue
		}
		if sameElems(o.elems, s.elems) {
			continue // also the same rendering, reused from the memo: a pause must not diff 100,000 prefixes
		}
		del, add := diffElems(o.elems, s.elems)
		if err := deleteElements(c, o.set, del); err != nil {
			return 0, err
		}
		if err := addElements(c, o.set, add); err != nil {
			return 0, err
		}
		n += len(del) + len(add)
	}
	if n == 0 {
		return 0, nil
	}
	if n < muteAbove {
		return n, c.Flush()
	}
	unmute := b.mute()
	err := c.Flush()
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

// diffElems returns the elements to delete and to add. A map element whose
// value changes is deleted and added again.
func diffElems(old, cur []nftables.SetElement) (del, add []nftables.SetElement) {
	have := map[string]bool{}
	for _, e := range old {
		have[elemKey(e)] = true
	}
	want := map[string]bool{}
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
		if !ok || !strings.HasPrefix(co.Name, "usage_") {
			continue
		}
		id := strings.TrimPrefix(co.Name, "usage_")
		if len(id) != 12 {
			continue
		}
		mac := id[0:2] + ":" + id[2:4] + ":" + id[4:6] + ":" + id[6:8] + ":" + id[8:10] + ":" + id[10:12]
		out[mac] += co.Bytes
	}
	return out, nil
}

// AllowAddresses lets an allowlist profile reach addrs for ttl (plus a
// grace period: clients keep using an address a little past its TTL). The
// DNS filter calls it with what allowed names resolved to. The additions are
// remembered, so that a full table replace puts the live ones back.
func (b *Backend) AllowAddresses(ctx context.Context, profile string, addrs []netip.Addr, ttl time.Duration) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	if b.applied == nil {
		return nil
	}
	ttl += allowGrace
	now := time.Now()
	if b.allowed == nil {
		b.allowed = map[string]map[netip.Addr]time.Time{}
	}
	if b.allowed[profile] == nil {
		b.allowed[profile] = map[netip.Addr]time.Time{}
	}
	c, err := b.conn()
	if err != nil {
		return err
	}
	n := 0
	for _, a := range addrs {
		set := b.applied.set(fmt.Sprintf("allow%d_%s", map[bool]int{true: 4, false: 6}[a.Is4()], profile))
		if set == nil {
			continue
		}
		el := nftables.SetElement{Key: a.AsSlice(), Timeout: ttl}
		if exp, ok := b.allowed[profile][a]; ok && exp.After(now.Add(2*time.Second)) {
			// Still in the kernel: delete and add again to renew its timeout.
			if err := c.SetDeleteElements(set.set, []nftables.SetElement{{Key: a.AsSlice()}}); err != nil {
				return err
			}
		}
		if err := c.SetAddElements(set.set, []nftables.SetElement{el}); err != nil {
			return err
		}
		b.allowed[profile][a] = now.Add(ttl)
		n++
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}

// allowGrace extends an allowlisted address's life past its DNS TTL.
const allowGrace = 10 * time.Minute

// restoreAllowed re-adds live allowlist addresses after a replace.
func (b *Backend) restoreAllowed(c *nftables.Conn, d *desired) {
	now := time.Now()
	for profile, addrs := range b.allowed {
		for a, exp := range addrs {
			set := d.set(fmt.Sprintf("allow%d_%s", map[bool]int{true: 4, false: 6}[a.Is4()], profile))
			if set == nil || !exp.After(now.Add(time.Second)) {
				delete(addrs, a)
				continue
			}
			c.SetAddElements(set.set, []nftables.SetElement{{Key: a.AsSlice(), Timeout: exp.Sub(now)}})
		}
	}
}

// Remove implements firewall.Backend.
func (b *Backend) Remove(ctx context.Context) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	b.applied = nil
	c, err := b.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(t) // so that the delete cannot fail on a missing table
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Cutoff implements firewall.Backend.
func (b *Backend) Cutoff(ctx context.Context, macs []net.HardwareAddr, sel firewall.Flows) (firewall.Cut, error) {
	h, err := b.handle()
	if err != nil {
		return firewall.Cut{}, err
	}
	return firewall.Cutoff(h, macs, sel)
}

// handle returns the netlink handle for links, neighbours and conntrack:
// Options.Netlink, or one opened at first use and kept. It is kept for the
// reason conn keeps its connection: a cut follows a commit, and closing a
// netfilter netlink socket then waits for the commit's grace period. Its
// sockets are shared under their own locks.
func (b *Backend) handle() (*netlink.Handle, error) {
	if b.opts.Netlink != nil {
		return b.opts.Netlink, nil
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if b.h == nil {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, err
		}
		b.h = h
	}
	return b.h, nil
}

// lanIndexes are the interface indexes of the LAN interfaces that exist
// now, for the fast path (onlineRule); one that does not is left out.
func (b *Backend) lanIndexes(lan []string) map[string]uint32 {
	h, err := b.handle()
	if err != nil {
		return nil
	}
	idx := map[string]uint32{}
	for _, name := range lan {
		if link, err := h.LinkByName(name); err == nil {
			idx[name] = uint32(link.Attrs().Index)
		}
	}
	return idx
}

// render builds the desired table from a ruleset; lanIndex has the
// interface indexes of the LAN interfaces that exist now.
func render(rs *firewall.Ruleset, memo *prefixMemo, now time.Time, lanIndex map[string]uint32) (*desired, error) {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	d := &desired{table: t}
	var sig strings.Builder
	fmt.Fprintf(&sig, "lan=%v dns=%d", rs.LAN, rs.DNSPort)

	// timeSet is a classic interval set of absolute instants (kernel time,
	// big-endian ns). Per device rather than one MAC . time concatenation:
	// measured, a concatenated (pipapo) set's lookup grows with its element
	// count — 1,000 devices with a week of windows cut forwarding to 7% —
	// while a verdict-map hop to a per-device chain and a lookup in a
	// handful of intervals cost the same for 2 or 2,000 devices.
	timeSet := func(name, comment string, ivs []firewall.Interval) *setSpec {
		ts := &setSpec{rebuild: true, set: &nftables.Set{
			Table: t, Name: name, Interval: true, KeyType: nftables.TypeTime, Comment: comment,
		}}
		for _, iv := range ivs {
			from, to := ns(iv.From), ns(iv.To)
			if to <= from {
				continue
			}
			ts.elems = append(ts.elems,
				nftables.SetElement{Key: be64(from)},
				nftables.SetElement{Key: be64(to), IntervalEnd: true})
		}
		return ts
	}
	offlineNow := func(set string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: metaTimeNS, Register: 1},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
			&expr.Lookup{SourceRegister: 1, SetName: set},
			gotoChain("reject_offline"),
		}
	}

	// A size hint makes the kernel pick its fixed-size hash over the
	// resizable one, which is cheaper per lookup; it is a bound on elements,
	// so it must exceed any home's device count.
	devices := &setSpec{set: &nftables.Set{
		Table: t, Name: "device_chain", IsMap: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "configured device MAC -> its chain",
	}}
	dnsOf := &setSpec{set: &nftables.Set{
		Table: t, Name: "dns_profile", IsMap: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "configured device MAC -> its profile's DNS redirect",
	}}
	// The fast path for established flows (see onlineRule): each
	// configured device that is online now, until its next offline
	// instant. An element's own counter counts its bytes for screen time.
	online := &setSpec{rebuild: true, until: []time.Time{}, set: &nftables.Set{
		Table: t, Name: "online", HasTimeout: true, Counter: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr,
		Comment: "configured devices online now, each until its next offline instant",
	}}
	d.sets = append(d.sets, devices, dnsOf)
	if len(rs.Devices) > 0 {
		d.sets = append(d.sets, online)
	}
	for _, dev := range rs.Devices {
		id := strings.ReplaceAll(dev.MAC.String(), ":", "")
		name := dev.Name
		if name == "" {
			name = dev.MAC.String()
		}
		fmt.Fprintf(&sig, " dev=%s:%s", id, dev.Profile)
		off := timeSet("offline_"+id, "offline intervals of "+name+" (profile "+dev.Profile+")", dev.Offline)
		d.sets = append(d.sets, off)
		ch := &chainSpec{chain: &nftables.Chain{Name: "device_" + id, Table: t}}
		ch.add(name+": inside an offline interval", offlineNow(off.set.Name))
		// A named counter per device: the daemon reads them all in one
		// dump a minute to count screen time (no per-packet userspace work).
		d.counters = append(d.counters, "usage_"+id)
		ch.add(name+": profile "+dev.Profile+", traffic counted for screen time",
			&expr.Objref{Type: 1, Name: "usage_" + id}, gotoChain("profile_"+dev.Profile))
		d.chains = append(d.chains, ch)
		devices.elems = append(devices.elems, nftables.SetElement{
			Key:         dev.MAC,
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.chain.Name},
		})
		dnsOf.elems = append(dnsOf.elems, nftables.SetElement{
			Key:         dev.MAC,
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "dns_" + dev.Profile},
		})
		if until, ok := onlineUntil(dev.Offline, now); ok {
			// The kernel keeps at most 256 bytes of an element's comment.
			short := strings.ToValidUTF8(name[:min(len(name), 128)], "")
			e := nftables.SetElement{Key: dev.MAC, Comment: short}
			if !until.IsZero() {
				e.Comment = short + ", until " + until.UTC().Format(time.RFC3339)
			}
			online.elems = append(online.elems, e)
			online.until = append(online.until, until)
		}
	}
	if rs.Unknown != nil {
		fmt.Fprintf(&sig, " unknown=%s", rs.Unknown.Profile)
		d.sets = append(d.sets, timeSet("unknown_offline",
			"offline intervals of devices not in the config (profile "+rs.Unknown.Profile+")", rs.Unknown.Offline))
	}

	// Reject chains: TCP gets a reset, everything else ICMP administratively
	// prohibited, so that apps fail fast instead of hanging.
	rejectChain := func(name, note string) *chainSpec {
		ch := &chainSpec{chain: &nftables.Chain{Name: name, Table: t}}
		ch.add(note, &expr.Counter{}, l4proto(unix.IPPROTO_TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		ch.add(note, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})
		return ch
	}
	d.chains = append(d.chains,
		rejectChain("reject_offline", "device offline"),
		rejectChain("reject_blocked", "destination blocked"),
		rejectChain("reject_bypass", "resolver bypass (DNS over TLS)"))
	// Port 853 is checked first (one compare per packet), the protocol only
	// then; other protocols with those two bytes return.
	dot := &chainSpec{chain: &nftables.Chain{Name: "dot", Table: t}}
	dot.add("DNS over TLS (TCP)", l4proto(unix.IPPROTO_TCP), gotoChain("reject_bypass"))
	dot.add("DNS over QUIC/DTLS (UDP)", l4proto(unix.IPPROTO_UDP), gotoChain("reject_bypass"))
	d.chains = append(d.chains, dot)
	if len(rs.Bypass) > 0 {
		fmt.Fprintf(&sig, " bypass")
		var b4, b6 []nftables.SetElement
		for _, p := range rs.Bypass {
			if p.Addr().Is4() {
				b4 = append(b4, nftables.SetElement{Key: p.Addr().AsSlice()})
			} else {
				b6 = append(b6, nftables.SetElement{Key: p.Addr().AsSlice()})
			}
		}
		d.sets = append(d.sets,
			&setSpec{rebuild: true, elems: b4, set: &nftables.Set{Table: t, Name: "doh4", KeyType: nftables.TypeIPAddr,
				Comment: "public DNS-over-HTTPS resolvers (IPv4)"}},
			&setSpec{rebuild: true, elems: b6, set: &nftables.Set{Table: t, Name: "doh6", KeyType: nftables.TypeIP6Addr,
				Comment: "public DNS-over-HTTPS resolvers (IPv6)"}})
	}

	for _, p := range rs.Profiles {
		fmt.Fprintf(&sig, " profile=%s open=%v", p.ID, p.Open)
		ch := &chainSpec{chain: &nftables.Chain{Name: "profile_" + p.ID, Table: t}}
		note := "profile " + label(p)
		// A profile's destinations are checked on a flow's first packets
		// only: a flow to a blocked destination never gets established, and
		// when a block is added the daemon deletes the flows it now forbids
		// (Cutoff). Established traffic of an online device thus pays one
		// conntrack-state test here, whatever the size of the lists.
		ch.add(note+": established flows were checked at their start",
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictReturn})
		if !p.Open {
			ch.add(note+": no DNS over TLS", dport(853), &expr.Verdict{Kind: expr.VerdictJump, Chain: "dot"})
		}
		if len(rs.Bypass) > 0 && !p.Open {
			ch.add(note+": no DNS over HTTPS", daddr(4), &expr.Lookup{SourceRegister: 1, SetName: "doh4"}, gotoChain("reject_bypass"))
			ch.add(note+": no DNS over HTTPS", daddr(6), &expr.Lookup{SourceRegister: 1, SetName: "doh6"}, gotoChain("reject_bypass"))
		}
		for _, g := range memo.groups(p.ID, p.Block) {
			fam, proto, off, size, typ := "4", byte(unix.NFPROTO_IPV4), uint32(16), uint32(4), nftables.TypeIPAddr
			if g.v6 {
				fam, proto, off, size, typ = "6", unix.NFPROTO_IPV6, 24, 16, nftables.TypeIP6Addr
			}
			name := fmt.Sprintf("block%s_%s_%d", fam, p.ID, g.bits)
			fmt.Fprintf(&sig, " %s", name)
			d.sets = append(d.sets, &setSpec{rebuild: true, packed: g.keys, keyLen: g.size(), set: &nftables.Set{Table: t, Name: name, KeyType: typ,
				Comment: fmt.Sprintf("IPv%s /%d destinations blocked for %s", fam, g.bits, label(p))}})
			match := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
			}
			if g.bits < int(size)*8 {
				match = append(match, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size,
					Mask: maskBytes(g.bits, int(size)), Xor: make([]byte, size)})
			}
			ch.add(fmt.Sprintf("%s: blocked IPv%s /%d", note, fam, g.bits), match,
				&expr.Lookup{SourceRegister: 1, SetName: name}, gotoChain("reject_blocked"))
		}
		if p.Allowlist {
			// Allowlist mode: only addresses that allowed names resolved to
			// (added by the DNS filter with the answer's TTL) and the
			// profile's allowed prefixes. Hard-coded IPs and DoH go nowhere.
			// After the blocked prefixes: an allowed name that resolves
			// into a blocked prefix stays blocked.
			fmt.Fprintf(&sig, " allow=%s", p.ID)
			for _, fam := range []int{4, 6} {
				name := fmt.Sprintf("allow%d_%s", fam, p.ID)
				typ := nftables.TypeIPAddr
				if fam == 6 {
					typ = nftables.TypeIP6Addr
				}
				d.sets = append(d.sets, &setSpec{dynamic: true, set: &nftables.Set{Table: t, Name: name, KeyType: typ,
					HasTimeout: true, Comment: fmt.Sprintf("IPv%d addresses allowed names resolved to, for %s", fam, label(p))}})
				ch.add(fmt.Sprintf("%s: allowlist, resolved IPv%d", note, fam), daddr(fam),
					&expr.Lookup{SourceRegister: 1, SetName: name}, &expr.Verdict{Kind: expr.VerdictReturn})
				var static []nftables.SetElement
				for _, a := range p.Allow {
					if a.Addr().Is4() == (fam == 4) {
						static = append(static, prefixRange(a)...)
					}
				}
				if len(static) > 0 {
					netName := fmt.Sprintf("allownet%d_%s", fam, p.ID)
					fmt.Fprintf(&sig, " %s", netName)
					d.sets = append(d.sets, &setSpec{rebuild: true, elems: static, set: &nftables.Set{Table: t, Name: netName, KeyType: typ,
						Interval: true, Comment: fmt.Sprintf("IPv%d prefixes allowed for %s", fam, label(p))}})
					ch.add(fmt.Sprintf("%s: allowlist, allowed IPv%d prefixes", note, fam), daddr(fam),
						&expr.Lookup{SourceRegister: 1, SetName: netName}, &expr.Verdict{Kind: expr.VerdictReturn})
				}
			}
			ch.add(note+": allowlist, anything else", &expr.Verdict{Kind: expr.VerdictGoto, Chain: "reject_blocked"})
		}
		d.chains = append(d.chains, ch)
	}

	managedChain := &chainSpec{chain: &nftables.Chain{Name: "managed", Table: t}}
	for _, lan := range rs.LAN {
		managedChain.add("traffic that stays inside the LAN", ifname(expr.MetaKeyOIFNAME, lan), &expr.Verdict{Kind: expr.VerdictReturn})
	}
	managedChain.add("configured device: its own chain",
		etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "device_chain", DestRegister: 0, IsDestRegSet: true})
	if rs.Unknown != nil {
		managedChain.add("unknown device inside an offline interval", offlineNow("unknown_offline"))
		if hasProfile(rs, rs.Unknown.Profile) {
			managedChain.add("unknown device: profile "+rs.Unknown.Profile, gotoChain("profile_"+rs.Unknown.Profile))
		}
	}
	d.chains = append(d.chains, managedChain)

	fwd := &chainSpec{chain: &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10), Policy: policy(nftables.ChainPolicyAccept)}}
	if len(rs.Devices) > 0 {
		// a LAN interface created anew has a new index: its rule changes
		fmt.Fprintf(&sig, " online=%v", lanIndex)
		fwd.add("established flows of a device online now: counted, nothing else to check", onlineRule(rs.LAN, lanIndex))
	}
	for _, lan := range rs.LAN {
		fwd.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "managed"})
	}
	d.chains = append(d.chains, fwd)

	// DNS: each profile's devices go to that profile's port of the DNS
	// filter (or the router's resolver when there is no filter), so that
	// the filter knows a query's profile from the port it arrives on.
	dns := &chainSpec{chain: &nftables.Chain{Name: "dns_redirect", Table: t}}
	if port := rs.OfflineDNSPort; port != 0 {
		// A device offline now: the filter's port for offline devices,
		// decided here by MAC and time, so that the filter never judges
		// offline-ness by a source address a child can rebind (ARP).
		fmt.Fprintf(&sig, " offline_dns=%d", port)
		to := []expr.Any{&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
			&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED}}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			if len(rs.Devices) > 0 {
				dns.add(fmt.Sprintf("configured device inside an offline interval: the filter's port for devices offline now, %d", port),
					l4proto(proto), dport(53), offlineMatch(d, rs), to)
			}
			if rs.Unknown != nil {
				dns.add(fmt.Sprintf("unknown device inside an offline interval: the filter's port for devices offline now, %d", port),
					l4proto(proto), dport(53), unknownOfflineMatch(d, rs), to)
			}
		}
	}
	dns.add("configured device: its profile's resolver port",
		etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "dns_profile", DestRegister: 0, IsDestRegSet: true})
	if rs.Unknown != nil && hasProfile(rs, rs.Unknown.Profile) {
		dns.add("unknown device: profile "+rs.Unknown.Profile, gotoChain("dns_"+rs.Unknown.Profile))
	}
	for _, p := range rs.Profiles {
		port := p.DNSPort
		if port == 0 {
			port = rs.DNSPort
		}
		fmt.Fprintf(&sig, " dns=%s:%d", p.ID, port)
		ch := &chainSpec{chain: &nftables.Chain{Name: "dns_" + p.ID, Table: t}}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			ch.add(fmt.Sprintf("profile %s: DNS to any resolver goes to the router, port %d", label(p), port), l4proto(proto), dport(53),
				&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
				&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED})
		}
		d.chains = append(d.chains, ch)
	}
	pre := &chainSpec{chain: &nftables.Chain{Name: "dns", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-110), Policy: policy(nftables.ChainPolicyAccept)}}
	if flows := renderFlowLimit(d, rs, &sig); flows != nil {
		d.chains = append(d.chains, flows)
		for _, lan := range rs.LAN {
			pre.add("clients of "+lan+": new connections, at most flow_limit a second each", ifname(expr.MetaKeyIIFNAME, lan),
				&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_limit"})
		}
	}
	if page := renderPage(d, rs, &sig); page != nil {
		d.chains = append(d.chains, page)
		for _, lan := range rs.LAN {
			pre.add("clients of "+lan+": the bedtime page", ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "page"})
		}
	}
	for _, lan := range rs.LAN {
		pre.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "dns_redirect"})
	}
	d.chains = append(d.chains, dns, pre)
	renderGuard(d, rs, &sig)
	d.sig = sig.String() + " shape=" + d.shape()
	return d, nil
}

// onlineUntil says whether a device with these offline intervals is
// online at now, and until when (the zero time: no offline instant ahead).
func onlineUntil(offline []firewall.Interval, now time.Time) (time.Time, bool) {
	var next time.Time
	for _, iv := range offline {
		if !iv.To.After(iv.From) {
			continue
		}
		if !now.Before(iv.From) && now.Before(iv.To) {
			return time.Time{}, false
		}
		if iv.From.After(now) && (next.IsZero() || iv.From.Before(next)) {
			next = iv.From
		}
	}
	return next, true
}

// onlineRule is the first rule of the forward hook: a packet of an
// established flow, leaving the LAN, from a device in the online set, is
// counted by that element and accepted at once. It is the same decision
// the device and profile chains would reach — online now (the element
// expires in the kernel at the device's next offline instant, daemon or
// not), and established flows were checked at their start — in one rule
// instead of six with two jumps; measured, that took the forwarding rate
// with curfew's table from about 0.89 to about 0.95 of the rate without
// it. Anything else goes the whole way through the chains below.
//
// The source MAC is read as raw link-layer bytes, without the link-type
// check that nft puts before `ether saddr`: in focused side-by-side runs
// the check cost 2-3% of the forwarding rate (the report's rule-by-rule
// table puts it within its error), and it guards nothing here. A
// packet without a link-layer header (a tunnel, PPP) fails the load and
// does not match; one with another kind of header could match a child's
// MAC only by chance, and would be accepted as an established flow, which
// the chains below accept too.
//
// "Not to the LAN" compares the output interface's index, not its name
// (in the same runs, the name, 16 bytes copied and compared, cost another
// 2-3%).
// OpenWrt's network restart creates br-lan anew with a new index; the
// daemon watches for that and applies again, and the new index changes
// this rule. Until then, a stale index only lets LAN-internal flows take
// the fast path too: accepted as the chains would, and counted as
// screen time. A LAN interface missing at render time is compared by
// name.
func onlineRule(lan []string, index map[string]uint32) []expr.Any {
	r := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
	for _, name := range lan {
		if i, ok := index[name]; ok {
			r = append(r, &expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(i)})
			continue
		}
		b := make([]byte, 16)
		copy(b, name)
		r = append(r, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: b})
	}
	r = append(r, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6})
	return append(r, &expr.Lookup{SourceRegister: 1, SetName: "online"}, &expr.Verdict{Kind: expr.VerdictAccept})
}

// configuredMax bounds the configured set and the sets only configured
// MACs can enter.
const configuredMax = 65536

// configuredSet adds, once, the plain set of configured device MACs that
// the bedtime page and the flow limit ask (a plain set: kernels before
// 6.12 refuse a lookup in the device_chain verdict map without its
// verdict).
func configuredSet(d *desired, rs *firewall.Ruleset) *setSpec {
	if s := d.set("configured"); s != nil {
		return s
	}
	s := &setSpec{set: &nftables.Set{
		Table: d.table, Name: "configured", Size: configuredMax, KeyType: nftables.TypeEtherAddr,
		Comment: "configured device MACs, for the bedtime page and the flow limit",
	}}
	for _, dev := range rs.Devices {
		s.elems = append(s.elems, nftables.SetElement{Key: dev.MAC})
	}
	d.sets = append(d.sets, s)
	return s
}

// renderPage sends the plain-HTTP requests (TCP 80, to any address but
// the router's own) of a managed device that is offline now to the
// daemon's bedtime page: phones and laptops probe a plain-HTTP address and
// show what answers as a "sign in to network" notification. "Offline now"
// is the kernel's own test against the offline intervals it holds, the
// same the forward hook uses: a configured device's in page_offline (MAC .
// time), an unknown one's in @unknown_offline. So the page starts and
// ends with the window to the second, daemon or not. (It asked @online
// before, which only the daemon refills: with the daemon dead, a child's
// plain HTTP stayed on a page nobody served after the window had ended.)
// One concatenated set serves every device here, unlike the forward hook's
// set per device: its lookup grows with its elements, but this rule sees
// only the first packet of a new connection to port 80. Nil when the page
// is off.
//
// Which devices are configured is asked of a plain set of their MACs
// (configured), not of the verdict map device_chain: older kernels refuse
// a lookup in a map without a destination register, and with it the
// whole table (EINVAL on Debian's 5.10 and 6.1; 6.12 takes it; the VM lab,
// scripts/vmlab, boots each). The set costs a hash element per
// configured device.
func renderPage(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	if rs.PagePort == 0 || (len(rs.Devices) == 0 && rs.Unknown == nil) {
		return nil
	}
	fmt.Fprintf(sig, " page=%d", rs.PagePort)
	t := d.table
	configuredSet(d, rs)
	redirect := []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(rs.PagePort)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
	page := &chainSpec{chain: &nftables.Chain{Name: "page", Table: t}}
	page.add("the router's own addresses (LuCI) stay what they are",
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictReturn})
	if len(rs.Devices) > 0 {
		page.add("configured device inside an offline interval: plain HTTP goes to the bedtime page",
			l4proto(unix.IPPROTO_TCP), dport(80), offlineMatch(d, rs), redirect)
	}
	if rs.Unknown != nil {
		page.add("unknown device inside an offline interval: plain HTTP goes to the bedtime page",
			l4proto(unix.IPPROTO_TCP), dport(80), unknownOfflineMatch(d, rs), redirect)
	}
	return page
}

// reg32 is the nftables register number of 32-bit register i
// (NFT_REG32_00 is 8; the 128-bit register 1 covers NFT_REG32_00 to 03).
func reg32(i uint32) uint32 { return 8 + i }

// offlineMatch matches a configured device inside one of its offline
// intervals, for the NAT hook's redirects (the bedtime page, DNS): a
// lookup of ether saddr . meta time in the set "offline", which holds
// every configured device's intervals (added to d once). The forward
// hook asks a set per device instead (see render), since this set's
// lookup grows with its elements; the redirects see only a flow's first
// packet. The MAC goes in register 1 (6 bytes, padded to 8 with zeros by
// the kernel), the time in the 32-bit register after it (NFT_REG32_02),
// as nft lays out a concatenation; the set's ranges are inclusive.
func offlineMatch(d *desired, rs *firewall.Ruleset) []expr.Any {
	if d.set("offline") == nil {
		s := &setSpec{set: &nftables.Set{Table: d.table, Name: "offline", Interval: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeTime),
			Comment: "offline intervals of the configured devices, for the bedtime page and DNS"}}
		for _, dev := range rs.Devices {
			key := func(at uint64) []byte { return append(append(append([]byte{}, dev.MAC...), 0, 0), be64(at)...) }
			for _, iv := range dev.Offline {
				from, to := ns(iv.From), ns(iv.To)
				if to <= from {
					continue
				}
				s.elems = append(s.elems, nftables.SetElement{Key: key(from), KeyEnd: key(to - 1)})
			}
		}
		d.sets = append(d.sets, s)
	}
	return append(etherSaddr(1),
		&expr.Meta{Key: metaTimeNS, Register: reg32(2)},
		&expr.Byteorder{SourceRegister: reg32(2), DestRegister: reg32(2), Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: "offline"})
}

// unknownOfflineMatch matches a device the config does not list inside one
// of @unknown_offline's intervals.
func unknownOfflineMatch(d *desired, rs *firewall.Ruleset) []expr.Any {
	configuredSet(d, rs)
	return append(etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "configured", Invert: true},
		&expr.Meta{Key: metaTimeNS, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: "unknown_offline"})
}

// flowLimitDevices bounds the flow_limit set of unknown devices, each
// with its own allowance: beyond this many seen in a minute (a child
// forging MACs) the others have only the allowance all unknown devices
// share. About 150 bytes of kernel memory each.
const flowLimitDevices = 4096

// flowDroppedFor is how long a flow_dropped element (a device's count of
// dropped connections) outlives its last drop: long enough for the
// daemon, which reads the counts every minute, to see each.
const flowDroppedFor = 10 * time.Minute

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

// renderFlowLimit limits how fast each LAN device opens connections, so
// that a child sending from forged addresses (each packet a new flow)
// cannot fill the kernel's connection table and cut everyone's new
// connections. It sits in the NAT prerouting hook, which the kernel runs
// for a flow's first packet only: established traffic never meets it,
// and a flow it drops was never confirmed, so it takes no entry.
//
// Each device gets a token bucket (a dynamic set element with a limit).
// A configured device's lives in flow_known, which only configured MACs
// can enter, so no flood of forged MACs can take it: the parents' phones
// keep opening connections whatever a child does. Unknown devices have
// their own buckets in flow_limit and, on top, one bucket they all share:
// forged MACs, however many, get one device's allowance together, and a
// MAC that does not fit in flow_limit has only that. Nil when the limit
// is off.
func renderFlowLimit(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	if rs.FlowLimit <= 0 || len(rs.LAN) == 0 {
		return nil
	}
	fmt.Fprintf(sig, " flows=%d", rs.FlowLimit)
	t := d.table
	dynamic := func(name string, timeout time.Duration, size uint32, comment string) *setSpec {
		return &setSpec{dynamic: true, set: &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeEtherAddr,
			Dynamic: true, HasTimeout: true, Timeout: timeout, Size: size, Comment: comment}}
	}
	d.sets = append(d.sets,
		dynamic("flow_known", time.Minute, configuredMax, "configured devices that opened connections in the last minute, each with its allowance"),
		dynamic("flow_limit", time.Minute, flowLimitDevices, "unknown devices that opened connections in the last minute, each with its allowance"),
		dynamic("flow_dropped", flowDroppedFor, configuredMax, "configured devices that went over their allowance, with what was dropped"),
		dynamic("flow_dropped_unknown", flowDroppedFor, flowLimitDevices, "unknown devices that went over an allowance, with what was dropped"))
	limit := func() *expr.Limit {
		return &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rs.FlowLimit), Unit: expr.LimitTimeSecond,
			Burst: uint32(rs.FlowBurst), Over: true}
	}
	// What was dropped is counted per MAC, for the daemon to say so: a
	// parent whose device hits the limit must be able to find out why its
	// connections fail. The count and the drop are separate rules: an
	// update of a full set ends its rule, and the drop must not depend on
	// room for the count.
	over := func(name, dropped string) *chainSpec {
		ch := &chainSpec{chain: &nftables.Chain{Name: name, Table: t}}
		ch.add("count it for its MAC", etherSaddr(1),
			&expr.Dynset{SrcRegKey: 1, SetName: dropped, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{&expr.Counter{}}})
		ch.add("and drop it, counted or not", &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
		return ch
	}
	d.chains = append(d.chains, over("flow_over", "flow_dropped"), over("flow_over_unknown", "flow_dropped_unknown"))
	ch := &chainSpec{chain: &nftables.Chain{Name: "flow_limit", Table: t}}
	note := fmt.Sprintf("faster than %d a second (burst %d)", rs.FlowLimit, rs.FlowBurst)
	if len(rs.Devices) > 0 {
		configuredSet(d, rs)
		ch.add("a configured device opening new connections "+note, etherSaddr(1),
			&expr.Lookup{SourceRegister: 1, SetName: "configured"},
			&expr.Dynset{SrcRegKey: 1, SetName: "flow_known", Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{limit()}},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over"})
		// Not a lookup in flow_known: a lookup runs the element's limit
		// again and would charge each flow twice.
		ch.add("a configured device within its own allowance, which no other device can take", etherSaddr(1),
			&expr.Lookup{SourceRegister: 1, SetName: "configured"}, &expr.Verdict{Kind: expr.VerdictReturn})
	}
	ch.add("an unknown device opening new connections "+note, etherSaddr(1),
		&expr.Dynset{SrcRegKey: 1, SetName: "flow_limit", Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{limit()}},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over_unknown"})
	ch.add(fmt.Sprintf("unknown devices together, forged MACs among them, and those beyond the %d flow_limit holds: one allowance", flowLimitDevices),
		limit(), &expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over_unknown"})
	return ch
}

// renderGuard keeps the DNS filter's ports for the queries the redirect
// sent there: a query that reaches one of them without having been
// redirected (a child asking another profile's port directly, to be
// answered by looser rules) is dropped at input. Priority filter - 10,
// before fw4's input chain, whose accept of LAN traffic is not final
// for a drop of ours.
func renderGuard(d *desired, rs *firewall.Ruleset, sig *strings.Builder) {
	ports := firewall.FilterPorts(rs)
	if len(ports) == 0 {
		return
	}
	t := d.table
	fmt.Fprintf(sig, " guard=%v", ports)
	set := &setSpec{rebuild: true, set: &nftables.Set{Table: t, Name: "filter_ports", KeyType: nftables.TypeInetService,
		Comment: "ports of the DNS filter, one per profile and one for devices offline now"}}
	for _, p := range ports {
		set.elems = append(set.elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	d.sets = append(d.sets, set)
	guard := &chainSpec{chain: &nftables.Chain{Name: "filter_guard", Table: t}}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		guard.add("DNS filter port asked directly, not through the redirect", l4proto(proto),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: "filter_ports"},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	in := &chainSpec{chain: &nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(-10), Policy: policy(nftables.ChainPolicyAccept)}}
	for _, lan := range rs.LAN {
		in.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "filter_guard"})
	}
	d.chains = append(d.chains, guard, in)
}

// ctStatusDNAT is IPS_DST_NAT: the flow's destination was rewritten (by
// our redirect, for DNS).
const ctStatusDNAT = 1 << 5

func hasProfile(rs *firewall.Ruleset, id string) bool {
	for _, p := range rs.Profiles {
		if p.ID == id {
			return true
		}
	}
	return false
}

func label(p firewall.Profile) string {
	if p.Name != "" && p.Name != p.ID {
		return p.ID + " (" + p.Name + ")"
	}
	return p.ID
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
