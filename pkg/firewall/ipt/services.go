// Time per service on the iptables backend: each profile's limited
// services get an ipset of the addresses the DNS filter learned for their
// names (hash:ip, each address with the answer's TTL), and the profile's
// chain — which every packet of its devices passes, established or not —
// first counts what goes to them (a rule without a target, whose counter
// `iptables -S -v` reads, as it does screen time), or rejects it once the
// allowance is used up.

package ipt

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// learnedSet is a service's ipset of one family.
type learnedSet struct {
	fam int
	key firewall.ServiceKey
}

// serviceSetMax bounds each service's learned addresses per family, as
// the nftables backend's sets.
const serviceSetMax = 16384

// services4or6 renders profile p's service rules of family fam at the
// head of its chain pc, before established flows return: an open
// connection to a used-up service ends at its next packet.
func (r *rendering) services4or6(fam int, pc string, p firewall.Profile) {
	for _, svc := range p.Services {
		name := setName(fam, "s", p.ID+"_"+svc.Name)
		r.services[name] = learnedSet{fam: fam, key: firewall.ServiceKey{Profile: p.ID, Service: svc.Name}}
		if svc.UsedUp {
			r.add(fam, "filter", pc, "-m", "set", "--match-set", name, "dst", "-j", "CURFEW_REJECT")
			continue
		}
		r.add(fam, "filter", pc, "-m", "set", "--match-set", name, "dst")
	}
}

// applyServiceSets creates the services' ipsets the kernel lacks and
// destroys those no longer rendered (inside Run). A set that stays keeps
// its addresses: they are the DNS filter's, not the ruleset's.
func (b *Backend) applyServiceSets(want map[string]learnedSet) error {
	for name, ls := range want {
		if _, ok := b.services[name]; ok {
			continue
		}
		if _, err := netlink.IpsetList(name); err == nil {
			continue // left by an earlier run: its addresses are still good
		}
		fam := uint8(unix.AF_INET)
		if ls.fam == 6 {
			fam = unix.AF_INET6
		}
		timeout := uint32(600)
		if err := netlink.IpsetCreate(name, "hash:ip", netlink.IpsetCreateOptions{Family: fam, MaxElements: serviceSetMax, Timeout: &timeout}); err != nil {
			return fmt.Errorf("ipset %s: %w", name, err)
		}
	}
	for name := range b.services {
		if _, ok := want[name]; !ok {
			// as applySets: the rules that name it go in this Apply
			defer netlink.IpsetDestroy(name)
		}
	}
	b.services = want
	return nil
}

// ServiceAddresses implements firewall.ServiceCounter.
func (b *Backend) ServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	secs := uint32(min(ttl/time.Second, 7*24*3600))
	return b.opts.Run(func() error {
		for _, a := range addrs {
			fam := 6
			if a.Is4() {
				fam = 4
			}
			name := setName(fam, "s", profile+"_"+service)
			if _, ok := b.services[name]; !ok {
				continue
			}
			err := netlink.IpsetAdd(name, &netlink.IPSetEntry{IP: a.AsSlice(), Timeout: &secs, Replace: true})
			if err != nil {
				return fmt.Errorf("ipset %s %s: %w", name, a, err)
			}
		}
		return nil
	})
}

// ForgetServiceAddresses implements firewall.ServiceCounter.
func (b *Backend) ForgetServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.Run(func() error {
		for _, a := range addrs {
			fam := 6
			if a.Is4() {
				fam = 4
			}
			name := setName(fam, "s", profile+"_"+service)
			if _, ok := b.services[name]; !ok {
				continue
			}
			// one that expired meanwhile is gone already: nothing to do
			err := netlink.IpsetDel(name, &netlink.IPSetEntry{IP: a.AsSlice()})
			if err != nil && !errors.Is(err, nl.IPSetError(nl.IPSET_ERR_EXIST)) {
				return fmt.Errorf("ipset %s %s: %w", name, a, err)
			}
		}
		return nil
	})
}

// ServiceCounters implements firewall.ServiceCounter: what each profile's
// counting rules counted, both families together. A rewrite of the
// profile's chain starts them at zero (the daemon takes a count that fell
// as a new start).
func (b *Backend) ServiceCounters(ctx context.Context) (map[firewall.ServiceKey]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[firewall.ServiceKey]uint64{}
	if len(b.services) == 0 {
		return out, nil
	}
	err := b.eachRule(ctx, func(r string) {
		if name, n, ok := serviceBytes(r); ok {
			if ls, ok := b.services[name]; ok {
				out[ls.key] += n
			}
		}
	})
	return out, err
}

// serviceBytes reads a counting rule as `iptables -S -v` prints it:
// "-A CURFEW_P_kid -m set --match-set curfew_s4_kid_youtube dst -c PACKETS BYTES",
// a rule without a target.
func serviceBytes(rule string) (string, uint64, bool) {
	f := strings.Fields(rule)
	if len(f) < 4 || f[0] != "-A" || !strings.HasPrefix(f[1], profileChain) || strings.Contains(rule, " -j ") || strings.Contains(rule, " -g ") {
		return "", 0, false
	}
	var name string
	var n uint64
	var counted bool
	for i := 2; i+1 < len(f); i++ {
		switch f[i] {
		case "--match-set":
			name = f[i+1]
		case "-c":
			if i+2 < len(f) {
				v, err := strconv.ParseUint(f[i+2], 10, 64)
				n, counted = v, err == nil
			}
		}
	}
	if name == "" || !counted {
		return "", 0, false
	}
	return name, n, true
}
