// Screen time on the iptables backend: what each configured device sent
// outside its offline windows, counted by the last rule of its chain (the
// jump to its profile's chain, which a packet inside a window never
// reaches), read for every device at once — one `iptables -S -v` per
// family a minute, not one per device — and carried across a rewrite of
// the chain, which starts its counters at zero.

package ipt

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// Counters implements firewall.Counters: the bytes each configured device
// has sent while online, both families together, by MAC. A count never
// falls while the daemon runs.
func (b *Backend) Counters(ctx context.Context) (map[string]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]uint64, len(b.carry))
	for mac, n := range b.carry {
		out[mac] = n
	}
	err := b.eachRule(ctx, func(r string) {
		if mac, n, ok := onlineBytes(r); ok {
			out[mac] += n
		}
	})
	return out, err
}

// eachRule calls f with every rule of the filter table, both families,
// as `iptables -S -v` prints them: one listing per family.
func (b *Backend) eachRule(ctx context.Context, f func(rule string)) error {
	return b.opts.Run(func() error {
		for _, fam := range []int{4, 6} {
			rules, err := b.listFilter(ctx, fam)
			if err != nil {
				return err
			}
			for _, r := range rules {
				f(r)
			}
		}
		return nil
	})
}

// listFilter returns every rule of the filter table with its counters, as
// `iptables -S -v` prints them (inside Run).
func (b *Backend) listFilter(ctx context.Context, fam int) ([]string, error) {
	name := map[int]string{4: "iptables", 6: "ip6tables"}[fam]
	if b.opts.Legacy {
		name = "/usr/sbin/" + name + "-legacy"
	}
	out, err := exec.CommandContext(ctx, name, "-w", "5", "-t", "filter", "-S", "-v").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -S -v: %w", name, err)
	}
	return strings.Split(string(out), "\n"), nil
}

// carryChains adds what the device chains among chains have counted to
// the carry, before Apply clears them (inside Run; ts are the tables).
func (b *Backend) carryChains(ctx context.Context, fam int, chains map[string]bool) {
	rules, err := b.listFilter(ctx, fam)
	if err != nil {
		b.log.Warn("iptables: screen-time counters not read before rewriting device chains", "err", err)
		return
	}
	if b.carry == nil {
		b.carry = map[string]uint64{}
	}
	for _, r := range rules {
		if f := strings.Fields(r); len(f) > 1 && chains[f[1]] {
			if mac, n, ok := onlineBytes(r); ok {
				b.carry[mac] += n
			}
		}
	}
}

// onlineBytes reads a device chain's last rule, the jump to its profile,
// as `iptables -S -v` prints it:
// "-A CURFEW_D_020000000001 -c PACKETS BYTES -j CURFEW_P_kid".
func onlineBytes(rule string) (string, uint64, bool) {
	f := strings.Fields(rule)
	if len(f) < 7 || f[0] != "-A" || !strings.HasPrefix(f[1], deviceChain) ||
		f[len(f)-2] != "-j" || !strings.HasPrefix(f[len(f)-1], profileChain) {
		return "", 0, false
	}
	id := strings.TrimPrefix(f[1], deviceChain)
	if len(id) != 12 {
		return "", 0, false
	}
	mac, err := net.ParseMAC(id[0:2] + ":" + id[2:4] + ":" + id[4:6] + ":" + id[6:8] + ":" + id[8:10] + ":" + id[10:12])
	if err != nil {
		return "", 0, false
	}
	for i := 2; i+2 < len(f); i++ {
		if f[i] == "-c" {
			n, err := strconv.ParseUint(f[i+2], 10, 64)
			return mac.String(), n, err == nil
		}
	}
	return "", 0, false
}
