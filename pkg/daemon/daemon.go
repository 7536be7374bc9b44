// Package daemon is curfew's reconcile loop: load the config, compute the
// plan for now, render it, apply it, cut open connections of devices that
// just went offline, then sleep until the plan's next change, a reload, a
// kernel change by someone else or the periodic resync — and repeat.
//
// The loop never trusts the monotonic clock alone for wall-clock events: it
// wakes at least every ResyncEvery and recomputes from the wall clock, so an
// NTP step or a manual `date` is noticed within that period.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/firewall"
	"curfew/pkg/plan"
	"curfew/pkg/services"
	"curfew/pkg/tz"
)

// Resyncer is implemented by backends that can tell when someone else
// changed their kernel state (nftables: the monitor).
type Resyncer interface {
	Resync(ctx context.Context) (bool, error)
	Watch(ctx context.Context, onChange func()) error
}

// Options wire a daemon.
type Options struct {
	ConfigPath string
	SystemPath string
	Backend    firewall.Backend
	// Seen lists the MACs present on the LAN right now.
	Seen func(lan []string) []net.HardwareAddr
	// ClockTrusted reports whether the wall clock can be believed.
	ClockTrusted func() bool
	Now          func() time.Time
	Log          *slog.Logger
	// ResyncEvery bounds every sleep; zero means 30 s.
	ResyncEvery time.Duration
	// DNSPort is where managed devices' DNS is redirected.
	DNSPort uint16
}

// Daemon is a running reconcile loop.
type Daemon struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	cfg      *config.Config
	loc      *time.Location
	loadErrs []string
	loadedAt time.Time
	last     *plan.Plan
	applied  bool

	wake chan struct{}
}

// New returns a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ResyncEvery == 0 {
		opts.ResyncEvery = 30 * time.Second
	}
	if opts.ClockTrusted == nil {
		opts.ClockTrusted = func() bool { return true }
	}
	if opts.Seen == nil {
		opts.Seen = func([]string) []net.HardwareAddr { return nil }
	}
	if opts.DNSPort == 0 {
		opts.DNSPort = 53
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{opts: opts, log: log, wake: make(chan struct{}, 1)}
}

// Reload asks the loop to re-read the config (SIGHUP, `curfew reload`).
func (d *Daemon) Reload() {
	d.mu.Lock()
	d.cfg = nil // marks "reload wanted"; the last good one is kept in d.last
	d.mu.Unlock()
	d.kick()
}

func (d *Daemon) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// load reads config and time zone. On error the previous config stays in
// force and the error is kept for status.
func (d *Daemon) load(prev *config.Config, prevLoc *time.Location) (*config.Config, *time.Location) {
	c, warns, err := config.Load(d.opts.ConfigPath, services.Builtin())
	for _, w := range warns {
		d.log.Warn("config: " + w.String())
	}
	var zone tz.Zone
	if err == nil {
		zone, err = tz.FromSystemFile(d.opts.SystemPath)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loadedAt = d.opts.Now()
	if err != nil {
		d.loadErrs = config.Problems(err)
		for _, e := range d.loadErrs {
			d.log.Error("config error: " + e)
		}
		if prev != nil {
			d.log.Error("config not applied; still enforcing the last good config", "file", d.opts.ConfigPath)
		}
		return prev, prevLoc
	}
	d.loadErrs = nil
	d.log.Info("config loaded", "file", d.opts.ConfigPath, "profiles", len(c.Profiles), "devices", len(c.Devices), "schedules", len(c.Schedules), "zone", zone.Source)
	return c, zone.Loc
}

// Run runs the loop until ctx ends. On a clean stop it removes the kernel
// state: a stopped curfew must not keep children offline. (A crash — or
// SIGKILL — does not get here, and the kernel keeps enforcing the plan.)
func (d *Daemon) Run(ctx context.Context) error {
	var kernelChanged chan struct{}
	if r, ok := d.opts.Backend.(Resyncer); ok {
		kernelChanged = make(chan struct{}, 1)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			err := r.Watch(wctx, func() {
				select {
				case kernelChanged <- struct{}{}:
				default:
				}
			})
			if err != nil {
				d.log.Warn("kernel monitor unavailable; relying on periodic resync", "err", err)
			}
		}()
	}
	var cfg *config.Config
	var loc *time.Location
	cfg, loc = d.load(nil, nil)
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	for {
		if cfg != nil {
			d.reconcile(ctx, cfg, loc)
		}
		sleep := d.opts.ResyncEvery
		if next := d.nextChange(); next != nil {
			if until := next.Sub(d.opts.Now()); until < sleep {
				sleep = max(until, 0) + 5*time.Millisecond
			}
		}
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return d.stop()
		case <-d.wake:
			d.mu.Lock()
			reload := d.cfg == nil
			d.mu.Unlock()
			if reload {
				cfg, loc = d.load(cfg, loc)
				d.mu.Lock()
				d.cfg = cfg
				d.mu.Unlock()
			}
		case <-kernelChanged:
			if r, ok := d.opts.Backend.(Resyncer); ok {
				// Let a burst of deletions (nft flush ruleset) finish first.
				time.Sleep(50 * time.Millisecond)
				if fixed, err := r.Resync(ctx); err != nil {
					d.log.Error("kernel resync failed", "err", err)
				} else if fixed {
					d.log.Warn("kernel rules were changed by someone else; restored")
				}
			}
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (d *Daemon) stop() error {
	d.log.Info("stopping; removing curfew's kernel rules")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.opts.Backend.Remove(ctx)
}

func (d *Daemon) nextChange() *time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return nil
	}
	return d.last.NextChange
}

// reconcile computes and applies the plan for now.
func (d *Daemon) reconcile(ctx context.Context, cfg *config.Config, loc *time.Location) {
	now := d.opts.Now()
	if !cfg.Enabled {
		d.mu.Lock()
		wasApplied := d.applied
		d.applied = false
		d.last = plan.Compute(plan.Input{Config: cfg, Loc: loc, At: now, ClockTrusted: true})
		d.mu.Unlock()
		if wasApplied {
			d.log.Info("curfew disabled in the config; removing its kernel rules")
		}
		if err := d.opts.Backend.Remove(ctx); err != nil {
			d.log.Error("remove kernel rules", "err", err)
		}
		return
	}
	p := plan.Compute(plan.Input{
		Config:       cfg,
		Loc:          loc,
		At:           now,
		Seen:         d.opts.Seen(cfg.LAN),
		ClockTrusted: d.opts.ClockTrusted(),
	})
	rs := firewall.Render(p, cfg, d.opts.DNSPort)
	if err := d.opts.Backend.Apply(ctx, rs); err != nil {
		d.log.Error("apply kernel rules", "backend", d.opts.Backend.Name(), "err", err)
		return
	}
	d.mu.Lock()
	prev := d.last
	d.last = p
	d.applied = true
	d.mu.Unlock()

	var cut []net.HardwareAddr
	var names []string
	for _, dev := range p.Devices {
		old := find(prev, dev.MAC)
		if old == nil || old.State != dev.State || old.Reason != dev.Reason {
			d.log.Info(describe(dev, loc))
		}
		mac, err := net.ParseMAC(dev.MAC)
		if err != nil || !dev.Managed {
			continue
		}
		if dev.State == plan.Offline && (old == nil || old.State != plan.Offline) {
			cut = append(cut, mac)
			names = append(names, label(dev))
			continue
		}
		// Destinations are checked when a flow starts: flows to anything
		// blocked since the last plan are cut here.
		if added := newlyBlocked(old, dev); len(added) > 0 {
			if n, err := d.opts.Backend.Cutoff(ctx, []net.HardwareAddr{mac}, added); err != nil {
				d.log.Warn("cut flows to newly blocked destinations", "device", label(dev), "err", err)
			} else if n > 0 {
				d.log.Info(fmt.Sprintf("cut %d flow(s) to newly blocked destinations", n), "device", label(dev))
			}
		}
	}
	if len(cut) > 0 {
		n, err := d.opts.Backend.Cutoff(ctx, cut, nil)
		if err != nil {
			d.log.Warn("cut open connections", "devices", strings.Join(names, ", "), "err", err)
		} else if n > 0 {
			d.log.Info(fmt.Sprintf("cut %d open connection(s)", n), "devices", strings.Join(names, ", "))
		}
	}
}

// newlyBlocked returns the prefixes blocked for dev now that were not in
// its previous state (all of them for a device not seen before).
func newlyBlocked(old *plan.Device, dev plan.Device) []netip.Prefix {
	had := map[netip.Prefix]bool{}
	if old != nil {
		for _, b := range old.BlockDest {
			had[b.Prefix] = true
		}
	}
	var out []netip.Prefix
	for _, b := range dev.BlockDest {
		if b.Domain == "" && !had[b.Prefix] {
			out = append(out, b.Prefix)
		}
	}
	return out
}

// Plan returns the last computed plan and the config load status.
func (d *Daemon) Plan() (*plan.Plan, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.loadErrs
}

func find(p *plan.Plan, mac string) *plan.Device {
	if p == nil {
		return nil
	}
	for i := range p.Devices {
		if p.Devices[i].MAC == mac {
			return &p.Devices[i]
		}
	}
	return nil
}

func label(d plan.Device) string {
	if d.Name != "" {
		return d.Name
	}
	return d.MAC
}

// describe is the one log line per state change: "Alice iPad offline:
// schedule bedtime 21:00-07:00 until 07:00".
func describe(d plan.Device, loc *time.Location) string {
	s := fmt.Sprintf("%s %s: %s", label(d), d.State, d.Reason)
	if d.Until != nil {
		s += " until " + d.Until.In(loc).Format("Mon 15:04")
	}
	return s
}
