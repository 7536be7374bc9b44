// The host around the daemon: the kernel's clock and its steps, the
// neighbour table, interfaces created anew.

package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
