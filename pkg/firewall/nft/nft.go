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
//	                 then "ether saddr . meta time @offline" rejects a device
//	                 inside one of its offline intervals, then
//	                 "ether saddr vmap @device_profile" jumps to the device's
//	                 profile chain; MACs not listed fall through to the
//	                 unknown profile.
//	chain profile_X  DoT (853) and blocked prefixes of profile X.
//	chain dns        hook prerouting, priority dstnat - 10: DNS from managed
//	                 devices to any address is redirected to the router.
//
// All changing data lives in sets and maps, so the per-packet cost does not
// grow with the number of devices or blocked prefixes, and a change for one
// device is a change of set elements. Offline intervals are absolute
// instants (MAC . time, a concatenated interval set): the kernel starts and
// ends the coming week's windows on its own, at the right instant across
// DST, with no daemon running.
package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// TableName is the name of curfew's table in the inet family.
const TableName = "curfew"

// Kernel meta keys that google/nftables v0.3.0 has no constants for.
const (
	metaTimeNS = expr.MetaKey(30) // NFT_META_TIME_NS: ns since the epoch
	reg32_00   = 8                // NFT_REG32_00: concatenations need 32-bit registers
	reg32_02   = 10
)

// Options configure a Backend.
type Options struct {
	// NetNSFd, when non-zero, is a network namespace to work in (tests);
	// zero means the current one.
	NetNSFd int
	// Netlink is the handle for neighbours and conntrack in that namespace;
	// nil means the current namespace.
	Netlink *netlink.Handle
	Log     *slog.Logger
}

// Backend is the nftables backend.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	applied *desired
}

var _ firewall.Backend = (*Backend)(nil) // type check

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

func (b *Backend) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if b.opts.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.opts.NetNSFd))
	}
	return nftables.New(opts...)
}

// Available reports whether nftables works here (the kernel has nf_tables
// and we may use it).
func Available(netnsFd int) error {
	b := New(Options{NetNSFd: netnsFd})
	c, err := b.conn()
	if err != nil {
		return err
	}
	_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	return err
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
}

type setSpec struct {
	set   *nftables.Set
	elems []nftables.SetElement
	// rebuild marks classic interval sets, whose start/end element pairs are
	// replaced whole on change (flush and re-add in the same batch) rather
	// than diffed.
	rebuild bool
}

type chainSpec struct {
	chain *nftables.Chain
	rules [][]expr.Any
	notes []string
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
func (b *Backend) Apply(ctx context.Context, rs *firewall.Ruleset) error {
	d, err := render(rs)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if b.applied != nil && b.applied.sig == d.sig {
		if ok, _ := b.intact(c, b.applied); ok {
			n, err := b.update(c, b.applied, d)
			if err == nil {
				if n > 0 {
					b.log.Debug("nftables: updated set elements", "changes", n)
				}
				b.applied = d
				return nil
			}
			b.log.Warn("nftables: incremental update failed, replacing the table", "err", err)
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
func (b *Backend) Resync(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.applied == nil {
		return false, nil
	}
	c, err := b.conn()
	if err != nil {
		return false, err
	}
	ok, why := b.intact(c, b.applied)
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
	for _, s := range d.sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
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
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: replace table inet %s: %w", TableName, err)
	}
	return nil
}

// update changes set elements only; it returns the number of changes.
func (b *Backend) update(c *nftables.Conn, old, d *desired) (int, error) {
	n := 0
	for _, s := range d.sets {
		o := old.set(s.set.Name)
		s.set = o.set // keep the kernel's handle
		if s.rebuild {
			if !sameElems(o.elems, s.elems) {
				c.FlushSet(o.set)
				if len(s.elems) > 0 {
					if err := c.SetAddElements(o.set, s.elems); err != nil {
						return 0, err
					}
				}
				n++
			}
			continue
		}
		del, add := diffElems(o.elems, s.elems)
		if len(del) > 0 {
			if err := c.SetDeleteElements(o.set, del); err != nil {
				return 0, err
			}
		}
		if len(add) > 0 {
			if err := c.SetAddElements(o.set, add); err != nil {
				return 0, err
			}
		}
		n += len(del) + len(add)
	}
	if n == 0 {
		return 0, nil
	}
	return n, c.Flush()
}

func elemKey(e nftables.SetElement) string {
	k := string(e.Key) + "|" + string(e.KeyEnd)
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
	for i := range a {
		if elemKey(a[i]) != elemKey(b[i]) {
			return false
		}
	}
	return true
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

// intact checks that the kernel still has our table with the chains, rule
// counts and sets we applied. It does not compare set elements: those only
// change through us, and the daemon re-applies the full plan periodically.
func (b *Backend) intact(c *nftables.Conn, d *desired) (bool, string) {
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		return false, "table missing"
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err.Error()
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			have[ch.Name] = ch
		}
	}
	if len(have) != len(d.chains) {
		return false, fmt.Sprintf("%d chains, want %d", len(have), len(d.chains))
	}
	for _, ch := range d.chains {
		kc, ok := have[ch.chain.Name]
		if !ok {
			return false, "chain " + ch.chain.Name + " missing"
		}
		rules, err := c.GetRules(d.table, kc)
		if err != nil || len(rules) != len(ch.rules) {
			return false, fmt.Sprintf("chain %s has %d rules, want %d", ch.chain.Name, len(rules), len(ch.rules))
		}
	}
	sets, err := c.GetSets(d.table)
	if err != nil || len(sets) != len(d.sets) {
		return false, fmt.Sprintf("%d sets, want %d", len(sets), len(d.sets))
	}
	return true, ""
}

// Remove implements firewall.Backend.
func (b *Backend) Remove(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
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

// Watch calls onChange (debounced) whenever a table, chain or rule is
// deleted in this namespace; the caller then runs Resync. The monitor's
// channel closes when the kernel drops events (ENOBUFS): Watch then opens a
// new one and reports a change, since events may have been lost.
func (b *Backend) Watch(ctx context.Context, onChange func()) error {
	for ctx.Err() == nil {
		c, err := b.conn()
		if err != nil {
			return err
		}
		// All events, filtered below: google/nftables v0.3.0 applies its
		// own action/object filter with an operator-precedence slip
		// ((flags & 1) << type), which drops every event unless the filter
		// is "any".
		mon := nftables.NewMonitor()
		events, err := c.AddMonitor(mon)
		if err != nil {
			return fmt.Errorf("nftables monitor: %w", err)
		}
		b.drain(ctx, events, onChange)
		mon.Close()
		if ctx.Err() == nil {
			onChange()
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (b *Backend) drain(ctx context.Context, events chan *nftables.MonitorEvent, onChange func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Error != nil || deletion(ev.Type) && touchesUs(ev) {
				onChange()
			}
		}
	}
}

func deletion(t nftables.MonitorEventType) bool {
	switch t {
	case nftables.MonitorEventTypeDelTable, nftables.MonitorEventTypeDelChain,
		nftables.MonitorEventTypeDelRule, nftables.MonitorEventTypeDelSet:
		return true
	}
	return false
}

func touchesUs(ev *nftables.MonitorEvent) bool {
	switch d := ev.Data.(type) {
	case *nftables.Table:
		return d.Name == TableName
	case *nftables.Chain:
		return d.Table != nil && d.Table.Name == TableName
	case *nftables.Rule:
		return d.Table != nil && d.Table.Name == TableName
	case *nftables.Set:
		return d.Table != nil && d.Table.Name == TableName
	}
	return false
}

// Cutoff implements firewall.Backend.
func (b *Backend) Cutoff(ctx context.Context, macs []net.HardwareAddr) (int, error) {
	if len(macs) == 0 {
		return 0, nil
	}
	h := b.opts.Netlink
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return 0, err
		}
		defer h.Close()
	}
	want := map[string]bool{}
	for _, m := range macs {
		want[m.String()] = true
	}
	neighs, err := h.NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("neighbours: %w", err)
	}
	var v4, v6 []netlink.CustomConntrackFilter
	for _, n := range neighs {
		if n.IP == nil || n.HardwareAddr == nil || !want[n.HardwareAddr.String()] || n.State&netlink.NUD_NOARP != 0 {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(netlink.ConntrackOrigSrcIP, n.IP); err != nil {
			continue
		}
		if n.IP.To4() != nil {
			v4 = append(v4, f)
		} else {
			v6 = append(v6, f)
		}
	}
	total := 0
	var errs []error
	for fam, fs := range map[netlink.InetFamily][]netlink.CustomConntrackFilter{unix.AF_INET: v4, unix.AF_INET6: v6} {
		if len(fs) == 0 {
			continue
		}
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, fs...)
		total += int(n)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// render builds the desired table from a ruleset.
func render(rs *firewall.Ruleset) (*desired, error) {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	d := &desired{table: t}
	var sig strings.Builder
	fmt.Fprintf(&sig, "lan=%v dns=%d", rs.LAN, rs.DNSPort)

	offline := &setSpec{set: &nftables.Set{
		Table: t, Name: "offline", Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeTime),
		Comment: "device MAC . offline interval (absolute time)",
	}}
	profileOf := &setSpec{set: &nftables.Set{
		Table: t, Name: "device_profile", IsMap: true,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "device MAC -> its profile chain",
	}}
	managed := &setSpec{set: &nftables.Set{
		Table: t, Name: "managed", KeyType: nftables.TypeEtherAddr,
		Comment: "MACs whose DNS is redirected to the router",
	}}
	d.sets = append(d.sets, offline, profileOf, managed)
	for _, dev := range rs.Devices {
		for _, iv := range dev.Offline {
			from, to := ns(iv.From), ns(iv.To)
			if to <= from {
				continue
			}
			offline.elems = append(offline.elems, nftables.SetElement{
				Key:    concatKey(dev.MAC, from),
				KeyEnd: concatKey(dev.MAC, to-1), // concatenated ranges end inclusively
			})
		}
		profileOf.elems = append(profileOf.elems, nftables.SetElement{
			Key:         padMAC(dev.MAC),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "profile_" + dev.Profile},
		})
		managed.elems = append(managed.elems, nftables.SetElement{Key: padMAC(dev.MAC)})
	}

	var unknownOffline *setSpec
	if rs.Unknown != nil {
		fmt.Fprintf(&sig, " unknown=%s", rs.Unknown.Profile)
		unknownOffline = &setSpec{rebuild: true, set: &nftables.Set{
			Table: t, Name: "unknown_offline", Interval: true, KeyType: nftables.TypeTime,
			Comment: "offline intervals of devices not in the config (profile " + rs.Unknown.Profile + ")",
		}}
		for _, iv := range rs.Unknown.Offline {
			from, to := ns(iv.From), ns(iv.To)
			if to <= from {
				continue
			}
			unknownOffline.elems = append(unknownOffline.elems,
				nftables.SetElement{Key: be64(from)},
				nftables.SetElement{Key: be64(to), IntervalEnd: true})
		}
		d.sets = append(d.sets, unknownOffline)
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

	for _, p := range rs.Profiles {
		fmt.Fprintf(&sig, " profile=%s", p.ID)
		b4 := &setSpec{rebuild: true, set: &nftables.Set{Table: t, Name: "block4_" + p.ID, Interval: true, KeyType: nftables.TypeIPAddr,
			Comment: "IPv4 destinations blocked for " + label(p)}}
		b6 := &setSpec{rebuild: true, set: &nftables.Set{Table: t, Name: "block6_" + p.ID, Interval: true, KeyType: nftables.TypeIP6Addr,
			Comment: "IPv6 destinations blocked for " + label(p)}}
		b4.elems, b6.elems = prefixElems(p.Block)
		d.sets = append(d.sets, b4, b6)
		ch := &chainSpec{chain: &nftables.Chain{Name: "profile_" + p.ID, Table: t}}
		note := "profile " + label(p)
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			ch.add(note+": no DNS over TLS", l4proto(proto), dport(853), gotoChain("reject_bypass"))
		}
		ch.add(note+": blocked IPv4", nfproto(unix.NFPROTO_IPV4),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: b4.set.Name},
			gotoChain("reject_blocked"))
		ch.add(note+": blocked IPv6", nfproto(unix.NFPROTO_IPV6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Lookup{SourceRegister: 1, SetName: b6.set.Name},
			gotoChain("reject_blocked"))
		d.chains = append(d.chains, ch)
	}

	managedChain := &chainSpec{chain: &nftables.Chain{Name: "managed", Table: t}}
	for _, lan := range rs.LAN {
		managedChain.add("traffic that stays inside the LAN", ifname(expr.MetaKeyOIFNAME, lan), &expr.Verdict{Kind: expr.VerdictReturn})
	}
	managedChain.add("device inside an offline interval",
		etherSaddr(reg32_00),
		&expr.Meta{Key: metaTimeNS, Register: reg32_02},
		&expr.Byteorder{SourceRegister: reg32_02, DestRegister: reg32_02, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: reg32_00, SetName: "offline"},
		gotoChain("reject_offline"))
	managedChain.add("configured device: its profile",
		etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "device_profile", DestRegister: 0, IsDestRegSet: true})
	if rs.Unknown != nil {
		managedChain.add("unknown device inside an offline interval",
			&expr.Meta{Key: metaTimeNS, Register: 1},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
			&expr.Lookup{SourceRegister: 1, SetName: "unknown_offline"},
			gotoChain("reject_offline"))
		if hasProfile(rs, rs.Unknown.Profile) {
			managedChain.add("unknown device: profile "+rs.Unknown.Profile, gotoChain("profile_"+rs.Unknown.Profile))
		}
	}
	d.chains = append(d.chains, managedChain)

	fwd := &chainSpec{chain: &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10), Policy: policy(nftables.ChainPolicyAccept)}}
	for _, lan := range rs.LAN {
		fwd.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "managed"})
	}
	d.chains = append(d.chains, fwd)

	dns := &chainSpec{chain: &nftables.Chain{Name: "dns_redirect", Table: t}}
	if rs.Unknown == nil {
		dns.add("only managed devices", etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "managed", Invert: true},
			&expr.Verdict{Kind: expr.VerdictReturn})
	}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		dns.add("DNS to any resolver goes to the router", l4proto(proto), dport(53),
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(rs.DNSPort)},
			&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED})
	}
	pre := &chainSpec{chain: &nftables.Chain{Name: "dns", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-110), Policy: policy(nftables.ChainPolicyAccept)}}
	for _, lan := range rs.LAN {
		pre.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "dns_redirect"})
	}
	d.chains = append(d.chains, dns, pre)
	d.sig = sig.String()
	return d, nil
}

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
// came in on an Ethernet device (nft adds the same check for `ether saddr`).
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

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

// ns converts an instant to kernel time (ns since the epoch), clamped at 0.
func ns(t time.Time) uint64 {
	if t.Unix() <= 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// padMAC pads a MAC to the 8 bytes a set key of type ether_addr takes in
// a concatenation; plain ether_addr keys are 6 bytes.
func padMAC(m net.HardwareAddr) []byte { return append([]byte(nil), m...) }

func concatKey(m net.HardwareAddr, t uint64) []byte {
	k := make([]byte, 8, 16)
	copy(k, m)
	return binary.BigEndian.AppendUint64(k, t)
}

// prefixElems turns prefixes into classic interval-set elements (start, and
// end+1 flagged IntervalEnd), merged so that no two ranges overlap, which
// the kernel refuses.
func prefixElems(ps []netip.Prefix) (v4, v6 []nftables.SetElement) {
	type rng struct{ lo, hi netip.Addr }
	var r4, r6 []rng
	for _, p := range ps {
		p = p.Masked()
		r := rng{p.Addr(), lastAddr(p)}
		if p.Addr().Is4() {
			r4 = append(r4, r)
		} else {
			r6 = append(r6, r)
		}
	}
	conv := func(rs []rng) []nftables.SetElement {
		sort.Slice(rs, func(i, j int) bool { return rs[i].lo.Less(rs[j].lo) })
		var merged []rng
		for _, r := range rs {
			if n := len(merged); n > 0 {
				last := &merged[n-1]
				if next := last.hi.Next(); !next.IsValid() || !next.Less(r.lo) {
					if last.hi.Less(r.hi) {
						last.hi = r.hi
					}
					continue
				}
			}
			merged = append(merged, r)
		}
		var out []nftables.SetElement
		for _, r := range merged {
			out = append(out, nftables.SetElement{Key: r.lo.AsSlice()})
			if end := r.hi.Next(); end.IsValid() {
				out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
			}
		}
		return out
	}
	return conv(r4), conv(r6)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
