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
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

// Command is `curfew daemon`: it parses flags, wires the kernel backend and
// the control socket, and runs the loop until SIGTERM/SIGINT (ctx); SIGHUP
// reloads the config.
func Command(ctx context.Context, args []string, version string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	configPath := fs.String("config", "/etc/config/curfew", "config file")
	systemPath := fs.String("system", "/etc/config/system", "OpenWrt system config (time zone)")
	stateDir := fs.String("state-dir", "/etc/curfew", "directory for parent overrides (kept across reboots)")
	socket := fs.String("socket", "/var/run/curfew.sock", "control socket")
	leases := fs.String("leases", "/tmp/dhcp.leases", "dnsmasq's DHCP lease file (host names of devices)")
	trustClock := fs.Bool("trust-clock", false, "treat the clock as synchronised from the start (NTP is handled elsewhere)")
	verbose := fs.BoolP("verbose", "v", false, "log debug messages")
	minute := fs.Duration("minute-length", time.Minute, "how often screen time is counted (tests shorten it)")
	fs.MarkHidden("minute-length")
	asJSON := fs.Bool("json", false, "log as JSON lines (one object per message) instead of text")
	legacy := fs.Bool("iptables-legacy", false, "with the iptables backend, use iptables-legacy (where iptables is the nft layer)")
	fs.MarkHidden("iptables-legacy")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: curfew daemon [flags]\n\nRun the enforcing daemon (the init script starts it).\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "curfew daemon: %v\n\nUsage: curfew daemon [flags]\n\nFlags:\n%s", err, fs.FlagUsages())
		return 64
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "curfew daemon: takes no arguments, got %q\n", strings.Join(fs.Args(), " "))
		return 64
	}
	log := newLogger(stderr, *asJSON, *verbose)
	loaded := &loadedConfig{}
	loaded.cfg, loaded.warns, loaded.err = config.Load(*configPath, services.Builtin())
	want := "auto" // also when the file cannot be read: the daemon reports that
	if loaded.err == nil {
		want = loaded.cfg.Backend
	}
	backend, fallback, err := chooseBackend(want, *legacy, log)
	if err != nil {
		fmt.Fprintf(stderr, "curfew: %v\n", err)
		return 1
	}
	ln, err := control.Listen(*socket)
	if err != nil {
		fmt.Fprintf(stderr, "curfew: %v\n", err)
		return 1
	}
	defer os.Remove(*socket)
	jumps := make(chan struct{}, 1)
	go watchClockSteps(ctx, jumps, log)
	relinked := make(chan struct{}, 1)
	go watchLinks(ctx, relinked, log)
	var d *Daemon
	notifier := notify.New(log)
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
		Log: log,
	})
	d = New(Options{
		DNS:          dns,
		ConfigPath:   *configPath,
		loaded:       loaded,
		SystemPath:   *systemPath,
		FirewallPath: "/etc/config/firewall",
		StateDir:     *stateDir,
		Backend:      backend,
		Fallback:     fallback,
		Seen:         neighbours,
		ClockTrusted: func() bool {
			if *trustClock || kernelClockSynced() {
				return true
			}
			_, err := os.Stat(ClockSyncedFile)
			return err == nil
		},
		ClockJumps:   jumps,
		Log:          log,
		Version:      version,
		MinuteLength: *minute,
		LeasesFile:   *leases,
		Page:         true,
		Notify:       notifier,
	})
	go notifier.Run(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-relinked:
				d.kick()
			}
		}
	}()
	go func() {
		if err := control.Serve(ctx, ln, d.Handle, log); err != nil {
			log.Error("control socket stopped", "err", err)
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading config")
				d.Reload(ctx)
			}
		}
	}()
	log.Info("curfew daemon starting", "version", version, "config", *configPath, "backend", backend.Name(), "socket", *socket)
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
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

// kernelClockSynced reports whether the kernel considers its clock
// synchronised (an NTP daemon that disciplines it clears STA_UNSYNC).
func kernelClockSynced() bool {
	var t unix.Timex
	state, err := unix.Adjtimex(&t)
	return err == nil && state != unix.TIME_ERROR && t.Status&unix.STA_UNSYNC == 0
}

// watchClockSteps reports steps of the wall clock. A CLOCK_REALTIME timerfd
// armed with TFD_TIMER_CANCEL_ON_SET is cancelled by the kernel whenever the
// clock is set (NTP step, `date -s`), so a step is noticed at once, not at
// the next periodic wake-up.
func watchClockSteps(ctx context.Context, out chan<- struct{}, log *slog.Logger) {
	buf := make([]byte, 8)
	for ctx.Err() == nil {
		fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
		if err != nil {
			log.Warn("clock steps not watched; relying on periodic wake-ups", "err", err)
			return
		}
		// A year ahead: within a 32-bit time_t on the 32-bit targets. If it
		// ever expires, the loop below simply arms a new one.
		far := unix.ItimerSpec{Value: unix.NsecToTimespec(time.Now().AddDate(1, 0, 0).UnixNano())}
		if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &far, nil); err != nil {
			unix.Close(fd)
			log.Warn("clock steps not watched; relying on periodic wake-ups", "err", err)
			return
		}
		// Poll with a timeout rather than block in read, so that the fd is
		// only ever closed here, by its one owner.
		for ctx.Err() == nil {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 1000)
			if n <= 0 {
				continue
			}
			if _, err := unix.Read(fd, buf); err == unix.ECANCELED {
				select {
				case out <- struct{}{}:
				default:
				}
			}
			break
		}
		unix.Close(fd)
	}
}

// neighbours lists the devices in the neighbour table of the LAN
// interfaces, with their addresses.
func neighbours(lan []string) []Neighbour {
	byMAC := map[string]*Neighbour{}
	var order []string
	for _, name := range lan {
		link, err := netlink.LinkByName(name)
		if err != nil {
			continue
		}
		neighs, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, n := range neighs {
			if len(n.HardwareAddr) != 6 || n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 {
				continue
			}
			k := n.HardwareAddr.String()
			nb := byMAC[k]
			if nb == nil {
				nb = &Neighbour{MAC: n.HardwareAddr}
				byMAC[k] = nb
				order = append(order, k)
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok && !a.IsLinkLocalUnicast() {
				nb.IPs = append(nb.IPs, a.Unmap())
			}
		}
	}
	out := make([]Neighbour, 0, len(order))
	for _, k := range order {
		out = append(out, *byMAC[k])
	}
	return out
}

// watchLinks reports interfaces that are created anew or removed (by
// name, a new index): OpenWrt's network restart recreates br-lan, and the
// DNS filter's and the bedtime page's listeners, bound to the old one,
// must be opened again at once, not at the next periodic wake-up. A
// change of state (carrier, up, down) is no news.
func watchLinks(ctx context.Context, out chan<- struct{}, log *slog.Logger) {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { log.Debug("link updates", "err", err) },
	}); err != nil {
		log.Warn("interface changes not watched; relying on periodic wake-ups", "err", err)
		return
	}
	index := map[string]int32{}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			name, i := u.Attrs().Name, u.Index
			changed := false
			switch u.Header.Type {
			case unix.RTM_DELLINK:
				_, changed = index[name]
				delete(index, name)
			case unix.RTM_NEWLINK:
				old, seen := index[name]
				changed = !seen || old != i
				if len(index) < maxSeen || seen {
					index[name] = i
				}
			}
			if changed {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}
}
