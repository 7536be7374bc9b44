package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/firewall"
	"curfew/pkg/firewall/ipt"
	"curfew/pkg/firewall/nft"
	"curfew/pkg/notify"
	"curfew/pkg/services"
)

// ClockSyncedFile is touched by the NTP hotplug hook (and by
// `curfew clock-synced`) once busybox ntpd has synchronised the clock, so
// that a daemon started after the event still trusts the clock. It lives on
// tmpfs: after a reboot the clock must be synchronised again.
const ClockSyncedFile = "/var/run/curfew.clock-synced"

// newLogger is the daemon's logger: text lines for logread, or one JSON
// object per line (--json) for tools that collect logs.
func newLogger(w io.Writer, asJSON, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// flags are `curfew daemon`'s options.
type flags struct {
	config, system, stateDir, socket, leases string
	trustClock, verbose, asJSON, legacy      bool
	minute                                   time.Duration
}

// parseFlags reads args; when ok is false, the command ends with code.
func parseFlags(args []string, stdout, stderr io.Writer) (f flags, code int, ok bool) {
	fs := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVar(&f.config, "config", "/etc/config/curfew", "config file")
	fs.StringVar(&f.system, "system", "/etc/config/system", "OpenWrt system config (time zone)")
	fs.StringVar(&f.stateDir, "state-dir", "/etc/curfew", "directory for parent overrides (kept across reboots)")
	fs.StringVar(&f.socket, "socket", "/var/run/curfew.sock", "control socket")
	fs.StringVar(&f.leases, "leases", "/tmp/dhcp.leases", "dnsmasq's DHCP lease file (host names of devices)")
	fs.BoolVar(&f.trustClock, "trust-clock", false, "treat the clock as synchronised from the start (NTP is handled elsewhere)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log debug messages")
	fs.DurationVar(&f.minute, "minute-length", time.Minute, "how often screen time is counted (tests shorten it)")
	fs.MarkHidden("minute-length")
	fs.BoolVar(&f.asJSON, "json", false, "log as JSON lines (one object per message) instead of text")
	fs.BoolVar(&f.legacy, "iptables-legacy", false, "with the iptables backend, use iptables-legacy (where iptables is the nft layer)")
	fs.MarkHidden("iptables-legacy")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: curfew daemon [flags]\n\nRun the enforcing daemon (the init script starts it).\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return f, 0, false
		}
		fmt.Fprintf(stderr, "curfew daemon: %v\n\nUsage: curfew daemon [flags]\n\nFlags:\n%s", err, fs.FlagUsages())
		return f, 64, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "curfew daemon: takes no arguments, got %q\n", strings.Join(fs.Args(), " "))
		return f, 64, false
	}
	return f, 0, true
}

// Command is `curfew daemon`: it parses flags, wires the kernel backend and
// the control socket, and runs the loop until SIGTERM/SIGINT (ctx); SIGHUP
// reloads the config.
func Command(ctx context.Context, args []string, version string, stdout, stderr io.Writer) int {
	f, code, ok := parseFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	log := newLogger(stderr, f.asJSON, f.verbose)
	ln, err := control.Listen(f.socket)
	if err != nil {
		fmt.Fprintf(stderr, "curfew: %v\n", err)
		return 1
	}
	defer os.Remove(f.socket)
	d, notifier, relinked, err := build(ctx, f, version, log)
	if err != nil {
		fmt.Fprintf(stderr, "curfew: %v\n", err)
		return 1
	}
	go notifier.Run(ctx)
	go each(ctx, relinked, d.kick)
	go func() {
		if err := control.Serve(ctx, ln, d.Handle, log); err != nil {
			log.Error("control socket stopped", "err", err)
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go each(ctx, hup, func() {
		log.Info("SIGHUP: reloading config")
		d.Reload(ctx)
	})
	log.Info("curfew daemon starting", "version", version, "config", f.config, "backend", d.opts.Backend.Name(), "socket", f.socket)
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// build makes the daemon and what it is wired to: the kernel backend the
// config asks for, the DNS filter, the notifier, and the host's watchers
// (clock steps; relinked, interfaces created anew).
func build(ctx context.Context, f flags, version string, log *slog.Logger) (d *Daemon, n *notify.Notifier, relinked chan struct{}, err error) {
	loaded := &loadedConfig{}
	loaded.cfg, loaded.warns, loaded.err = config.Load(f.config, services.Builtin())
	want := "auto" // also when the file cannot be read: the daemon reports that
	if loaded.err == nil {
		want = loaded.cfg.Backend
	}
	backend, fallback, err := chooseBackend(want, f.legacy, log)
	if err != nil {
		return nil, nil, nil, err
	}
	jumps := make(chan struct{}, 1)
	go watchClockSteps(ctx, jumps, log)
	relinked = make(chan struct{}, 1)
	go watchLinks(ctx, relinked, log)
	n = notify.New(log)
	dns := dnsfilter.NewServer(dnsfilter.Options{
		Identify: func(a netip.Addr) (dnsfilter.Device, bool) { return d.identify(a) },
		Allowed: func(profile string, addrs []netip.Addr, ttl time.Duration) {
			a, ok := d.backend().(firewall.Allower)
			if !ok {
				return // the iptables backend has no allowlist mode
			}
			if err := a.AllowAddresses(ctx, profile, addrs, ttl); err != nil {
				log.Warn("allowlist: kernel set not updated", "profile", profile, "err", err)
			}
		},
		Learned: func(profile, service string, addrs []netip.Addr, ttl time.Duration) {
			d.learnService(ctx, profile, service, addrs, ttl)
		},
		Log: log,
	})
	d = New(Options{
		DNS: dns, ConfigPath: f.config, loaded: loaded, SystemPath: f.system, FirewallPath: "/etc/config/firewall",
		StateDir: f.stateDir, Backend: backend, Fallback: fallback, Seen: neighbours,
		ClockTrusted: func() bool {
			if f.trustClock || kernelClockSynced() {
				return true
			}
			_, err := os.Stat(ClockSyncedFile)
			return err == nil
		},
		ClockJumps: jumps, Log: log, Version: version, MinuteLength: f.minute, LeasesFile: f.leases,
		Page: true, Notify: n,
	})
	return d, n, relinked, nil
}

// each calls f for every value from ch until ctx ends.
func each[T any](ctx context.Context, ch <-chan T, f func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			f()
		}
	}
}

// chooseBackend picks the kernel backend from the config's backend option
// (want): nftables when the kernel has it (auto), else iptables. With
// auto and nftables, iptables is the fallback for a kernel that refuses
// nftables' table (Options.Fallback). A change of the option takes effect
// at the next daemon start.
func chooseBackend(want string, legacy bool, log *slog.Logger) (firewall.Backend, func() firewall.Backend, error) {
	iptables := func() firewall.Backend { return ipt.New(ipt.Options{Legacy: legacy, Log: log}) }
	nftErr := nft.Available(0)
	switch {
	case want == "nftables" && nftErr != nil:
		return nil, nil, fmt.Errorf("backend 'nftables': nftables is not usable here: %v", nftErr)
	case want == "nftables":
		return nft.New(nft.Options{Log: log}), nil, nil
	case want == "auto" && nftErr == nil:
		return nft.New(nft.Options{Log: log}), iptables, nil
	}
	if want == "auto" {
		log.Info("nftables not usable; using iptables", "why", nftErr)
	}
	return iptables(), nil, nil
}
