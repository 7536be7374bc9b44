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
//	chain mark_M     from dns, a new flow of device M that winds down: its
//	                 id into the conntrack mark's upper half (wind_mark).
//	chain slow_M     from forward, a packet to the LAN of such a flow
//	                 (wind_flows): inside @wind_down_M, the priority of
//	                 M's class of the shaper (see winddown.go).
//
// All changing data lives in sets and maps, so the per-packet cost does not
// grow with the number of devices or blocked prefixes, and a change for one
// device is a change of set elements. Offline intervals are absolute
// instants (an interval set of kernel time per device): the kernel starts and
// ends the coming week's windows on its own, at the right instant across
// DST, with no daemon running.
package nft

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/shape"
)

// TableName is the name of curfew's table in the inet family.
const TableName = "curfew"

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
	memo     memo
	// shaped is what the shaper was last given (see shape).
	shaped shaped
	// learned remembers the DNS filter's additions (allowlists, services)
	// and when they expire.
	learned map[learnedSets]map[netip.Addr]time.Time
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

// Apply implements firewall.Backend.
func (b *Backend) Apply(ctx context.Context, rs *firewall.Ruleset) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	lanIndex := b.lanIndexes(rs.LAN)
	d, err := render(rs, &b.memo, time.Now(), lanIndex)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			b.shape(rs, lanIndex)
		}
	}()
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

// Remove implements firewall.Backend.
func (b *Backend) Remove(ctx context.Context) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	b.applied = nil
	if b.shaped.lan != nil {
		if c, err := shape.Dial(b.opts.NetNSFd); err == nil {
			if err := shape.Remove(c, b.shaped.lan); err != nil {
				b.log.Warn("wind-down: " + err.Error())
			}
			c.Close()
		}
		b.shaped = shaped{}
	}
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

// shaped is what the shaper was last given, so that an apply that changes
// neither (a pause) does not ask the kernel again; a LAN interface made
// anew (a new index) has lost its qdisc and is given it again.
type shaped struct {
	lan     []string
	index   map[string]uint32
	classes []shape.Class
}

// shape gives the LAN interfaces the shaper's classes for the devices
// that wind down (see pkg/firewall/shape). A failure there is logged, once
// for what it was given (tried again when that changes): it slows no one,
// and the table stays.
func (b *Backend) shape(rs *firewall.Ruleset, lanIndex map[string]uint32) {
	want := shaped{lan: rs.LAN, index: lanIndex, classes: shape.Classes(rs)}
	if slices.Equal(want.lan, b.shaped.lan) && maps.Equal(want.index, b.shaped.index) && slices.Equal(want.classes, b.shaped.classes) {
		return
	}
	b.shaped = want
	c, err := shape.Dial(b.opts.NetNSFd)
	if err == nil {
		err = shape.Apply(c, rs.LAN, want.classes)
		c.Close()
	}
	if err != nil {
		b.log.Warn("wind-down: " + err.Error())
	}
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
