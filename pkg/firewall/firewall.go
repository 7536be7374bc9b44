// Package firewall is the contract between the policy core and the kernel
// backends: a Ruleset is the complete desired kernel state, rendered from a
// Plan, and a Backend makes the kernel match it.
//
// Backends do no bookkeeping of their own beyond "what did I apply last":
// the daemon renders the whole desired state every time and the backend
// applies it in one transaction (the kube-proxy nftables model), so there is
// no Add/Del state to drift.
package firewall

import (
	"bytes"
	"context"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"sort"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/plan"
)

// Interval is an absolute offline span [From, To).
type Interval struct {
	From, To time.Time
}

// Ruleset is the desired kernel state.
type Ruleset struct {
	// LAN lists the interfaces whose clients are managed.
	LAN []string
	// Profiles hold per-profile destination blocks, sorted by ID.
	Profiles []Profile
	// Devices are the MACs with a profile, sorted by MAC.
	Devices []Device
	// Unknown, when set, applies to every MAC not in Devices.
	Unknown *Unknown
	// DNSPort is the router port that managed devices' DNS is redirected to
	// when their profile has no DNS filter port.
	DNSPort uint16
	// Bypass lists public DNS-over-HTTPS resolvers' addresses, rejected
	// for managed devices; empty turns that off.
	Bypass []netip.Prefix
	// OfflineDNSPort is where DNS of a managed device inside one of its
	// offline intervals goes, whatever its profile (the DNS filter's
	// listener for devices offline now); zero: no such redirect, their
	// DNS goes to their profile's port as at other times.
	OfflineDNSPort uint16
	// PagePort is the router port of the bedtime page: plain HTTP (TCP
	// 80) of a managed device that is offline now is redirected there.
	// Zero turns that off.
	PagePort uint16
	// FlowLimit is how many new connections a second each LAN device may
	// open, FlowBurst how many at once; a zero FlowLimit turns the limit
	// off.
	FlowLimit, FlowBurst int
}

// Profile is a profile's kernel-level rules.
type Profile struct {
	ID   string
	Name string
	// Block lists blocked prefixes (IPv4 and IPv6).
	Block []netip.Prefix
	// DNSPort is the DNS filter's port for this profile; 0 means the
	// Ruleset's DNSPort.
	DNSPort uint16
	// Open marks a profile without rules (a parent's): no DNS-over-TLS or
	// DoH rejection for it.
	Open bool
	// Allowlist limits the profile to Allow and to the addresses the DNS
	// filter adds at run time (AllowAddresses).
	Allowlist bool
	Allow     []netip.Prefix
	// Services are the services with an allowance today: what the
	// profile's devices send to their addresses (those the DNS filter
	// hands the backend, ServiceCounter) is counted, or rejected once the
	// allowance is used up.
	Services []Service
}

// Service is one of a profile's services with an allowance today.
type Service struct {
	Name string
	// UsedUp rejects the service's addresses for the profile instead of
	// counting what goes to them.
	UsedUp bool
}

// Device maps a MAC to its profile and its offline intervals.
type Device struct {
	MAC     net.HardwareAddr
	Name    string
	Profile string
	Offline []Interval
	// Slow are the device's wind-down intervals (before its offline
	// windows), in which what it downloads is limited to SlowRate bits
	// per second.
	Slow     []Interval
	SlowRate uint64
}

// MarkMask is the part of the conntrack mark that curfew uses: its upper
// 16 bits carry, from a flow's first packet, which device opened it, so
// that the flow's downloads can be slowed while that device winds down.
// Other users of the mark (mwan3's 0x3f00, fw4's rules) keep the lower
// bits.
const MarkMask = 0xffff0000

// Unknown is the treatment of MACs the config does not list.
type Unknown struct {
	Profile string
	Offline []Interval
}

// Backend programs a Ruleset into the kernel.
type Backend interface {
	// Name is "nftables" or "iptables", for status output.
	Name() string
	// Apply makes the kernel match rs. Applying the same ruleset twice
	// changes nothing; a change to one device touches only its elements.
	Apply(ctx context.Context, rs *Ruleset) error
	// Remove deletes everything the backend created.
	Remove(ctx context.Context) error
	// Cutoff deletes the conntrack entries of the devices with these MACs
	// (all their IPv4 and IPv6 addresses) that sel selects, so that open
	// connections and offloaded flows stop at once. It says how many were
	// deleted.
	Cutoff(ctx context.Context, macs []net.HardwareAddr, sel Flows) (Cut, error)
}

// The optional capabilities a backend may have beyond Backend. The
// daemon asks for each by these names; each backend asserts at compile
// time the ones it implements.

// Resyncer is a backend that can tell when someone else changed its
// kernel state and restore it (nftables: the table compared with what was
// applied). Resync reports whether it had to.
type Resyncer interface {
	Resync(ctx context.Context) (bool, error)
}

// Watcher is a backend that hears of changes to the kernel's rules as
// they happen (nftables: the netlink monitor) and calls onChange; it runs
// until ctx ends.
type Watcher interface {
	Watch(ctx context.Context, onChange func()) error
}

// Healer is a backend without a change monitor whose entry points others
// remove (iptables: fw3 flushes the built-in chains on every reload); the
// daemon calls Heal now and then, and it reports whether it had to.
type Healer interface {
	Heal(ctx context.Context) (bool, error)
}

// Counters is a backend that counts each device's traffic in the kernel
// (nftables: a named counter per device), by MAC, for screen time.
type Counters interface {
	Counters(ctx context.Context) (map[string]uint64, error)
}

// FlowCounter is a backend that counts, by MAC, the new connections the
// kernel dropped because the device opened them faster than flow_limit.
type FlowCounter interface {
	FlowDrops(ctx context.Context) (map[string]uint64, error)
}

// Allower is a backend with allowlist mode: the DNS filter hands it the
// addresses an allowed name resolved to, which the profile may then reach
// for ttl.
type Allower interface {
	AllowAddresses(ctx context.Context, profile string, addrs []netip.Addr, ttl time.Duration) error
}

// ServiceCounter is a backend that counts, per profile and service, what
// the profile's devices send to the service's addresses (Profile.Services):
// the DNS filter hands it the addresses that the profile's answers gave
// for the service's names, which it holds for ttl. A profile's traffic to
// an address two services share counts for both.
type ServiceCounter interface {
	ServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr, ttl time.Duration) error
	// ForgetServiceAddresses takes addresses out of the service's: the
	// profile's other sites resolve to them too.
	ForgetServiceAddresses(ctx context.Context, profile, service string, addrs []netip.Addr) error
	ServiceCounters(ctx context.Context) (map[ServiceKey]uint64, error)
}

// ServiceKey names a profile's service.
type ServiceKey struct{ Profile, Service string }

// Cut counts what a Cutoff deleted. Flows are conntrack entries, most of
// them finished or idle (a TCP connection stays in the table for minutes
// after it closed); Open are the TCP connections that were established,
// what a parent calls the device's open connections.
type Cut struct {
	Flows, Open int
}

// Flows selects a device's flows for Cutoff; the zero value selects all.
type Flows struct {
	// Dests limits the cut to flows towards these prefixes.
	Dests []netip.Prefix
	// DNS limits the cut to flows to port 53 (UDP and TCP). The kernel's
	// DNS redirect acts on a flow's first packet only: a DNS flow that was
	// open before the redirect applied to its device (curfew starting, a
	// new device, a device moved to another profile) keeps going to its
	// old resolver until its conntrack entry is deleted.
	DNS bool
	// DNSPort, with DNS, spares the flows already redirected to this port
	// (their answers come from it): a query sent after the redirect went
	// in, but before the cut, would otherwise lose its conntrack entry in
	// flight, and its answer would come back un-NATed and be ignored.
	DNSPort uint16
}

// PrefixCache keeps each profile's blocked prefixes as Render last made
// them: while the profile's list is the same (the same backing array, as
// the plan shares the config's), a pause reuses them instead of walking
// 100,000 entries, and the backend can tell an unchanged list by identity.
type PrefixCache struct {
	m map[string]cachedPrefixes
}

type cachedPrefixes struct {
	first    *config.Destination
	n        int
	prefixes []netip.Prefix
}

// prefixes returns the prefixes (not the domains) of dests, from the cache
// when dests is the list it saw last for profile.
func (pc *PrefixCache) prefixes(profile string, dests []config.Destination) []netip.Prefix {
	if pc != nil && len(dests) > 0 {
		if c, ok := pc.m[profile]; ok && c.first == &dests[0] && c.n == len(dests) {
			return c.prefixes
		}
	}
	n := 0
	for _, d := range dests {
		if d.Domain == "" {
			n++
		}
	}
	// one allocation: growing a slice of 100,000 prefixes by appends
	// cost a pause 40 ms (measured)
	out := make([]netip.Prefix, 0, n)
	for _, d := range dests {
		if d.Domain == "" {
			out = append(out, d.Prefix)
		}
	}
	if pc != nil && len(dests) > 0 {
		if pc.m == nil {
			pc.m = map[string]cachedPrefixes{}
		}
		pc.m[profile] = cachedPrefixes{first: &dests[0], n: len(dests), prefixes: out}
	}
	return out
}

// Render turns a plan into the desired kernel state; cache may be nil.
func Render(p *plan.Plan, c *config.Config, dnsPort uint16, cache *PrefixCache) *Ruleset {
	rs := &Ruleset{LAN: append([]string(nil), c.LAN...), DNSPort: dnsPort}
	if !c.Enabled {
		return rs
	}
	if c.Page {
		rs.PagePort = c.PagePort
	}
	if c.DNSFilter {
		rs.OfflineDNSPort = c.OfflineDNSPort()
	}
	rs.FlowLimit, rs.FlowBurst = c.FlowLimit, c.FlowLimit*config.FlowBurst
	blocks := map[string][]config.Destination{}
	add := func(d *plan.Device) {
		if _, ok := blocks[d.Profile]; !ok {
			blocks[d.Profile] = nil
			if r := p.Rules(d.Profile); r != nil {
				blocks[d.Profile] = r.BlockDest
			}
		}
	}
	rs.Devices = make([]Device, 0, len(p.Devices))
	for i := range p.Devices {
		d := &p.Devices[i]
		if !d.Managed {
			continue
		}
		add(d)
		mac, err := net.ParseMAC(d.MAC)
		if err != nil {
			continue
		}
		dev := Device{MAC: mac, Name: d.Name, Profile: d.Profile, Offline: intervals(d.Offline)}
		if len(d.WindDown) > 0 {
			dev.Slow = intervals(d.WindDown)
			if cp := c.Profile(d.Profile); cp != nil {
				dev.SlowRate = cp.WindDownRate
			}
		}
		rs.Devices = append(rs.Devices, dev)
	}
	if u := p.UnknownDevices; u != nil {
		add(u)
		rs.Unknown = &Unknown{Profile: u.Profile, Offline: intervals(u.Offline)}
	}
	index := map[string]int{}
	for i, cp := range c.Profiles {
		index[cp.ID] = i
	}
	if c.BypassPrevention {
		rs.Bypass = c.DoHAddresses
		if rs.Bypass == nil {
			rs.Bypass = dnsfilter.DoHPrefixes()
		}
	}
	for id, dests := range blocks {
		pr := Profile{ID: id}
		if cp := c.Profile(id); cp != nil {
			pr.Name = cp.Name
			pr.Open = !c.Restricted(cp)
			pr.Allowlist = cp.Allowlist
			for _, a := range cp.Allow {
				if a.Domain == "" {
					pr.Allow = append(pr.Allow, a.Prefix)
				}
			}
			if c.DNSFilter {
				pr.DNSPort = c.DNSPort + uint16(index[id])
			}
		}
		pr.Block = cache.prefixes(id, dests)
		if r := p.Rules(id); r != nil {
			for _, st := range r.Services {
				pr.Services = append(pr.Services, Service{Name: st.Service, UsedUp: st.UsedUp()})
			}
		}
		rs.Profiles = append(rs.Profiles, pr)
	}
	sort.Slice(rs.Profiles, func(i, j int) bool { return rs.Profiles[i].ID < rs.Profiles[j].ID })
	// By MAC: the same order as their text, without making it at each
	// of 60,000 comparisons (5,000 devices).
	slices.SortFunc(rs.Devices, func(a, b Device) int { return bytes.Compare(a.MAC, b.MAC) })
	return rs
}

// FilterPorts lists the DNS filter's ports in rs (not the router's own
// resolver port 53). Backends accept a query on one of them only when their
// own redirect sent it there from a device of that profile: a child who
// sends to another profile's port directly must not be answered by that
// profile's rules.
func FilterPorts(rs *Ruleset) []uint16 {
	var out []uint16
	for _, p := range rs.Profiles {
		if p.DNSPort != 0 && p.DNSPort != 53 {
			out = append(out, p.DNSPort)
		}
	}
	if rs.OfflineDNSPort != 0 {
		out = append(out, rs.OfflineDNSPort)
	}
	return out
}

func intervals(spans []plan.Span) []Interval {
	out := make([]Interval, 0, len(spans))
	for _, s := range spans {
		out = append(out, Interval{From: s.From, To: s.To})
	}
	return out
}

// Marks gives each device with wind-down intervals its conntrack mark
// (see MarkMask), by MAC: a hash of the MAC in the upper 16 bits, the
// next free value on a collision (taken in MAC order). A device keeps its
// mark while others come and go, so that flows it opened before a change
// of config still name it.
func Marks(devs []Device) map[string]uint32 {
	out := map[string]uint32{}
	taken := map[uint32]bool{}
	for _, d := range devs {
		if len(d.Slow) == 0 || len(taken) == 0xffff {
			continue // beyond 65,535 devices winding down, the rest are not slowed
		}
		h := fnv.New32a()
		h.Write(d.MAC)
		id := h.Sum32() & 0xffff
		for id == 0 || taken[id] {
			id = (id + 1) & 0xffff
		}
		taken[id] = true
		out[string(d.MAC)] = id << 16
	}
	return out
}
