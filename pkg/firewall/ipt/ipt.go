// Package ipt is curfew's backend for firmware without nftables (OpenWrt
// 21.02 and older, fw3): iptables and ip6tables through
// github.com/coreos/go-iptables, and kernel ipsets (hash:net) for blocked
// prefixes through vishvananda/netlink.
//
// Chains (both families):
//
//	FORWARD  -i LAN -j CURFEW_FWD                      (inserted first)
//	CURFEW_FWD    -o LAN -j RETURN; -m mac --mac-source M -g CURFEW_D_M …;
//	              unknown devices: their windows, then their profile
//	CURFEW_D_M    -m time --datestart A --datestop B -j CURFEW_REJECT …;
//	              -j CURFEW_P_profile (its counter: screen time, see
//	              counters.go)
//	CURFEW_P_p    established: RETURN; DoT (853): reject; DoH addresses and
//	              blocked prefixes (ipsets): reject
//	mangle PREROUTING -i LAN, a flow's first packet: -j CURFEW_FLOWS (new
//	              connections a second, per configured device, all others
//	              together); -j CURFEW_MARK (a device that winds down:
//	              its id into the conntrack mark)
//	mangle FORWARD -o LAN, a flow with a device's id -j CURFEW_SLOW: inside
//	              its wind-down intervals: CLASSIFY into its shaper class
//	nat PREROUTING -i LAN -j CURFEW_DNS: TCP 80 -j CURFEW_PAGE (a device's
//	              windows: REDIRECT to the bedtime page); port 53 -j
//	              CURFEW_OFFDNS (a device's windows: REDIRECT to the filter's
//	              port for offline devices); -m mac … -j CURFEW_N_p:
//	              REDIRECT 53
//	INPUT    -i LAN -j CURFEW_IN: DNS filter ports, not redirected: DROP
//
// Differences from the nftables backend, documented for parents on old
// firmware: devices are matched one rule each (`-m mac`: the per-packet cost
// grows with the device count — many routers of that age lack ipset's
// hash:mac, and this lab's kernel does); offline windows are absolute
// `-m time --datestart/--datestop` rules, so the kernel still starts and
// ends them alone, in UTC, across DST; allowlist mode is not available.
// Rules are replaced chain by chain, not in one transaction.
package ipt

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/shape"
)

// Options configure a Backend.
type Options struct {
	// Legacy selects iptables-legacy/ip6tables-legacy explicitly (tests on a
	// machine where "iptables" is the nft compatibility layer).
	Legacy bool
	// Run executes kernel work; tests pass a function that enters the
	// lab's router namespace. Nil runs directly.
	Run func(func() error) error
	Log *slog.Logger
}

// Backend is the iptables backend.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	applied map[chainKey][][]string
	sets    map[string][]netip.Prefix
	lan     []string // the LAN interfaces of the last Apply, for Heal
	// shaped is what the shaper was given last (see shape).
	shaped shaped
	// carry holds, by MAC, what device chains counted before Apply
	// rewrote them (see Counters).
	carry map[string]uint64
	// services are the ipsets of services' learned addresses in the
	// kernel, by name (see services.go).
	services map[string]learnedSet
}

// What the backend implements of pkg/firewall's contract, checked here
// (no allowlist mode, no change monitor).
var (
	_ firewall.Backend        = (*Backend)(nil)
	_ firewall.Resyncer       = (*Backend)(nil)
	_ firewall.Healer         = (*Backend)(nil)
	_ firewall.FlowCounter    = (*Backend)(nil)
	_ firewall.Counters       = (*Backend)(nil)
	_ firewall.ServiceCounter = (*Backend)(nil)
)

// New returns a backend; nothing touches the kernel before Apply.
func New(opts Options) *Backend {
	if opts.Run == nil {
		opts.Run = func(f func() error) error { return f() }
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{opts: opts, log: log}
}

// Name implements firewall.Backend.
func (b *Backend) Name() string { return "iptables" }

func (b *Backend) tables() (map[int]*iptables.IPTables, error) {
	out := map[int]*iptables.IPTables{}
	for fam, proto := range map[int]iptables.Protocol{4: iptables.ProtocolIPv4, 6: iptables.ProtocolIPv6} {
		var ipt *iptables.IPTables
		var err error
		if b.opts.Legacy {
			path := "/usr/sbin/iptables-legacy"
			if fam == 6 {
				path = "/usr/sbin/ip6tables-legacy"
			}
			ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(5), iptables.Path(path))
		} else {
			ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
		}
		if err != nil {
			return nil, fmt.Errorf("iptables (IPv%d): %w", fam, err)
		}
		out[fam] = ipt
	}
	return out, nil
}

// The prefixes of a profile's chain and a configured device's (the MAC in
// hex, which fits: onlineBytes reads it back).
const (
	profileChain = "CURFEW_P_"
	deviceChain  = "CURFEW_D_"
)

// chainName keeps names within iptables' 28 characters.
func chainName(prefix, id string) string {
	if len(prefix)+len(id) <= 28 {
		return prefix + id
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("%s%s%08x", prefix, id[:28-len(prefix)-8], h.Sum32())
}

func setName(fam int, kind, id string) string {
	name := fmt.Sprintf("curfew_%s%d_%s", kind, fam, id)
	if len(name) <= 31 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("curfew_%s%d_%08x", kind, fam, h.Sum32())
}

// rendering is the iptables rules and ipsets being rendered from rs, per
// family: rules by chain, sets by name, and the sets of services' learned
// addresses by name (see services).
type rendering struct {
	rs       *firewall.Ruleset
	rules    map[chainKey][][]string
	sets     map[string][]netip.Prefix
	services map[string]learnedSet
}

func (r *rendering) add(fam int, table, chain string, spec ...string) {
	k := chainKey{fam, table, chain}
	r.rules[k] = append(r.rules[k], spec)
}

// ensure makes chain exist, with or without rules.
func (r *rendering) ensure(fam int, table, chain string) {
	k := chainKey{fam, table, chain}
	if _, ok := r.rules[k]; !ok {
		r.rules[k] = [][]string{}
	}
}

// render renders the rules of every chain, per family (the same step as
// the nftables backend's render): each step owns its chains.
func render(rs *firewall.Ruleset) *rendering {
	r := &rendering{rs: rs, rules: map[chainKey][][]string{}, sets: map[string][]netip.Prefix{}, services: map[string]learnedSet{}}
	for _, fam := range []int{4, 6} {
		r.rejects(fam)
		r.ensure(fam, "filter", "CURFEW_FWD")
		r.ensure(fam, "filter", "CURFEW_IN")
		r.ensure(fam, "nat", "CURFEW_DNS")
		r.ensure(fam, "mangle", "CURFEW_FLOWS")
		r.ensure(fam, "mangle", "CURFEW_MARK")
		r.ensure(fam, "mangle", "CURFEW_SLOW")
		r.windDown(fam)
		if rs.FlowLimit > 0 {
			r.flowLimit(fam)
		}
		r.page(fam)
		r.offlineDNS(fam)
		r.guard(fam)
		for _, lan := range rs.LAN {
			r.add(fam, "filter", "CURFEW_FWD", "-o", lan, "-j", "RETURN")
		}
		doh := r.bypass(fam)
		for _, p := range rs.Profiles {
			r.profile(fam, p, doh)
		}
		for _, d := range rs.Devices {
			r.device(fam, d)
		}
		r.unknown(fam)
	}
	return r
}

// window matches the instants of an offline interval (xt_time, UTC) and
// rejects.
func window(iv firewall.Interval) []string {
	to := iv.To.Add(-time.Second) // --datestop includes its second
	from := iv.From
	if from.Unix() < 0 {
		from = time.Unix(0, 0)
	}
	if to.Year() > 2037 {
		to = time.Date(2037, 12, 31, 23, 59, 59, 0, time.UTC) // xt_time's 32-bit limit
	}
	return []string{"-m", "time", "--datestart", from.UTC().Format("2006-01-02T15:04:05"),
		"--datestop", to.UTC().Format("2006-01-02T15:04:05"), "-j", "CURFEW_REJECT"}
}

// rejects renders CURFEW_REJECT: TCP gets a reset, everything else ICMP
// administratively prohibited.
func (r *rendering) rejects(fam int) {
	r.ensure(fam, "filter", "CURFEW_REJECT")
	r.add(fam, "filter", "CURFEW_REJECT", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
	if fam == 4 {
		r.add(fam, "filter", "CURFEW_REJECT", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
	} else {
		r.add(fam, "filter", "CURFEW_REJECT", "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")
	}
}

// redirectInWindows sends what match selects, of a managed device inside
// one of its offline intervals, to port: each device's windows, then a
// RETURN for it (the unknown devices' windows follow).
func (r *rendering) redirectInWindows(fam int, chain string, match []string, port uint16) {
	redirect := func(mac []string, iv firewall.Interval) {
		w := window(iv)
		spec := append(append(append([]string{}, match...), mac...), w[:len(w)-2]...)
		r.add(fam, "nat", chain, append(spec, "-j", "REDIRECT", "--to-ports", fmt.Sprint(port))...)
	}
	for _, d := range r.rs.Devices {
		mac := []string{"-m", "mac", "--mac-source", d.MAC.String()}
		for _, iv := range d.Offline {
			if iv.To.After(iv.From) {
				redirect(mac, iv)
			}
		}
		r.add(fam, "nat", chain, append(append(append([]string{}, match...), mac...), "-j", "RETURN")...)
	}
	if u := r.rs.Unknown; u != nil {
		for _, iv := range u.Offline {
			if iv.To.After(iv.From) {
				redirect(nil, iv)
			}
		}
	}
}

// page renders the bedtime page: each device's windows again, as
// redirects of plain HTTP; the router's own addresses (LuCI) stay what
// they are.
func (r *rendering) page(fam int) {
	if r.rs.PagePort == 0 {
		return
	}
	r.ensure(fam, "nat", "CURFEW_PAGE")
	r.add(fam, "nat", "CURFEW_DNS", "-p", "tcp", "--dport", "80", "-j", "CURFEW_PAGE")
	r.add(fam, "nat", "CURFEW_PAGE", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "RETURN")
	r.redirectInWindows(fam, "CURFEW_PAGE", []string{"-p", "tcp", "--dport", "80"}, r.rs.PagePort)
}

// offlineDNS renders where DNS of a device offline now goes: the filter's
// port for offline devices, decided here by MAC and time (see the
// nftables backend).
func (r *rendering) offlineDNS(fam int) {
	if r.rs.OfflineDNSPort == 0 {
		return
	}
	r.ensure(fam, "nat", "CURFEW_OFFDNS")
	for _, proto := range []string{"udp", "tcp"} {
		r.add(fam, "nat", "CURFEW_DNS", "-p", proto, "--dport", "53", "-j", "CURFEW_OFFDNS")
		r.redirectInWindows(fam, "CURFEW_OFFDNS", []string{"-p", proto, "--dport", "53"}, r.rs.OfflineDNSPort)
	}
}

// guard renders CURFEW_IN: a profile's filter port takes only queries
// that the redirect sent there; asked directly, another profile's port
// would answer by that profile's (looser) rules.
func (r *rendering) guard(fam int) {
	for _, port := range firewall.FilterPorts(r.rs) {
		for _, proto := range []string{"udp", "tcp"} {
			r.add(fam, "filter", "CURFEW_IN", "-p", proto, "--dport", fmt.Sprint(port),
				"-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP")
		}
	}
}

// bypass renders the ipset of public DNS-over-HTTPS resolvers of fam and
// returns its prefixes.
func (r *rendering) bypass(fam int) []netip.Prefix {
	var doh []netip.Prefix
	for _, p := range r.rs.Bypass {
		if p.Addr().Is4() == (fam == 4) {
			doh = append(doh, p)
		}
	}
	if len(doh) > 0 {
		r.sets[setName(fam, "doh", "")] = doh
	}
	return doh
}

// profile renders profile p's chains: CURFEW_P_<p> (established flows
// return; DoT, DoH and blocked prefixes are rejected) and CURFEW_N_<p>
// (its DNS to its port).
func (r *rendering) profile(fam int, p firewall.Profile, doh []netip.Prefix) {
	pc := chainName(profileChain, p.ID)
	r.ensure(fam, "filter", pc)
	r.services4or6(fam, pc, p)
	r.add(fam, "filter", pc, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN")
	if !p.Open {
		r.add(fam, "filter", pc, "-p", "tcp", "--dport", "853", "-j", "CURFEW_REJECT")
		r.add(fam, "filter", pc, "-p", "udp", "--dport", "853", "-j", "CURFEW_REJECT")
		if len(doh) > 0 {
			r.add(fam, "filter", pc, "-m", "set", "--match-set", setName(fam, "doh", ""), "dst", "-j", "CURFEW_REJECT")
		}
	}
	var block []netip.Prefix
	for _, pr := range p.Block {
		if pr.Addr().Is4() == (fam == 4) {
			block = append(block, pr)
		}
	}
	if len(block) > 0 {
		name := setName(fam, "b", p.ID)
		r.sets[name] = block
		r.add(fam, "filter", pc, "-m", "set", "--match-set", name, "dst", "-j", "CURFEW_REJECT")
	}
	port := p.DNSPort
	if port == 0 {
		port = r.rs.DNSPort
	}
	nc := chainName("CURFEW_N_", p.ID)
	r.ensure(fam, "nat", nc)
	for _, proto := range []string{"udp", "tcp"} {
		r.add(fam, "nat", nc, "-p", proto, "--dport", "53", "-j", "REDIRECT", "--to-ports", fmt.Sprint(port))
	}
}

// device renders configured device d's chain (its windows, then its
// profile) and its jumps from CURFEW_FWD and CURFEW_DNS.
func (r *rendering) device(fam int, d firewall.Device) {
	id := strings.ReplaceAll(d.MAC.String(), ":", "")
	dc := chainName(deviceChain, id)
	r.ensure(fam, "filter", dc)
	for _, iv := range d.Offline {
		if iv.To.After(iv.From) {
			r.add(fam, "filter", dc, window(iv)...)
		}
	}
	r.add(fam, "filter", dc, "-j", chainName(profileChain, d.Profile))
	// -g, not -j: a configured device's packet must not come back to
	// CURFEW_FWD, where the unknown devices' windows follow.
	r.add(fam, "filter", "CURFEW_FWD", "-m", "mac", "--mac-source", d.MAC.String(), "-g", dc)
	r.add(fam, "nat", "CURFEW_DNS", "-m", "mac", "--mac-source", d.MAC.String(), "-g", chainName("CURFEW_N_", d.Profile))
}

// unknown renders the devices the config does not list: their windows and
// their profile, at the end of CURFEW_FWD and CURFEW_DNS.
func (r *rendering) unknown(fam int) {
	u := r.rs.Unknown
	if u == nil {
		return
	}
	for _, iv := range u.Offline {
		if iv.To.After(iv.From) {
			r.add(fam, "filter", "CURFEW_FWD", window(iv)...)
		}
	}
	if hasProfile(r.rs, u.Profile) {
		r.add(fam, "filter", "CURFEW_FWD", "-j", chainName(profileChain, u.Profile))
		r.add(fam, "nat", "CURFEW_DNS", "-j", chainName("CURFEW_N_", u.Profile))
	}
}

// windDown renders the wind-down (see the nftables backend): the first
// packet of a flow a device that winds down opens writes the device's id
// into the conntrack mark's upper half (CURFEW_MARK, mangle PREROUTING);
// a packet to the LAN of such a flow, inside one of the device's
// wind-down intervals (xt_time), gets the device's class of the shaper
// on the LAN interface (CURFEW_SLOW, mangle FORWARD; CLASSIFY).
func (r *rendering) windDown(fam int) {
	marks := firewall.Marks(r.rs.Devices)
	mask := fmt.Sprintf("0x%x", uint32(firewall.MarkMask))
	for _, d := range r.rs.Devices {
		m, ok := marks[string(d.MAC)]
		if !ok {
			continue
		}
		mark := fmt.Sprintf("0x%x/%s", m, mask)
		r.add(fam, "mangle", "CURFEW_MARK", "-m", "mac", "--mac-source", d.MAC.String(), "-j", "CONNMARK", "--set-xmark", mark)
		class := fmt.Sprintf("%x:%x", shape.Major, m>>16)
		for _, iv := range d.Slow {
			if iv.To.After(iv.From) {
				w := window(iv)
				r.add(fam, "mangle", "CURFEW_SLOW", append(append([]string{"-m", "connmark", "--mark", mark}, w[:len(w)-2]...),
					"-j", "CLASSIFY", "--set-class", class)...)
			}
		}
	}
}

// flowLimit bounds how fast each device opens connections (see the
// nftables backend's renderFlowLimit). iptables allows no DROP in its nat
// table, so the rules are in mangle PREROUTING, for the packets whose
// connection is not confirmed yet: a flow's first packet, as in nat, and
// dropped before it takes an entry. xt_hashlimit cannot key by MAC and is
// not in OpenWrt's default image; xt_limit is, and one rule is one
// bucket: each configured device gets its own, all other devices share
// one. The families count apart, as their rules do.
func (r *rendering) flowLimit(fam int) {
	rs, add := r.rs, r.add
	// xt_limit's bounds: 10,000 a second, a burst of 10,000
	rate := fmt.Sprintf("%d/sec", min(rs.FlowLimit, 10000))
	burst := fmt.Sprint(max(1, min(rs.FlowBurst, 10000)))
	for _, d := range rs.Devices {
		mac := []string{"-m", "mac", "--mac-source", d.MAC.String()}
		add(fam, "mangle", "CURFEW_FLOWS", append(mac, "-m", "limit", "--limit", rate, "--limit-burst", burst, "-j", "RETURN")...)
		add(fam, "mangle", "CURFEW_FLOWS", append(mac, "-j", "DROP")...)
	}
	add(fam, "mangle", "CURFEW_FLOWS", "-m", "limit", "--limit", rate, "--limit-burst", burst, "-j", "RETURN")
	add(fam, "mangle", "CURFEW_FLOWS", "-j", "DROP")
}

// FlowDrops returns, by MAC, how many new connections the kernel dropped
// because a configured device went over flow_limit (both families; the
// devices that share one allowance are not told apart).
func (b *Backend) FlowDrops(ctx context.Context) (map[string]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]uint64{}
	err := b.opts.Run(func() error {
		ts, err := b.tables()
		if err != nil {
			return err
		}
		for _, fam := range []int{4, 6} {
			rules, err := ts[fam].ListWithCounters("mangle", "CURFEW_FLOWS")
			if err != nil {
				return err
			}
			for _, r := range rules {
				if mac, n, ok := droppedBy(r); ok {
					out[mac] += n
				}
			}
		}
		return nil
	})
	return out, err
}

// droppedBy reads a device's DROP rule of CURFEW_FLOWS as `iptables -v -S`
// prints it: "-A CURFEW_FLOWS -m mac --mac-source M -c PACKETS BYTES -j DROP".
func droppedBy(rule string) (string, uint64, bool) {
	f := strings.Fields(rule)
	if len(f) < 4 || f[len(f)-2] != "-j" || f[len(f)-1] != "DROP" {
		return "", 0, false
	}
	var mac string
	var n uint64
	found := false
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "--mac-source":
			m, err := net.ParseMAC(f[i+1])
			if err != nil {
				return "", 0, false
			}
			mac = m.String()
		case "-c":
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return "", 0, false
			}
			n, found = v, true
		}
	}
	if mac == "" || !found {
		return "", 0, false
	}
	return mac, n, true
}

func hasProfile(rs *firewall.Ruleset, id string) bool {
	for _, p := range rs.Profiles {
		if p.ID == id {
			return true
		}
	}
	return false
}

// jumps are the entry points into our chains from the built-in ones.
func jumps(lan []string) [][]string {
	var out [][]string
	for _, l := range lan {
		out = append(out, []string{"filter", "FORWARD", "-i", l, "-j", "CURFEW_FWD"})
		out = append(out, []string{"filter", "INPUT", "-i", l, "-j", "CURFEW_IN"})
		out = append(out, []string{"nat", "PREROUTING", "-i", l, "-j", "CURFEW_DNS"})
		out = append(out, []string{"mangle", "PREROUTING", "-i", l, "-m", "conntrack", "!", "--ctstatus", "CONFIRMED", "-j", "CURFEW_FLOWS"})
		out = append(out, []string{"mangle", "PREROUTING", "-i", l, "-m", "conntrack", "!", "--ctstatus", "CONFIRMED", "-j", "CURFEW_MARK"})
		// only flows that carry a device's id go through the device rules
		out = append(out, []string{"mangle", "FORWARD", "-o", l, "-m", "connmark", "!", "--mark", "0x0/0xffff0000", "-j", "CURFEW_SLOW"})
	}
	return out
}

// Apply implements firewall.Backend: it creates missing chains and sets,
// replaces the rules of chains whose content changed (referenced chains
// first), puts its jumps back at the top of FORWARD and PREROUTING if fw3
// reloaded them away, and deletes chains it no longer needs. The same
// ruleset twice changes nothing.
func (b *Backend) Apply(ctx context.Context, rs *firewall.Ruleset) error {
	r := render(rs)
	rules := r.rules
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.Run(func() error {
		ts, err := b.tables()
		if err != nil {
			return err
		}
		if err := b.applySets(r.sets); err != nil {
			return err
		}
		if err := b.applyServiceSets(r.services); err != nil {
			return err
		}
		keys := make([]chainKey, 0, len(rules))
		for k := range rules {
			keys = append(keys, k)
		}
		// Chains first, then rules: creation order does not matter for
		// existence, and every chain exists before any jump to it.
		for _, k := range keys {
			fam, table, chain := k.fam, k.table, k.chain
			if ok, _ := ts[fam].ChainExists(table, chain); !ok {
				if err := ts[fam].NewChain(table, chain); err != nil {
					return fmt.Errorf("chain %s: %w", chain, err)
				}
				delete(b.applied, k)
			}
		}
		b.carryRewritten(ctx, rules)
		for _, k := range keys {
			if old, ok := b.applied[k]; ok && slices.EqualFunc(old, rules[k], slices.Equal) {
				continue
			}
			fam, table, chain := k.fam, k.table, k.chain
			if err := ts[fam].ClearChain(table, chain); err != nil {
				return err
			}
			for _, r := range rules[k] {
				if err := ts[fam].Append(table, chain, r...); err != nil {
					return fmt.Errorf("%s %v: %w", chain, r, err)
				}
			}
		}
		for _, fam := range []int{4, 6} {
			for _, j := range jumps(rs.LAN) {
				if ok, _ := ts[fam].Exists(j[0], j[1], j[2:]...); !ok {
					if err := ts[fam].Insert(j[0], j[1], 1, j[2:]...); err != nil {
						return err
					}
				}
			}
		}
		// Chains of devices and profiles that are gone.
		for k := range b.applied {
			if _, ok := rules[k]; !ok {
				fam, table, chain := k.fam, k.table, k.chain
				ts[fam].ClearAndDeleteChain(table, chain)
			}
		}
		b.applied = rules
		b.lan = slices.Clone(rs.LAN)
		b.shape(rs)
		return nil
	})
}

// carryRewritten keeps what the device chains that rules rewrites have
// counted (inside Run): one listing per family that has any.
func (b *Backend) carryRewritten(ctx context.Context, rules map[chainKey][][]string) {
	for _, fam := range []int{4, 6} {
		chains := map[string]bool{}
		for k, r := range rules {
			if old, ok := b.applied[k]; ok && k.fam == fam && k.table == "filter" && strings.HasPrefix(k.chain, deviceChain) &&
				!slices.EqualFunc(old, r, slices.Equal) {
				chains[k.chain] = true
			}
		}
		if len(chains) > 0 {
			b.carryChains(ctx, fam, chains)
		}
	}
}

// shape gives the LAN interfaces the shaper's classes for the devices
// that wind down (see pkg/firewall/shape), inside Run, when they or the
// interfaces changed (an interface made anew has a new index and has lost
// its qdisc). A failure there is logged once for what it was given: it
// slows no one, and the rules stay.
func (b *Backend) shape(rs *firewall.Ruleset) {
	want := shaped{classes: shape.Classes(rs), index: map[string]int{}}
	for _, name := range rs.LAN {
		if i, err := net.InterfaceByName(name); err == nil {
			want.index[name] = i.Index
		}
	}
	if slices.Equal(want.classes, b.shaped.classes) && maps.Equal(want.index, b.shaped.index) {
		return
	}
	b.shaped = want
	c, err := shape.Dial(0)
	if err == nil {
		defer c.Close()
		err = shape.Apply(c, rs.LAN, want.classes)
	}
	if err != nil {
		b.log.Warn("wind-down: " + err.Error())
	}
}

// shaped is what the shaper was last given.
type shaped struct {
	classes []shape.Class
	index   map[string]int
}

// Heal puts back the jumps into curfew's chains when someone removed them:
// fw3 flushes FORWARD, INPUT and PREROUTING on every reload, and without
// the jumps a child's traffic skips curfew's chains. It checks only the
// jumps (one iptables call each), so the daemon can afford it every few
// seconds; Resync checks the chains themselves. It reports whether it
// changed anything.
func (b *Backend) Heal(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.applied == nil {
		return false, nil
	}
	fixed := false
	err := b.opts.Run(func() error {
		ts, err := b.tables()
		if err != nil {
			return err
		}
		for _, fam := range []int{4, 6} {
			for _, j := range jumps(b.lan) {
				if ok, err := ts[fam].Exists(j[0], j[1], j[2:]...); err != nil || ok {
					continue
				}
				if err := ts[fam].Insert(j[0], j[1], 1, j[2:]...); err != nil {
					return fmt.Errorf("restore jump %v: %w", j, err)
				}
				fixed = true
			}
		}
		return nil
	})
	if fixed {
		b.log.Warn("iptables: curfew's jumps were removed (a firewall reload?); restored")
	}
	return fixed, err
}

// chainKey names one chain of the kernel's: its family (4 or 6), table
// and name.
type chainKey struct {
	fam          int
	table, chain string
}

// String is the key as iptables-save would head the chain's rules.
func (k chainKey) String() string { return fmt.Sprintf("IPv%d -t %s -N %s", k.fam, k.table, k.chain) }

// applySets makes the kernel's ipsets hold the prefixes.
func (b *Backend) applySets(sets map[string][]netip.Prefix) error {
	for name, prefixes := range sets {
		if old, ok := b.sets[name]; ok && slices.Equal(old, prefixes) {
			continue
		}
		fam := uint8(unix.AF_INET)
		if prefixes[0].Addr().Is6() {
			fam = unix.AF_INET6
		}
		if _, err := netlink.IpsetList(name); err != nil {
			if err := netlink.IpsetCreate(name, "hash:net", netlink.IpsetCreateOptions{Family: fam, MaxElements: 1 << 20}); err != nil {
				return fmt.Errorf("ipset %s: %w", name, err)
			}
		} else if err := netlink.IpsetFlush(name); err != nil {
			return err
		}
		for _, p := range prefixes {
			if err := netlink.IpsetAdd(name, &netlink.IPSetEntry{IP: p.Addr().AsSlice(), CIDR: uint8(p.Bits())}); err != nil {
				return fmt.Errorf("ipset %s %s: %w", name, p, err)
			}
		}
	}
	if b.sets == nil {
		b.sets = map[string][]netip.Prefix{}
	}
	for name := range b.sets {
		if _, ok := sets[name]; !ok {
			// Referencing rules are gone by the time the caller asks, or
			// the destroy fails harmlessly and is retried next time.
			defer netlink.IpsetDestroy(name)
			delete(b.sets, name)
		}
	}
	for name, p := range sets {
		b.sets[name] = p
	}
	return nil
}

// Resync restores what fw3 or someone else removed: missing jumps or chains
// with the wrong number of rules. It reports whether it changed anything.
func (b *Backend) Resync(ctx context.Context) (bool, error) {
	b.mu.Lock()
	applied := b.applied
	b.mu.Unlock()
	if applied == nil {
		return false, nil
	}
	broken := false
	err := b.opts.Run(func() error {
		ts, err := b.tables()
		if err != nil {
			return err
		}
		for k, rules := range applied {
			fam, table, chain := k.fam, k.table, k.chain
			list, err := ts[fam].List(table, chain)
			if err != nil || len(list) != len(rules)+1 { // +1: the -N line
				broken = true
				return nil
			}
		}
		return nil
	})
	if err != nil || !broken {
		return false, err
	}
	b.mu.Lock()
	b.applied = nil
	b.sets = nil
	b.mu.Unlock()
	b.log.Warn("iptables: curfew's chains were changed by someone else; restoring them")
	return true, nil
}

// Remove implements firewall.Backend.
func (b *Backend) Remove(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.Run(func() error {
		ts, err := b.tables()
		if err != nil {
			return err
		}
		var errs []error
		for _, fam := range []int{4, 6} {
			ipt := ts[fam]
			for _, table := range []string{"filter", "nat", "mangle"} {
				for _, builtin := range []string{"FORWARD", "PREROUTING", "INPUT"} {
					rules, err := ipt.List(table, builtin)
					if err != nil {
						continue
					}
					for _, r := range rules {
						if strings.Contains(r, "-j CURFEW_") {
							ipt.Delete(table, builtin, strings.Fields(strings.TrimPrefix(r, "-A "+builtin+" "))...)
						}
					}
				}
				chains, _ := ipt.ListChains(table)
				for _, c := range chains {
					if strings.HasPrefix(c, "CURFEW_") {
						ipt.ClearChain(table, c)
					}
				}
				for _, c := range chains {
					if strings.HasPrefix(c, "CURFEW_") {
						if err := ipt.DeleteChain(table, c); err != nil {
							errs = append(errs, err)
						}
					}
				}
			}
		}
		if c, err := shape.Dial(0); err == nil {
			if err := shape.Remove(c, b.lan); err != nil {
				errs = append(errs, err)
			}
			c.Close()
			b.shaped = shaped{}
		}
		if sets, err := netlink.IpsetListAll(); err == nil {
			for _, s := range sets {
				if strings.HasPrefix(s.SetName, "curfew_") {
					netlink.IpsetDestroy(s.SetName)
				}
			}
		}
		b.applied, b.sets, b.services = nil, nil, nil
		return errors.Join(errs...)
	})
}

// Cutoff implements firewall.Backend (conntrack is the same under both
// backends).
func (b *Backend) Cutoff(ctx context.Context, macs []net.HardwareAddr, sel firewall.Flows) (firewall.Cut, error) {
	var n firewall.Cut
	err := b.opts.Run(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		n, err = firewall.Cutoff(h, macs, sel)
		return err
	})
	return n, err
}
