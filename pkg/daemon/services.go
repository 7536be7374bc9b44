package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"curfew/pkg/firewall"
	"curfew/pkg/notify"
	"curfew/pkg/plan"
)

// Time per service (service_limit): the DNS filter hands the addresses a
// profile's answers gave for a limited service's names to the kernel,
// which counts what the profile's devices send to them; a minute in which
// that passes the active threshold is a minute of the service. Used up,
// the plan blocks the service's names for the profile, the kernel rejects
// its addresses, and the daemon cuts the flows to them.

// maxLearned bounds the addresses kept per profile and service, as the
// kernel's set does.
const maxLearned = 16384

// serviceGrace is how long past its DNS TTL a learned address stays
// counted: an app streams from one address long after its answer expired
// (a one-hour video over one connection).
const serviceGrace = time.Hour

// learnService is the DNS filter's Learned: it keeps the addresses (for a
// cut when the allowance runs out) and hands them to the kernel. With
// service "" they are the profile's other sites' addresses: kept too, and
// taken out of its services' (a front end that serves a limited service
// and other sites, such as YouTube's, which are Google's, is then neither
// counted nor refused as the service's), and never added to them later
// while they live.
func (d *Daemon) learnService(ctx context.Context, profile, service string, addrs []netip.Addr, ttl time.Duration) {
	ttl += serviceGrace
	now := d.opts.Clock.Now()
	d.mu.Lock()
	if d.learned == nil {
		d.learned = map[firewall.ServiceKey]map[netip.Addr]time.Time{}
	}
	others := d.learned[firewall.ServiceKey{Profile: profile}]
	var forget map[string][]netip.Addr
	if service == "" {
		for k, have := range d.learned {
			if k.Profile != profile || k.Service == "" {
				continue
			}
			for _, a := range addrs {
				if _, ok := have[a]; ok {
					delete(have, a)
					if forget == nil {
						forget = map[string][]netip.Addr{}
					}
					forget[k.Service] = append(forget[k.Service], a)
				}
			}
		}
	} else {
		own := addrs[:0:0]
		for _, a := range addrs {
			if exp, ok := others[a]; !ok || !exp.After(now) {
				own = append(own, a)
			}
		}
		addrs = own
	}
	full := keep(d.learned, firewall.ServiceKey{Profile: profile, Service: service}, addrs, now, now.Add(ttl))
	d.mu.Unlock()
	if full && service != "" {
		d.log.Warn("service: too many addresses to count, the rest are not counted", "profile", profile, "service", service, "max", maxLearned)
	}
	sc, ok := d.backend().(firewall.ServiceCounter)
	if !ok {
		return
	}
	for svc, shared := range forget {
		if err := sc.ForgetServiceAddresses(ctx, profile, svc, shared); err != nil {
			d.log.Warn("service: kernel set not updated", "profile", profile, "service", svc, "err", err)
		}
	}
	if service == "" || len(addrs) == 0 {
		return
	}
	if err := sc.ServiceAddresses(ctx, profile, service, addrs, ttl); err != nil {
		d.log.Warn("service: kernel set not updated", "profile", profile, "service", service, "err", err)
	}
}

// keep adds addrs to learned[k] until exp, at most maxLearned live ones
// (d.mu held); it reports whether some did not fit.
func keep(learned map[firewall.ServiceKey]map[netip.Addr]time.Time, k firewall.ServiceKey, addrs []netip.Addr, now, exp time.Time) bool {
	have := learned[k]
	if have == nil {
		have = map[netip.Addr]time.Time{}
		learned[k] = have
	}
	if len(have)+len(addrs) > maxLearned {
		for a, e := range have {
			if !e.After(now) {
				delete(have, a)
			}
		}
	}
	full := false
	for _, a := range addrs {
		if _, ok := have[a]; !ok && len(have) >= maxLearned {
			full = true
			continue
		}
		have[a] = exp
	}
	return full
}

// learnedAddrs are the live addresses of a profile's service, as prefixes
// for a cut.
func (d *Daemon) learnedAddrs(k firewall.ServiceKey, now time.Time) []netip.Prefix {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []netip.Prefix
	for a, exp := range d.learned[k] {
		if exp.After(now) {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// countServices adds a minute to each profile's service whose counter grew
// by more than the threshold since the last reading (d.mu held), and
// reports whether one of them reached its allowance.
func (d *Daemon) countServices(day *usageDay, counts map[firewall.ServiceKey]uint64, p *plan.Plan, threshold uint64) bool {
	exhausted := false
	for k, cur := range counts {
		prev, had := d.lastService[k]
		d.lastService[k] = cur
		delta := cur
		if had && cur >= prev {
			delta = cur - prev
		}
		if !had || delta <= threshold {
			continue
		}
		if day.Services == nil {
			day.Services = map[string]map[string]int{}
		}
		if day.Services[k.Profile] == nil {
			day.Services[k.Profile] = map[string]int{}
		}
		day.Services[k.Profile][k.Service]++
		if r := p.Rules(k.Profile); r != nil {
			for _, st := range r.Services {
				if st.Service == k.Service && time.Duration(day.Services[k.Profile][k.Service])*time.Minute >= time.Duration(st.Limit) {
					exhausted = true
				}
			}
		}
	}
	return exhausted
}

// readServices reads the kernel's service counters, if the backend has
// them and some profile counts a service.
func (d *Daemon) readServices(ctx context.Context, p *plan.Plan) map[firewall.ServiceKey]uint64 {
	sc, ok := d.opts.Backend.(firewall.ServiceCounter)
	if !ok || p == nil {
		return nil
	}
	counting := false
	for _, r := range p.Profiles {
		counting = counting || len(r.Services) > 0
	}
	if !counting {
		return nil
	}
	counts, err := sc.ServiceCounters(ctx)
	if err != nil {
		d.log.Warn("service counters not read", "err", err)
		return nil
	}
	return counts
}

// cutUsedUp ends the flows of a profile's devices to the addresses of a
// service whose allowance ran out since the previous plan (the kernel
// rejects their next packets already; this also stops flows that a flow
// offload keeps out of its rules' sight), and tells the parents once a
// day.
func (d *Daemon) cutUsedUp(ctx context.Context, prev, p *plan.Plan, loc *time.Location) {
	for _, r := range p.Profiles {
		for _, st := range r.Services {
			if !st.UsedUp() || usedUpIn(prev, r.ID, st.Service) {
				continue
			}
			var macs []net.HardwareAddr
			var first *plan.Device
			for i, dev := range p.Devices {
				if dev.Managed && dev.Profile == r.ID {
					if mac, err := net.ParseMAC(dev.MAC); err == nil {
						macs = append(macs, mac)
						first = cmp.Or(first, &p.Devices[i])
					}
				}
			}
			if first != nil {
				d.noteServiceUsed(*first, st, p.At, loc)
			}
			dests := d.learnedAddrs(firewall.ServiceKey{Profile: r.ID, Service: st.Service}, p.At)
			if len(macs) == 0 || len(dests) == 0 {
				continue
			}
			n, err := d.opts.Backend.Cutoff(ctx, macs, firewall.Flows{Dests: dests})
			if err != nil {
				d.log.Warn("cut flows to a used-up service", "profile", r.ID, "service", st.Service, "err", err)
			} else if n.Flows > 0 {
				d.log.Info(describeCut(n, "to "+st.Title+", its time used up"), "profile", r.ID)
			}
		}
	}
}

// usedUpIn reports whether the plan had the profile's service used up.
func usedUpIn(p *plan.Plan, profile, service string) bool {
	if p == nil {
		return false
	}
	if r := p.Rules(profile); r != nil {
		for _, st := range r.Services {
			if st.Service == service {
				return st.UsedUp()
			}
		}
	}
	return false
}

// noteServiceUsed tells that a profile's time on a service ran out, once
// per profile, service and day (a budget_used event).
func (d *Daemon) noteServiceUsed(dev plan.Device, st plan.ServiceTime, at time.Time, loc *time.Location) {
	d.mu.Lock()
	first := d.firstTime(dev.Profile + " " + st.Service + " " + at.In(loc).Format("2006-01-02"))
	d.mu.Unlock()
	if !first {
		return
	}
	d.notify(notify.Event{Event: notify.BudgetUsed, Device: cmp.Or(dev.Name, dev.MAC), MAC: dev.MAC, Profile: dev.Profile, Time: at, Service: st.Service,
		Text: fmt.Sprintf("profile %s used up today's %s of %s; it is blocked until tomorrow, the rest of the internet is not (curfew grant %s 15m --service %s gives more)",
			dev.Profile, plan.Short(time.Duration(st.Limit)), st.Title, dev.Profile, st.Service)})
}
