package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall/nft"
)

// Command is `curfew daemon`: it parses flags, wires the kernel backend and
// runs the loop until SIGTERM/SIGINT (ctx); SIGHUP reloads the config.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("daemon", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	configPath := fs.String("config", "/etc/config/curfew", "config file")
	systemPath := fs.String("system", "/etc/config/system", "OpenWrt system config (time zone)")
	fs.String("state-dir", "/etc/curfew", "directory for parent overrides")
	fs.String("socket", "/var/run/curfew.sock", "control socket")
	trustClock := fs.Bool("trust-clock", false, "treat the clock as synchronised from the start (NTP is handled elsewhere)")
	verbose := fs.BoolP("verbose", "v", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		return 64
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := nft.Available(0); err != nil {
		fmt.Fprintf(stderr, "curfew: nftables is not usable here: %v\n", err)
		return 1
	}
	backend := nft.New(nft.Options{Log: log})
	d := New(Options{
		ConfigPath:   *configPath,
		SystemPath:   *systemPath,
		Backend:      backend,
		Seen:         neighbours,
		ClockTrusted: func() bool { return *trustClock || kernelClockSynced() },
		Log:          log,
	})
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
				d.Reload()
			}
		}
	}()
	log.Info("curfew daemon starting", "config", *configPath, "backend", backend.Name())
	if err := d.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// kernelClockSynced reports whether the kernel considers its clock
// synchronised (an NTP daemon that disciplines it clears STA_UNSYNC).
func kernelClockSynced() bool {
	var t unix.Timex
	state, err := unix.Adjtimex(&t)
	return err == nil && state != unix.TIME_ERROR && t.Status&unix.STA_UNSYNC == 0
}

// neighbours lists the MACs in the neighbour table of the LAN interfaces.
func neighbours(lan []string) []net.HardwareAddr {
	var out []net.HardwareAddr
	seen := map[string]bool{}
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
			if k := n.HardwareAddr.String(); !seen[k] {
				seen[k] = true
				out = append(out, n.HardwareAddr)
			}
		}
	}
	return out
}
