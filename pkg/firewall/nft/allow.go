// Allowlist mode at run time: the addresses an allowed name resolved to,
// added for their TTL, and put back after a replace.

package nft

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
)

// AllowAddresses lets an allowlist profile reach addrs for ttl (plus a
// grace period: clients keep using an address a little past its TTL). The
// DNS filter calls it with what allowed names resolved to. The additions are
// remembered, so that a full table replace puts the live ones back.
func (b *Backend) AllowAddresses(ctx context.Context, profile string, addrs []netip.Addr, ttl time.Duration) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.drop(err) }()
	if b.applied == nil {
		return nil
	}
	ttl += allowGrace
	now := time.Now()
	if b.allowed == nil {
		b.allowed = map[string]map[netip.Addr]time.Time{}
	}
	if b.allowed[profile] == nil {
		b.allowed[profile] = map[netip.Addr]time.Time{}
	}
	c, err := b.conn()
	if err != nil {
		return err
	}
	n := 0
	for _, a := range addrs {
		set := b.applied.set(fmt.Sprintf("allow%d_%s", map[bool]int{true: 4, false: 6}[a.Is4()], profile))
		if set == nil {
			continue
		}
		el := nftables.SetElement{Key: a.AsSlice(), Timeout: ttl}
		if exp, ok := b.allowed[profile][a]; ok && exp.After(now.Add(2*time.Second)) {
			// Still in the kernel: delete and add again to renew its timeout.
			if err := c.SetDeleteElements(set.set, []nftables.SetElement{{Key: a.AsSlice()}}); err != nil {
				return err
			}
		}
		if err := c.SetAddElements(set.set, []nftables.SetElement{el}); err != nil {
			return err
		}
		b.allowed[profile][a] = now.Add(ttl)
		n++
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}

// allowGrace extends an allowlisted address's life past its DNS TTL.
const allowGrace = 10 * time.Minute

// restoreAllowed re-adds live allowlist addresses after a replace.
func (b *Backend) restoreAllowed(c *nftables.Conn, d *desired) {
	now := time.Now()
	for profile, addrs := range b.allowed {
		for a, exp := range addrs {
			set := d.set(fmt.Sprintf("allow%d_%s", map[bool]int{true: 4, false: 6}[a.Is4()], profile))
			if set == nil || !exp.After(now.Add(time.Second)) {
				delete(addrs, a)
				continue
			}
			c.SetAddElements(set.set, []nftables.SetElement{{Key: a.AsSlice(), Timeout: exp.Sub(now)}})
		}
	}
}
