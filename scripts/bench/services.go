package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/nft"
	"curfew/pkg/lab"
)

// serviceCost measures what counting time per service costs forwarding
// at 1,000 devices: the table without service limits, with the child's
// profile counting a service that the stream does not go to (a limited
// child's other traffic), and with the stream being that service (every
// packet counted). The variants are whole tables, applied in turn under
// the one stream (each apply replaces the table); the learned addresses
// are the backend's, put back at each replace.
func serviceCost(ctx context.Context, l *lab.Lab, h *netlink.Handle, b *nft.Backend, child net.HardwareAddr, rounds int, sample time.Duration) (string, error) {
	base := bigRuleset(child, 1000, 0)
	with := func(svc string) *firewall.Ruleset {
		rs := *base
		rs.Profiles = append([]firewall.Profile(nil), base.Profiles...)
		rs.Profiles[0].Services = []firewall.Service{{Name: svc}}
		return &rs
	}
	elsewhere, counted := with("youtube"), with("twitch")
	learn := map[*firewall.Ruleset]netip.Addr{elsewhere: netip.MustParseAddr(lab.VideoV4), counted: netip.MustParseAddr(lab.InternetV4)}
	// what the counted variant counted, read before each switch away
	// from it (a replace starts the counter again)
	key := firewall.ServiceKey{Profile: base.Profiles[0].ID, Service: "twitch"}
	var total uint64
	current := base
	apply := func(rs *firewall.Ruleset) func() error {
		return func() error {
			if current == counted {
				got, err := b.ServiceCounters(ctx)
				if err != nil {
					return err
				}
				total += got[key]
			}
			if err := b.Apply(ctx, rs); err != nil {
				return err
			}
			current = rs
			// a replace keeps the learned addresses of the sets the new
			// table has; the variants' sets differ
			if a, ok := learn[rs]; ok {
				if err := b.ServiceAddresses(ctx, base.Profiles[0].ID, rs.Profiles[0].Services[0].Name, []netip.Addr{a}, time.Hour); err != nil {
					return err
				}
			}
			time.Sleep(100 * time.Millisecond) // the replace's own work done
			return nil
		}
	}
	rates, err := compare(l, h, rounds, sample, []func() error{apply(base), apply(elsewhere), apply(counted)})
	if err != nil {
		return "", err
	}
	if total == 0 {
		return "", fmt.Errorf("the counted variant counted nothing")
	}
	b.Remove(ctx)
	var out strings.Builder
	out.WriteString("| the child's profile (half of 1,000 devices) | rate / without service limits (median) | quartiles |\n|---|---:|---:|\n")
	for i, name := range []string{"counts a service; the stream goes elsewhere", "counts a service; the stream is that service (every packet counted)"} {
		q1, q3 := quartiles(rates[i+1], rates[0])
		fmt.Fprintf(&out, "| %s | %.3f | %.2f–%.2f |\n", name, ratio(rates[i+1], rates[0]), q1, q3)
	}
	return out.String(), nil
}

// servicesAlone runs serviceCost in a lab of its own and prints its table.
func servicesAlone(rounds int, sample time.Duration) error {
	ctx := context.Background()
	l, fd, h, done, err := routerLab(ctx, "curfew-svc")
	if err != nil {
		return err
	}
	defer done()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := l.Serve(sctx); err != nil {
		return err
	}
	child, _ := net.ParseMAC(l.Child.MAC)
	table, err := serviceCost(ctx, l, h, nft.New(nft.Options{NetNSFd: int(fd), Netlink: h}), child, rounds, sample)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(os.Stdout, table)
	return err
}
