// Package daemon is curfew's reconcile loop: load the config, compute the
// plan for now, render it, apply it, cut open connections of devices that
// just went offline, then sleep until the plan's next change, a parent's
// command, a reload, a kernel change by someone else, a clock step or the
// periodic resync — and repeat.
//
// The loop never trusts the monotonic clock alone for wall-clock events:
// a step of the wall clock (NTP, a manual `date`) is reported on
// Options.ClockJumps, and every sleep is bounded by ResyncEvery.
package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/devices"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/firewall"
	"curfew/pkg/notify"
	"curfew/pkg/page"
	"curfew/pkg/plan"
	"curfew/pkg/services"
	"curfew/pkg/tz"
	"curfew/pkg/wifi"
)

// Clock is the daemon's view of time; tests replace it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Neighbour is a device present on the LAN.
type Neighbour struct {
	MAC net.HardwareAddr
	IPs []netip.Addr
}

// Options wire a daemon.
type Options struct {
	ConfigPath string
	// loaded is the config file as the command read it to pick the
	// backend: the first load takes it instead of parsing the file again
	// (100,000 prefixes: 0.1 s and 20 MB of garbage each time).
	loaded     *loadedConfig
	SystemPath string
	// StateDir keeps the parents' overrides across restarts.
	StateDir string
	Backend  firewall.Backend
	// Fallback, when set (backend 'auto'), gives the backend to use
	// instead when the kernel refuses Backend's very first rules: an old
	// kernel whose nf_tables lacks something the table needs still gets
	// iptables' rules rather than none. It is used once, before any rules
	// were taken, and said in the log and in status.
	Fallback func() firewall.Backend
	// FirewallPath is the firewall's UCI config (/etc/config/firewall):
	// status says what its flow offloading costs.
	FirewallPath string
	// Seen lists the devices present on the LAN interfaces right now.
	Seen func(lan []string) []Neighbour
	// ClockTrusted reports whether the system believes its clock; the
	// daemon also trusts it after a clock_synced call (NTP hotplug).
	ClockTrusted func() bool
	// ClockJumps receives a value whenever the wall clock is stepped.
	ClockJumps <-chan struct{}
	Clock      Clock
	Log        *slog.Logger
	// ResyncEvery bounds every sleep; zero means 30 s.
	ResyncEvery time.Duration
	// HealEvery is how often a Healer backend's jumps are checked; zero
	// means 2 s, so that a flushed FORWARD chain is back within 3 s.
	HealEvery time.Duration
	// DNSPort is where managed devices' DNS is redirected.
	DNSPort uint16
	// Version is reported by status.
	Version string
	// DNS is the DNS filter; nil runs without one (the kernel then sends
	// managed devices' DNS to the router's resolver directly).
	DNS *dnsfilter.Server
	// Lists loads the block lists the DNS filter uses.
	Lists *dnsfilter.Lists
	// MinuteLength is how often screen time is counted: a minute, except
	// in tests, which shorten it.
	MinuteLength time.Duration
	// LeasesFile is dnsmasq's lease file (/tmp/dhcp.leases); empty: none.
	LeasesFile string
	// Page serves the bedtime page on the LAN (config page, page_port).
	Page bool
	// Notify sends events to the parents' URLs; nil: none.
	Notify *notify.Notifier
}

// Daemon is a running reconcile loop.
type Daemon struct {
	opts Options
	log  *slog.Logger

	// applyMu serialises reconciles: the loop's and a parent's command's.
	applyMu sync.Mutex

	mu   sync.Mutex
	cfg  *config.Config
	loc  *time.Location
	zone string
	// zoneFrom is the system config's zonename and timezone behind loc.
	zoneFrom [2]string
	loadErrs []string
	loadedAt time.Time
	last     *plan.Plan
	applied  bool
	// appliedPrefixes counts the blocked prefixes last applied (reconcile
	// hands memory back when it changes).
	appliedPrefixes int
	// prefixes keeps the rendered block lists between reconciles.
	prefixes  firewall.PrefixCache
	overrides []plan.Override
	seen      map[string]*seenDevice
	// byIP and byMAC index the neighbours and the plan. byIP is rebuilt
	// from each read of the neighbour table, so it holds no more than the
	// kernel does.
	byIP  map[netip.Addr]string
	byMAC map[string]*plan.Device
	// identities is byIP with the devices' names, for the DNS filter,
	// which asks for every query: replaced whole under mu (publish) and
	// read without it, so that no query waits for a reconcile or a
	// parent's command.
	identities atomic.Pointer[map[netip.Addr]dnsfilter.Device]
	// neighRead is when a DNS query from an address not in identities
	// last made the daemon read the neighbour table (Unix ns).
	neighRead atomic.Int64
	// dnsRoute is where each managed device's DNS was redirected at the
	// last apply (the port), to notice when it changes.
	dnsRoute   map[string]uint16
	ntpTrusted bool
	// stateErr says what went wrong reading the overrides file, for
	// status, until a parent's next action writes a good one.
	stateErr string
	// enforce says whether the kernel took the last rules, for status; a
	// refusal is tried again after retryAfter, which doubles up to
	// maxRetry while the refusals go on.
	enforce    control.Enforcement
	retryAfter time.Duration
	// everApplied: the kernel took rules once; fellBack says why the
	// backend is Options.Fallback's (status notes it).
	everApplied bool
	fellBack    string

	wake chan struct{}
	// reschedule tells the loop that a reconcile just ran on another
	// goroutine (a parent's action): it only works out its next wake-up
	// again, without repeating the work.
	reschedule  chan struct{}
	listsWanted chan struct{}
	memo        map[string]*policyMemo

	usage      *usageBook
	usageSaved time.Time
	lastBytes  map[string]uint64
	lastDNS    map[string]dnsfilter.Counters
	// lastService are the kernel's service counters at the last minute,
	// learned the addresses the DNS filter learned for each profile's
	// limited services and when each expires.
	lastService map[firewall.ServiceKey]uint64
	learned     map[firewall.ServiceKey]map[netip.Addr]time.Time
	// lastDrops are the kernel's dropped-connection counts at the last
	// minute, dropsTold when each device's were last logged.
	lastDrops  map[string]uint64
	dropsTold  map[string]time.Time
	leases     map[string]devices.Lease
	knownHosts map[string]*config.Device

	// page serves the bedtime page; nil without Options.Page.
	page *page.Server
	// requests are the children's requests for more time (kept with the
	// overrides), nextRequest the last id given.
	requests    []control.TimeRequest
	nextRequest int
	// started is set after the first reconcile: devices present at
	// start-up are no news.
	started bool
	// bypassTold, newDeviceHour and newDeviceCount bound the events.
	bypassTold     map[string]time.Time
	newDeviceHour  time.Time
	newDeviceCount int
	// wifi follows hostapd for the key each station joined with;
	// wifiPending is when news of a station came that no apply has
	// taken yet.
	wifi        *wifi.Watcher
	wifiPending time.Time
	// toldOnce holds "profile date" (and "profile service date") for
	// budget_used events sent, and "profile instant" for wind_down events
	// (see firstTime).
	toldOnce map[string]bool
}

type seenDevice struct {
	ips         []netip.Addr
	first, last time.Time
}

// New returns a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.ResyncEvery == 0 {
		opts.ResyncEvery = 30 * time.Second
	}
	if opts.HealEvery == 0 {
		opts.HealEvery = 2 * time.Second
	}
	if opts.ClockTrusted == nil {
		opts.ClockTrusted = func() bool { return true }
	}
	if opts.Seen == nil {
		opts.Seen = func([]string) []Neighbour { return nil }
	}
	if opts.DNSPort == 0 {
		opts.DNSPort = 53
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Lists == nil {
		opts.Lists = dnsfilter.NewLists(nil, log)
	}
	if opts.MinuteLength == 0 {
		opts.MinuteLength = time.Minute
	}
	d := &Daemon{opts: opts, log: log, wake: make(chan struct{}, 1), reschedule: make(chan struct{}, 1), listsWanted: make(chan struct{}, 1),
		seen: map[string]*seenDevice{}, byIP: map[netip.Addr]string{}, byMAC: map[string]*plan.Device{},
		memo:  map[string]*policyMemo{},
		usage: &usageBook{}, lastBytes: map[string]uint64{}, lastDNS: map[string]dnsfilter.Counters{}, lastService: map[firewall.ServiceKey]uint64{},
		leases: map[string]devices.Lease{}, knownHosts: map[string]*config.Device{},
		bypassTold: map[string]time.Time{}, toldOnce: map[string]bool{},
		lastDrops: map[string]uint64{}, dropsTold: map[string]time.Time{}}
	if opts.Page {
		d.page = page.NewServer(d)
	}
	d.wifi = wifi.NewWatcher(log, d.wifiChanged)
	return d
}

func (d *Daemon) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// reconcileNow applies the plan before returning, as a parent's action
// must, and has the loop pick its next wake-up from the new plan.
func (d *Daemon) reconcileNow(ctx context.Context) {
	d.reconcile(ctx)
	select {
	case d.reschedule <- struct{}{}:
	default:
	}
}

type loadedConfig struct {
	cfg   *config.Config
	warns []config.Diag
	err   error
}

// load reads config and time zone. On error the previous config stays in
// force and the error is kept for status.
func (d *Daemon) load() {
	d.mu.Lock()
	l := d.opts.loaded
	d.opts.loaded = nil
	d.mu.Unlock()
	if l == nil {
		l = &loadedConfig{}
		l.cfg, l.warns, l.err = config.Load(d.opts.ConfigPath, services.Builtin())
	}
	c, warns, err := l.cfg, l.warns, l.err
	for _, w := range warns {
		d.log.Warn("config: " + w.String())
	}
	var zone tz.Zone
	if err == nil {
		zone, err = tz.FromSystemFile(d.opts.SystemPath)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loadedAt = d.opts.Clock.Now()
	if err != nil {
		d.loadErrs = config.Problems(err)
		for _, e := range d.loadErrs {
			d.log.Error("config error: " + e)
		}
		if d.cfg != nil {
			d.log.Error("config not applied; still enforcing the last good config", "file", d.opts.ConfigPath)
		}
		return
	}
	d.loadErrs = nil
	d.cfg, d.loc, d.zone, d.zoneFrom = c, zone.Loc, zone.Source, [2]string{zone.Zonename, zone.Timezone}
	if d.opts.Notify != nil {
		d.opts.Notify.Configure(c.Notify, c.NotifyEvents)
	}
	if zone.Warning != "" {
		d.log.Warn("time zone: " + zone.Warning)
		d.zone += " — " + zone.Warning
	}
	select {
	case d.listsWanted <- struct{}{}:
	default:
	}
	d.configureWifi(c)
	d.log.Info("config loaded", "file", d.opts.ConfigPath, "profiles", len(c.Profiles), "devices", len(c.Devices), "schedules", len(c.Schedules), "zone", zone.Source)
}

// Run runs the loop until ctx ends. On a clean stop it removes the kernel
// state: a stopped curfew must not keep children offline. (A crash — or
// SIGKILL — does not get here, and the kernel keeps enforcing the plan.)
func (d *Daemon) Run(ctx context.Context) error {
	d.restore()
	d.load()
	lctx, stopLists := context.WithCancel(ctx)
	defer stopLists()
	go d.refreshLists(lctx, d.listsWanted)
	go d.wifi.Run(lctx)
	// The first apply settles the backend ('auto' may fall back): what
	// watches and reads the kernel starts after it.
	d.reconcile(ctx)
	kernelChanged := d.watchKernel(lctx)
	go d.countMinutes(lctx)
	if h, ok := d.opts.Backend.(firewall.Healer); ok {
		go d.heal(lctx, h)
	}
	for again := false; ; {
		if again {
			d.reconcile(ctx)
		}
		again = true
		sleep := d.opts.ResyncEvery
		if next := d.nextChange(); next != nil {
			if until := next.Sub(d.opts.Clock.Now()); until < sleep {
				sleep = max(until, 0) + 5*time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return d.stop()
		case <-d.wake:
		case <-d.reschedule:
			again = false
		case <-d.opts.ClockJumps:
			d.log.Info("wall clock stepped; re-evaluating", "now", d.opts.Clock.Now().Format(time.RFC3339))
		case <-kernelChanged:
			// Let a burst of deletions (nft flush ruleset) finish first.
			time.Sleep(50 * time.Millisecond)
			d.resync(ctx)
		case <-d.opts.Clock.After(sleep):
			// Backends without a change monitor (iptables) are checked
			// on every periodic wake-up instead.
			if kernelChanged == nil {
				d.resync(ctx)
			}
		}
	}
}

// heal checks the backend's entry points every HealEvery until ctx ends.
func (d *Daemon) heal(ctx context.Context, h firewall.Healer) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.opts.Clock.After(d.opts.HealEvery):
		}
		d.applyMu.Lock()
		_, err := h.Heal(ctx)
		d.applyMu.Unlock()
		if err != nil {
			d.log.Error("restoring the firewall's jumps failed", "err", err)
		}
	}
}

// restore reads the state dir: the parents' overrides, the requests and
// the usage history. What cannot be read is logged, and status says so.
func (d *Daemon) restore() {
	if d.opts.StateDir == "" {
		return
	}
	doc, err := loadState(d.opts.StateDir)
	if err != nil {
		d.log.Error("parent overrides", "err", err)
		d.mu.Lock()
		d.stateErr = err.Error()
		d.mu.Unlock()
	}
	u, err := loadUsage(d.opts.StateDir)
	if err != nil {
		d.log.Error("usage history not restored", "err", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.overrides, d.usage = doc.Overrides, u
	d.requests, d.nextRequest = doc.Requests, doc.NextRequest
	// the state's earlier copy (after a damaged write) may know fewer IDs
	// than its requests use
	for _, r := range d.requests {
		if n, err := strconv.Atoi(r.ID); err == nil && n > d.nextRequest {
			d.nextRequest = n
		}
	}
}

// watchKernel starts the backend's change monitor, if it has one, and
// returns the channel it signals on; nil without a monitor (iptables:
// the periodic wake-ups check instead).
func (d *Daemon) watchKernel(ctx context.Context) chan struct{} {
	r, ok := d.opts.Backend.(firewall.Watcher)
	if !ok {
		return nil
	}
	changed := make(chan struct{}, 1)
	go func() {
		err := r.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			d.log.Warn("kernel monitor unavailable; relying on periodic resync", "err", err)
		}
	}()
	return changed
}

// resync lets the backend restore what someone else changed, if it can
// tell (nftables after a monitor event, iptables on the periodic wake-up).
func (d *Daemon) resync(ctx context.Context) {
	r, ok := d.opts.Backend.(firewall.Resyncer)
	if !ok {
		return
	}
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	if fixed, err := r.Resync(ctx); err != nil {
		d.log.Error("kernel resync failed", "err", err)
	} else if fixed {
		d.log.Warn("kernel rules were changed by someone else; restored")
	}
}

func (d *Daemon) stop() error {
	d.log.Info("stopping; removing curfew's kernel rules")
	if d.opts.DNS != nil {
		d.opts.DNS.Close()
	}
	if d.page != nil {
		d.page.Close()
	}
	if d.opts.StateDir != "" {
		d.saveUsage()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	return d.opts.Backend.Remove(ctx)
}

// Retries of refused rules: the first after firstRetry, then twice as
// long each time, at most maxRetry apart.
const (
	firstRetry = 2 * time.Second
	maxRetry   = time.Minute
)

// refused records that the kernel refused the rules: nothing is enforced.
// It is said loudly everywhere a parent looks (status, LuCI, the log) and
// told once per failure through the enforcement_failed notification; the
// next try is scheduled with back-off.
func (d *Daemon) refused(err error, now time.Time) {
	d.mu.Lock()
	first := d.enforce.OK || d.enforce.Since.IsZero()
	if first {
		d.enforce.Since, d.retryAfter = now, firstRetry
	} else {
		d.retryAfter = min(2*d.retryAfter, maxRetry)
	}
	d.enforce.OK, d.enforce.Error, d.enforce.NextTry = false, err.Error(), now.Add(d.retryAfter)
	retry := d.retryAfter
	d.mu.Unlock()
	d.log.Error("NOTHING IS ENFORCED: the kernel refused curfew's rules", "backend", d.opts.Backend.Name(), "retry_in", retry, "err", err)
	if first {
		d.notify(notify.Event{Event: notify.EnforcementFailed, Time: now,
			Text: "curfew is not enforcing anything: the kernel refused its rules (" + err.Error() + ")"})
	}
}

// backend is the backend in use, for what runs beside the loop.
func (d *Daemon) backend() firewall.Backend {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opts.Backend
}

// fallBack switches to Options.Fallback when the kernel refused the
// backend's first rules (err), and says so; it reports whether it did.
// The caller holds applyMu, and the watchers of the kernel start only
// after the first apply, so nothing else uses the backend meanwhile but
// status, which reads it under d.mu.
func (d *Daemon) fallBack(err error) bool {
	if d.opts.Fallback == nil || d.everApplied {
		return false
	}
	fb := d.opts.Fallback()
	d.opts.Fallback = nil
	if fb == nil {
		return false
	}
	d.mu.Lock()
	was := d.opts.Backend
	d.opts.Backend = fb
	d.fellBack = fmt.Sprintf("the kernel refused the %s backend's rules (%v); using %s instead", was.Name(), err, fb.Name())
	d.mu.Unlock()
	d.log.Warn("backend 'auto': " + d.fellBack)
	return true
}

// enforced records that the kernel holds the rules.
func (d *Daemon) enforced() {
	d.mu.Lock()
	was := d.enforce
	d.enforce = control.Enforcement{OK: true}
	d.everApplied = true
	d.mu.Unlock()
	if !was.Since.IsZero() {
		d.log.Info("kernel rules in force again", "refused_since", was.Since.Format(time.RFC3339))
	}
}

func (d *Daemon) nextChange() *time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.enforce.OK && !d.enforce.NextTry.IsZero() {
		// a refused apply is tried again before anything else is due
		retry := d.enforce.NextTry
		if d.last == nil || d.last.NextChange == nil || retry.Before(*d.last.NextChange) {
			return &retry
		}
	}
	if d.last == nil {
		return nil
	}
	next := d.last.NextChange
	// An override's end is a change too, even when it does not change a
	// device's state (a pause that runs into bedtime).
	for _, o := range d.overrides {
		if !o.Until.IsZero() && o.Until.After(d.last.At) && (next == nil || o.Until.Before(*next)) {
			u := o.Until
			next = &u
		}
	}
	return next
}

// clockTrusted combines the system's view with the NTP hotplug call.
func (d *Daemon) clockTrusted() bool {
	d.mu.Lock()
	ntp := d.ntpTrusted
	d.mu.Unlock()
	return ntp || d.opts.ClockTrusted()
}

// reconcile computes and applies the plan for now.
func (d *Daemon) reconcile(ctx context.Context) {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	now := d.opts.Clock.Now()
	trusted := d.clockTrusted()
	d.mu.Lock()
	cfg, loc := d.cfg, d.loc
	if cfg == nil {
		d.mu.Unlock()
		return
	}
	d.overrides = live(d.overrides, now, loc)
	ovs := append([]plan.Override(nil), d.overrides...)
	d.expireRequests(now)
	d.mu.Unlock()

	if !cfg.Enabled {
		d.disabled(ctx, cfg, loc, now)
		return
	}
	p, cfg := d.planNow(cfg, loc, now, ovs, trusted)
	rs := firewall.Render(p, cfg, d.opts.DNSPort, &d.prefixes)
	d.configureDNS(cfg, p, rs)
	d.configurePage(cfg, rs)
	err := d.opts.Backend.Apply(ctx, rs)
	if err != nil && d.fallBack(err) {
		err = d.opts.Backend.Apply(ctx, rs)
	}
	if err != nil {
		d.refused(err, now)
		return
	}
	d.enforced()
	d.wifiApplied(now)
	byMAC := make(map[string]*plan.Device, len(p.Devices))
	for i := range p.Devices {
		byMAC[p.Devices[i].MAC] = &p.Devices[i]
	}
	d.mu.Lock()
	prev := d.last
	d.last, d.applied, d.byMAC, d.started = p, true, byMAC, true
	d.publish()
	d.mu.Unlock()
	d.cut(ctx, prev, p, loc)
	d.cutStaleDNS(ctx, p, rs)
	// Programming and cutting a big list takes transient memory (netlink
	// messages for every element, a filter of every prefix); a router has
	// 64-256 MB. Hand it back at once when the lists changed, not minutes
	// later when Go's scavenger would.
	prefixes := 0
	for _, pr := range rs.Profiles {
		prefixes += len(pr.Block)
	}
	if prefixes != d.appliedPrefixes && prefixes > 1000 {
		debug.FreeOSMemory()
	}
	d.appliedPrefixes = prefixes
}

// disabled is reconcile with `enabled '0'`: the plan says so, and the
// rules go, once — when they were in force, and at start-up (a crashed run
// may have left its table behind) — not on every wake-up while curfew
// stays disabled.
func (d *Daemon) disabled(ctx context.Context, cfg *config.Config, loc *time.Location, now time.Time) {
	p := plan.Compute(plan.Input{Config: cfg, Loc: loc, At: now, ClockTrusted: true})
	d.mu.Lock()
	wasApplied, first := d.applied, d.last == nil
	d.applied, d.last = false, p
	d.enforce = control.Enforcement{} // nothing is to be enforced: no refusal to tell
	d.mu.Unlock()
	if !wasApplied && !first {
		return
	}
	if wasApplied {
		d.log.Info("curfew disabled in the config; removing its kernel rules")
	}
	if err := d.opts.Backend.Remove(ctx); err != nil {
		d.log.Error("remove kernel rules; trying again at the next wake-up", "err", err)
		d.mu.Lock()
		d.applied = true
		d.mu.Unlock()
	}
}

// planNow reads who is on the LAN (the neighbour table, DHCP leases,
// devices known by their host name) and computes the plan at now; it
// returns the config with the host-name matches added.
func (d *Daemon) planNow(cfg *config.Config, loc *time.Location, now time.Time, ovs []plan.Override, trusted bool) (*plan.Plan, *config.Config) {
	neighbours := d.opts.Seen(cfg.LAN)
	var macs []net.HardwareAddr
	for _, n := range neighbours {
		macs = append(macs, n.MAC)
	}
	d.noteSeen(neighbours, now)
	d.readLeases(cfg)
	cfg = d.withHostnameMatches(cfg, macs)
	cfg = d.withWifiKeys(cfg)
	return plan.Compute(plan.Input{
		Config:       cfg,
		Loc:          loc,
		At:           now,
		Seen:         macs,
		Overrides:    ovs,
		Used:         d.usedToday(now, loc),
		ServiceUsed:  d.servicesToday(now, loc),
		ClockTrusted: trusted,
	}), cfg
}

// cutStaleDNS deletes the DNS flows of devices whose DNS now goes
// somewhere else than at the previous apply (all of them at the first):
// the kernel's redirect is decided on a flow's first packet, so a DNS flow
// opened before it kept its old resolver — unfiltered, or another
// profile's filter.
func (d *Daemon) cutStaleDNS(ctx context.Context, p *plan.Plan, rs *firewall.Ruleset) {
	ports := map[string]uint16{}
	for _, pr := range rs.Profiles {
		ports[pr.ID] = cmp.Or(pr.DNSPort, rs.DNSPort)
	}
	route := make(map[string]uint16, len(p.Devices))
	moved := map[uint16][]net.HardwareAddr{} // by the port their DNS goes to now
	for _, dev := range p.Devices {
		port, ok := ports[dev.Profile]
		if !dev.Managed || !ok {
			continue
		}
		if dev.State == plan.Offline && rs.OfflineDNSPort != 0 {
			port = rs.OfflineDNSPort
		}
		route[dev.MAC] = port
		if old, had := d.dnsRoute[dev.MAC]; had && old == port {
			continue
		}
		if mac, err := net.ParseMAC(dev.MAC); err == nil {
			moved[port] = append(moved[port], mac)
		}
	}
	d.dnsRoute = route
	for port, macs := range moved {
		if n, err := d.opts.Backend.Cutoff(ctx, macs, firewall.Flows{DNS: true, DNSPort: port}); err != nil {
			d.log.Warn("cut DNS flows opened before the redirect", "err", err)
		} else if n.Flows > 0 {
			d.log.Info(fmt.Sprintf("cut %d DNS flow(s) opened before the redirect", n.Flows))
		}
	}
}

// configureDNS points the DNS filter at the plan's policies before the
// kernel redirects to it; without a filter, profiles' DNS goes to the
// router's resolver.
func (d *Daemon) configureDNS(cfg *config.Config, p *plan.Plan, rs *firewall.Ruleset) {
	if d.opts.DNS == nil || !cfg.DNSFilter {
		for i := range rs.Profiles {
			rs.Profiles[i].DNSPort = 0
		}
		rs.OfflineDNSPort = 0
		if d.opts.DNS != nil {
			d.opts.DNS.Configure(cfg.LAN, cfg.DNSUpstream, nil)
		}
		return
	}
	if err := d.opts.DNS.Configure(cfg.LAN, cfg.DNSUpstream, d.dnsBindings(cfg, p)); err != nil {
		d.log.Error("dns filter", "err", err)
	}
	// A profile whose filter could not listen keeps working DNS through
	// the router's resolver rather than none at all.
	for i := range rs.Profiles {
		if rs.Profiles[i].DNSPort != 0 && !d.opts.DNS.Listening(rs.Profiles[i].ID, cfg.LAN) {
			rs.Profiles[i].DNSPort = 0
		}
	}
	// Without the listener for devices offline now, their DNS stays on
	// their profile's port: answered as in the day (logged above), rather
	// than not at all.
	if !d.opts.DNS.Listening(dnsfilter.Offline, cfg.LAN) {
		rs.OfflineDNSPort = 0
	}
}

// configurePage starts or stops the bedtime page's listeners; a page
// that could not listen gets no redirect (a device would get "connection
// refused" instead of the plain offline it had before).
func (d *Daemon) configurePage(cfg *config.Config, rs *firewall.Ruleset) {
	if d.page == nil || rs.PagePort == 0 {
		rs.PagePort = 0
		if d.page != nil {
			d.page.Configure(cfg.LAN, 0) //nolint:errcheck // stopping cannot fail
		}
		return
	}
	if err := d.page.Configure(cfg.LAN, rs.PagePort); err != nil {
		d.log.Error("bedtime page", "err", err)
	}
	if !d.page.Listening(cfg.LAN) {
		rs.PagePort = 0
	}
}

// maxSeen bounds the devices remembered as seen: a child's device can
// show a new random MAC every second, and each must not cost memory for
// the daemon's lifetime. Past it, the longest-unseen are forgotten.
const maxSeen = 1024

// noteSeen records devices present on the LAN.
func (d *Daemon) noteSeen(neighbours []Neighbour, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	byIP := make(map[netip.Addr]string, len(neighbours))
	for _, n := range neighbours {
		sd := d.seen[n.MAC.String()]
		if sd == nil {
			sd = &seenDevice{first: now}
			d.seen[n.MAC.String()] = sd
			d.noteNewDevice(n.MAC.String(), now)
		}
		sd.last, sd.ips = now, n.IPs
		for _, ip := range n.IPs {
			byIP[ip] = n.MAC.String()
		}
	}
	d.byIP = byIP
	d.publish()
	// The longest unseen go, all in one pass: a child's thousands of
	// random MACs must not cost a scan of the whole list each (with
	// 2,048 MACs that was 21 ms under mu per read).
	if over := len(d.seen) - maxSeen; over > 0 {
		type entry struct {
			mac  string
			last time.Time
		}
		all := make([]entry, 0, len(d.seen))
		for mac, sd := range d.seen {
			all = append(all, entry{mac, sd.last})
		}
		slices.SortFunc(all, func(a, b entry) int { return a.last.Compare(b.last) })
		for _, e := range all[:over] {
			delete(d.seen, e.mac)
		}
	}
}

// publish replaces identities with byIP and the plan's names (mu held).
func (d *Daemon) publish() {
	m := make(map[netip.Addr]dnsfilter.Device, len(d.byIP))
	for ip, mac := range d.byIP {
		dev := dnsfilter.Device{MAC: mac}
		if pd := d.byMAC[mac]; pd != nil {
			dev.Name = pd.Name
		}
		m[ip] = dev
	}
	d.identities.Store(&m)
}

// live drops overrides that have ended: expired pauses and allows, grants
// of earlier days. The state file is not rewritten for this (flash wear);
// it is filtered the same way when read back.
func live(ovs []plan.Override, now time.Time, loc *time.Location) []plan.Override {
	today := now.In(loc).Format("2006-01-02")
	var out []plan.Override
	for _, o := range ovs {
		switch {
		case o.Kind == plan.Grant && o.Day != today:
		case o.Kind != plan.Grant && !o.Until.IsZero() && !o.Until.After(now):
		default:
			out = append(out, o)
		}
	}
	return out
}

// cut logs state changes and deletes the conntrack entries that the new
// plan forbids: every flow of a device that just went offline, and flows to
// destinations blocked since the previous plan.
func (d *Daemon) cut(ctx context.Context, prev, p *plan.Plan, loc *time.Location) {
	var cut []net.HardwareAddr
	var names []string
	previous := earlier{plan: prev}
	// Devices whose profile blocks more than before, grouped by what it
	// was before: one conntrack walk per group, not per device. What a
	// move adds is worked out once per move; most add nothing.
	type move struct{ from, to string }
	added := map[move][]netip.Prefix{}
	groups := map[move][]net.HardwareAddr{}
	for i, dev := range p.Devices {
		old := previous.device(i, dev.MAC)
		if old == nil || old.State != dev.State || old.Reason != dev.Reason {
			d.log.Info(describe(dev, loc))
		}
		if dev.State == plan.Offline && slices.Contains(dev.Causes, plan.CauseLimit) {
			d.noteBudgetUsed(dev, p.At, loc)
		}
		if dev.SlowUntil != nil && (old == nil || old.SlowUntil == nil) {
			d.noteWindDown(dev, p.At, loc)
		}
		if !dev.Managed {
			continue
		}
		m := move{to: dev.Profile}
		if old != nil && old.Managed {
			m.from = old.Profile
		}
		offline := dev.State == plan.Offline && (old == nil || old.State != plan.Offline)
		if !offline {
			more, ok := added[m]
			if !ok {
				var had *plan.ProfileRules
				if prev != nil && m.from != "" {
					had = prev.Rules(m.from)
				}
				more = newlyBlocked(had, p.Rules(m.to))
				added[m] = more
			}
			if len(more) == 0 {
				continue
			}
		}
		mac, err := net.ParseMAC(dev.MAC)
		if err != nil {
			continue
		}
		if offline {
			cut = append(cut, mac)
			names = append(names, label(dev))
			continue
		}
		groups[m] = append(groups[m], mac)
	}
	for m, macs := range groups {
		if n, err := d.opts.Backend.Cutoff(ctx, macs, firewall.Flows{Dests: added[m]}); err != nil {
			d.log.Warn("cut flows to newly blocked destinations", "profile", m.to, "err", err)
		} else if n.Flows > 0 {
			d.log.Info(describeCut(n, "to newly blocked destinations"), "profile", m.to)
		}
	}
	d.cutUsedUp(ctx, prev, p, loc)
	if len(cut) > 0 {
		n, err := d.opts.Backend.Cutoff(ctx, cut, firewall.Flows{})
		if err != nil {
			d.log.Warn("cut open connections", "devices", strings.Join(names, ", "), "err", err)
		} else if n.Flows > 0 {
			d.log.Info(describeCut(n, "at once"), "devices", strings.Join(names, ", "))
		}
	}
}

// earlier finds a device in the previous plan.
type earlier struct {
	plan  *plan.Plan
	byMAC map[string]*plan.Device
}

// device is the previous plan's device i's counterpart, by MAC: at the
// same place while the config's devices stay in order (a pause), by a
// map, made once, otherwise.
func (e *earlier) device(i int, mac string) *plan.Device {
	if e.plan == nil {
		return nil
	}
	if i < len(e.plan.Devices) && e.plan.Devices[i].MAC == mac {
		return &e.plan.Devices[i]
	}
	if e.byMAC == nil {
		e.byMAC = make(map[string]*plan.Device, len(e.plan.Devices))
		for j := range e.plan.Devices {
			e.byMAC[e.plan.Devices[j].MAC] = &e.plan.Devices[j]
		}
	}
	return e.byMAC[mac]
}

// describeCut says what a cut stopped the way a parent counts: the open
// connections, and the rest as finished or idle flows.
func describeCut(c firewall.Cut, how string) string {
	s := fmt.Sprintf("stopped %d open connection(s) %s", c.Open, how)
	if rest := c.Flows - c.Open; rest > 0 {
		s += fmt.Sprintf(" (and cleared %d finished or idle flow(s))", rest)
	}
	return s
}

// newlyBlocked returns the prefixes that now blocks and had did not
// (all of them when had is nil: a device not managed before).
func newlyBlocked(had, now *plan.ProfileRules) []netip.Prefix {
	if now == nil {
		return nil
	}
	if had != nil && len(had.BlockDest) == len(now.BlockDest) && (len(now.BlockDest) == 0 || &had.BlockDest[0] == &now.BlockDest[0]) {
		return nil // the same list (the config's own): nothing new
	}
	old := map[netip.Prefix]bool{}
	if had != nil {
		for _, b := range had.BlockDest {
			old[b.Prefix] = true
		}
	}
	var out []netip.Prefix
	for _, b := range now.BlockDest {
		if b.Domain == "" && !old[b.Prefix] {
			out = append(out, b.Prefix)
		}
	}
	return out
}

func label(d plan.Device) string {
	if d.Name != "" {
		return d.Name
	}
	return d.MAC
}

// describe is the one log line per state change, in the words of explain:
// "Alice iPad offline until Tue 07:00 — schedule bedtime 21:00-07:00".
func describe(d plan.Device, loc *time.Location) string {
	s := label(d)
	if d.Unknown {
		s += fmt.Sprintf(" (not in the config, profile %s)", d.Profile)
	}
	s += " " + string(d.State)
	if d.Until != nil {
		s += " until " + d.Until.In(loc).Format("Mon 15:04")
	}
	if d.Reason != "" && d.Reason != "online" {
		s += " — " + d.Reason
	}
	return s
}
