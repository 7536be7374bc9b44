// Addresses the DNS filter learns at run time — an allowlist profile's
// allowed names, a profile's limited services — added to their sets for
// the answers' TTL, and put back after a replace.

package nft

import (
	"context"
	"net/netip"
	"time"

	"github.com/google/nftables"

	"curfew/pkg/firewall"
)

// learnedSets names a pair of dynamic sets, IPv4 and IPv6.
type learnedSets [2]string

func (l learnedSets) of(a netip.Addr) string {
	if a.Is4() {
		return l[0]
	}
	return l[1]
}

// AllowAddresses lets an allowlist profile reach addrs for ttl (plus a
// grace period: clients keep using an address a little past its TTL). The
// DNS filter calls it with what allowed names resolved to.
func (b *Backend) AllowAddresses(ctx context.Context, profile string, addrs []netip.Addr, ttl time.Duration) error {
	return b.learn(learnedSets{"allow4_" + profile, "allow6_" + profile}, addrs, ttl+allowGrace)
}

// ServiceAddresses implements firewall.ServiceCounter: what the
// profile's devices send to addrs is counted for the service (or
// rejected once its allowance is used up) for ttl plus the same grace.
func (b *Backend) ServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr, ttl time.Duration) error {
	return b.learn(learnedSets{serviceSet(4, profile, service), serviceSet(6, profile, service)}, addrs, ttl+allowGrace)
}

// ForgetServiceAddresses implements firewall.ServiceCounter: the
// addresses it had learned leave the service's sets.
func (b *Backend) ForgetServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	sets := learnedSets{serviceSet(4, profile, service), serviceSet(6, profile, service)}
	have := b.learned[sets]
	if b.applied == nil || len(have) == 0 {
		return nil
	}
	c, err := b.conn()
	if err != nil {
		return err
	}
	now, n := time.Now(), 0
	for _, a := range addrs {
		exp, ok := have[a]
		if !ok {
			continue
		}
		delete(have, a)
		set := b.applied.set(sets.of(a))
		// one about to expire may be gone from the kernel already: a
		// delete of it would fail the batch, and it ends on its own
		if set == nil || !exp.After(now.Add(2*time.Second)) {
			continue
		}
		if err := c.SetDeleteElements(set.set, []nftables.SetElement{{Key: a.AsSlice()}}); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}

var _ firewall.ServiceCounter = (*Backend)(nil)

// learn adds addrs to the sets for ttl. The additions are remembered, so
// that a full table replace puts the live ones back. Sets the table does
// not have (a profile without the mode or the service now) are skipped.
func (b *Backend) learn(sets learnedSets, addrs []netip.Addr, ttl time.Duration) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	if b.applied == nil {
		return nil
	}
	now := time.Now()
	if b.learned == nil {
		b.learned = map[learnedSets]map[netip.Addr]time.Time{}
	}
	have := b.learned[sets]
	if have == nil {
		have = map[netip.Addr]time.Time{}
		b.learned[sets] = have
	}
	if len(have) >= serviceSetMax {
		for a, exp := range have {
			if !exp.After(now) {
				delete(have, a) // the kernel expired it too
			}
		}
	}
	c, err := b.conn()
	if err != nil {
		return err
	}
	n := 0
	for _, a := range addrs {
		set := b.applied.set(sets.of(a))
		if set == nil {
			continue
		}
		exp, ok := have[a]
		if !ok && len(have) >= serviceSetMax {
			continue // as many live addresses as a set may hold
		}
		el := nftables.SetElement{Key: a.AsSlice(), Timeout: ttl}
		if ok && exp.After(now.Add(2*time.Second)) {
			// Still in the kernel: delete and add again to renew its timeout.
			if err := c.SetDeleteElements(set.set, []nftables.SetElement{{Key: a.AsSlice()}}); err != nil {
				return err
			}
		}
		if err := c.SetAddElements(set.set, []nftables.SetElement{el}); err != nil {
			return err
		}
		have[a] = now.Add(ttl)
		n++
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}

// allowGrace extends a learned address's life past its DNS TTL.
const allowGrace = 10 * time.Minute

// restoreLearned re-adds live learned addresses after a replace, and
// forgets expired ones.
func (b *Backend) restoreLearned(c *nftables.Conn, d *desired) {
	now := time.Now()
	for sets, addrs := range b.learned {
		for a, exp := range addrs {
			set := d.set(sets.of(a))
			if set == nil || !exp.After(now.Add(time.Second)) {
				delete(addrs, a)
				continue
			}
			c.SetAddElements(set.set, []nftables.SetElement{{Key: a.AsSlice(), Timeout: exp.Sub(now)}})
		}
		if len(addrs) == 0 {
			delete(b.learned, sets)
		}
	}
}

// ServiceCounters implements firewall.ServiceCounter: the bytes each
// profile's devices sent to each counted service's addresses since the
// table was last replaced.
func (b *Backend) ServiceCounters(ctx context.Context) (_ map[firewall.ServiceKey]uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	out := map[firewall.ServiceKey]uint64{}
	if b.applied == nil || len(b.applied.services) == 0 {
		return out, nil
	}
	c, err := b.conn()
	if err != nil {
		return nil, err
	}
	objs, err := c.GetObjects(b.applied.table)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			if k, ok := b.applied.services[co.Name]; ok {
				out[k] += co.Bytes
			}
		}
	}
	return out, nil
}
