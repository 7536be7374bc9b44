package daemon

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/plan"
	"curfew/pkg/services"
)

// policyMemo keeps each profile's built block set while its inputs stay
// the same: reconciles run every few seconds at most, sets are rebuilt only
// when a profile's domains, services or block windows change.
type policyMemo struct {
	key     string
	block   *dnsfilter.Set
	sources []string
	allow   *dnsfilter.Set
}

// dnsBindings builds the DNS filter's per-profile policies for the plan.
func (d *Daemon) dnsBindings(cfg *config.Config, p *plan.Plan) []dnsfilter.Binding {
	cat := services.Builtin()
	var out []dnsfilter.Binding
	for i, prof := range cfg.Profiles {
		dev := p.Rules(prof.ID) // only the profiles in use have rules in the plan
		if dev == nil || !cfg.Restricted(prof) {
			continue
		}
		var domains []string
		for _, b := range dev.BlockDest {
			if b.Domain != "" {
				domains = append(domains, b.Domain)
			}
		}
		var allow []string
		for _, a := range prof.Allow {
			if a.Domain != "" {
				allow = append(allow, a.Domain)
			}
		}
		key := strings.Join(domains, ",") + "|" + strings.Join(dev.BlockServices, ",") + "|" + strings.Join(allow, ",")
		m := d.memo[prof.ID]
		if m == nil || m.key != key {
			m = &policyMemo{key: key, sources: []string{"blocked domain (profile " + prof.ID + ")"}}
			var b dnsfilter.Builder
			for _, dom := range domains {
				b.Add(dom, 0)
			}
			for _, svc := range dev.BlockServices {
				s := cat.Get(svc)
				if s == nil {
					continue
				}
				m.sources = append(m.sources, "service "+svc)
				for _, dom := range s.Domains {
					b.Add(dom, uint16(len(m.sources)-1))
				}
			}
			m.block = b.Build()
			var a dnsfilter.Builder
			for _, dom := range allow {
				a.Add(dom, 0)
			}
			m.allow = a.Build()
			d.memo[prof.ID] = m
		}
		var limited map[string]bool
		for _, st := range dev.Services {
			if limited == nil {
				limited = map[string]bool{}
			}
			limited[st.Service] = !st.UsedUp()
		}
		out = append(out, dnsfilter.Binding{
			Profile: prof.ID,
			Port:    cfg.DNSPort + uint16(i),
			Policy: &dnsfilter.Policy{
				Profile:          prof.ID,
				Block:            m.block,
				Sources:          m.sources,
				Lists:            d.opts.Lists.Get(prof.Blocklists),
				SafeSearch:       prof.SafeSearch,
				Allowlist:        prof.Allowlist,
				Allow:            m.allow,
				BypassPrevention: cfg.BypassPrevention,
				Limited:          limited,
			},
		})
	}
	// Devices offline now, whatever their profile: only the names an
	// offline device needs. Its policy has no rules; the port decides.
	out = append(out, dnsfilter.Binding{Profile: dnsfilter.Offline, Port: cfg.OfflineDNSPort(), Policy: &dnsfilter.Policy{}})
	return out
}

// blocklists returns every list the config names, sorted.
func blocklists(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range cfg.Profiles {
		for _, l := range p.Blocklists {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// refreshLists loads the config's block lists now and then every hour
// (each list is fetched again once a day); a change triggers a reconcile.
func (d *Daemon) refreshLists(ctx context.Context, wanted <-chan struct{}) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		d.mu.Lock()
		cfg := d.cfg
		d.mu.Unlock()
		if cfg != nil && d.opts.Lists != nil {
			if d.opts.Lists.Refresh(ctx, blocklists(cfg), time.Now()) {
				d.kick()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wanted:
		case <-tick.C:
		}
	}
}

// identify names the device behind a DNS query's source address, for the
// query log and counters, from the neighbour table (read again, at most
// once a second, when the address is new). An address that is in no
// neighbour entry belongs to no device on the LAN (false). Whether the
// device is offline is not asked here: a child can rebind its address to
// another device's MAC (ARP), and the kernel has decided it already, by
// MAC, in the port it sent the query to (dnsfilter.Offline).
func (d *Daemon) identify(a netip.Addr) (dnsfilter.Device, bool) {
	if dev, ok := d.lookupSeen(a); ok {
		return dev, true
	}
	// A miss (a new address, or a forged one): one query a second reads
	// the table again; the others do not wait for it.
	last, now := d.neighRead.Load(), time.Now().UnixNano()
	if now-last < int64(time.Second) || !d.neighRead.CompareAndSwap(last, now) {
		return dnsfilter.Device{MAC: a.String()}, false
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg != nil {
		d.noteSeen(d.opts.Seen(cfg.LAN), d.opts.Clock.Now())
		if dev, ok := d.lookupSeen(a); ok {
			return dev, true
		}
	}
	return dnsfilter.Device{MAC: a.String()}, false
}

// lookupSeen answers from identities, without the daemon's lock.
func (d *Daemon) lookupSeen(a netip.Addr) (dnsfilter.Device, bool) {
	m := d.identities.Load()
	if m == nil {
		return dnsfilter.Device{}, false
	}
	dev, ok := (*m)[a]
	return dev, ok
}
