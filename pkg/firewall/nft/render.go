// Rendering: a firewall.Ruleset into the desired table, part by part
// (devices, profiles, forward, DNS, flow limit, the bedtime page, the
// filter ports' guard).

package nft

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// render builds the desired table from a ruleset; lanIndex has the
// interface indexes of the LAN interfaces that exist now. Each step owns
// the parts of the table the package doc names; the order of the steps is
// the order in which the kernel lists the table.
func render(rs *firewall.Ruleset, m *memo, now time.Time, lanIndex map[string]uint32) (*desired, error) {
	d := &desired{table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}}
	var sig strings.Builder
	fmt.Fprintf(&sig, "lan=%v dns=%d", rs.LAN, rs.DNSPort)
	renderDevices(d, rs, m, now, &sig)
	renderRejects(d)
	renderBypass(d, rs, &sig)
	for _, p := range rs.Profiles {
		renderProfile(d, rs, p, &m.prefixes, &sig)
	}
	renderForward(d, rs, lanIndex, &sig)
	dns := renderDNS(d, rs, &sig)
	pre := renderPrerouting(d, rs, &sig)
	d.chains = append(d.chains, dns, pre)
	renderGuard(d, rs, &sig)
	d.sig = sig.String() + " shape=" + d.shape()
	return d, nil
}

// timeSet is a classic interval set of absolute instants (kernel time,
// big-endian ns). Per device rather than one MAC . time concatenation:
// measured, a concatenated (pipapo) set's lookup grows with its element
// count — 1,000 devices with a week of windows cut forwarding to 7% —
// while a verdict-map hop to a per-device chain and a lookup in a handful
// of intervals cost the same for 2 or 2,000 devices.
func timeSet(t *nftables.Table, name, comment string, ivs []firewall.Interval) *setSpec {
	ts := &setSpec{rebuild: true, set: &nftables.Set{
		Table: t, Name: name, Interval: true, KeyType: nftables.TypeTime, Comment: comment,
	}}
	for _, iv := range ivs {
		from, to := ns(iv.From), ns(iv.To)
		if to <= from {
			continue
		}
		ts.elems = append(ts.elems,
			nftables.SetElement{Key: be64(from)},
			nftables.SetElement{Key: be64(to), IntervalEnd: true})
	}
	return ts
}

// rejectInside rejects a packet sent inside one of the time set's
// intervals.
func rejectInside(set string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: metaTimeNS, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: set},
		gotoChain("reject_offline"),
	}
}

// renderDevices renders the configured devices' maps (device_chain,
// dns_profile), the online set of the fast path, and each device's
// offline set and chain; then the unknown devices' offline set. A device
// whose inputs are unchanged since the last render keeps its part (see
// memo): at 5,000 devices, making every part again was most of a pause.
func renderDevices(d *desired, rs *firewall.Ruleset, m *memo, now time.Time, sig *strings.Builder) {
	devices, dnsOf, online := deviceMaps(d.table)
	d.sets = append(d.sets, devices, dnsOf)
	if len(rs.Devices) > 0 {
		d.sets = append(d.sets, online)
	}
	n := len(rs.Devices)
	devices.elems = make([]nftables.SetElement, 0, n)
	dnsOf.elems = make([]nftables.SetElement, 0, n)
	online.elems, online.until = make([]nftables.SetElement, 0, n), make([]time.Time, 0, n)
	d.parts = make([]*devicePart, 0, n)
	d.sets = slices.Grow(d.sets, n)
	d.chains = slices.Grow(d.chains, n)
	d.counters = make([]string, 0, n)
	kept := make(map[string]*devicePart, n)
	sig.Grow(n * 24)
	marks := firewall.Marks(rs.Devices)
	// The fast path hands established packets of a profile with service
	// allowances to its count chain; everyone else's it accepts.
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	counted := map[string]*expr.Verdict{}
	for _, p := range rs.Profiles {
		if len(p.Services) > 0 {
			counted[p.ID] = gotoChain(countChain(p.ID))
		}
	}
	var markMap, flowMap *setSpec
	if len(marks) > 0 {
		markMap, flowMap = windDownMaps(d.table)
		d.sets = append(d.sets, markMap, flowMap)
		d.windDown = true
		sig.WriteString(" wind")
	}
	for _, dev := range rs.Devices {
		mark := marks[string(dev.MAC)]
		p := m.part(kept, dev, mark)
		if p == nil {
			p = renderDevice(d.table, dev, mark)
			kept[string(dev.MAC)] = p
		}
		if p.slow != nil {
			d.sets = append(d.sets, p.slow)
			d.chains = append(d.chains, p.slowCh, p.markCh)
			markMap.elems = append(markMap.elems, p.mark)
			flowMap.elems = append(flowMap.elems, p.flows)
		}
		d.parts = append(d.parts, p)
		sig.WriteString(p.sig)
		d.sets = append(d.sets, p.off)
		d.chains = append(d.chains, p.ch)
		d.counters = append(d.counters, p.counter)
		devices.elems = append(devices.elems, p.device)
		dnsOf.elems = append(dnsOf.elems, p.dns)
		if until, ok := onlineUntil(dev.Offline, now); ok {
			e := nftables.SetElement{Key: dev.MAC, Comment: p.comment, VerdictData: cmp.Or(counted[dev.Profile], accept)}
			if !until.IsZero() {
				e.Comment = p.comment + ", until " + until.UTC().Format(time.RFC3339)
			}
			online.elems = append(online.elems, e)
			online.until = append(online.until, until)
		}
	}
	m.devices = kept
	if rs.Unknown != nil {
		fmt.Fprintf(sig, " unknown=%s", rs.Unknown.Profile)
		d.sets = append(d.sets, timeSet(d.table, "unknown_offline",
			"offline intervals of devices not in the config (profile "+rs.Unknown.Profile+")", rs.Unknown.Offline))
	}
}

// deviceMaps are the sets that hold an element per configured device:
// device_chain, dns_profile and online.
func deviceMaps(t *nftables.Table) (devices, dnsOf, online *setSpec) {
	// A size hint makes the kernel pick its fixed-size hash over the
	// resizable one, which is cheaper per lookup; it is a bound on
	// elements, so it must exceed any home's device count.
	devices = &setSpec{set: &nftables.Set{
		Table: t, Name: "device_chain", IsMap: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "configured device MAC -> its chain",
	}}
	dnsOf = &setSpec{set: &nftables.Set{
		Table: t, Name: "dns_profile", IsMap: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "configured device MAC -> its profile's DNS redirect",
	}}
	// The fast path for established flows (see onlineRule): each
	// configured device that is online now, until its next offline
	// instant, with what to do with its packets (accept, or count them
	// for its profile's services first). An element's own counter counts
	// its bytes for screen time.
	online = &setSpec{rebuild: true, until: []time.Time{}, set: &nftables.Set{
		Table: t, Name: "online", IsMap: true, HasTimeout: true, Counter: true, Size: 65536,
		KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		Comment: "configured devices online now, each until its next offline instant",
	}}
	return devices, dnsOf, online
}

// renderDevice makes one configured device's part: its offline set, its
// chain (offline intervals, then its counter and its profile), its
// elements in the maps and in the redirects' offline set, and the comment
// of its element in the online set.
func renderDevice(t *nftables.Table, dev firewall.Device, mark uint32) *devicePart {
	id := macID(dev.MAC)
	name := dev.Name
	if name == "" {
		name = dev.MAC.String()
	}
	p := &devicePart{name: dev.Name, profile: dev.Profile, offline: slices.Clone(dev.Offline),
		slowIvs: slices.Clone(dev.Slow), slowRate: dev.SlowRate, markID: mark,
		sig: " dev=" + id + ":" + dev.Profile, counter: usageName(dev.MAC)}
	p.off = timeSet(t, offlineSet(dev.MAC), "offline intervals of "+name+" (profile "+dev.Profile+")", dev.Offline)
	p.ch = &chainSpec{chain: &nftables.Chain{Name: deviceChain(dev.MAC), Table: t}}
	p.ch.add(name+": inside an offline interval", rejectInside(p.off.set.Name))
	// A named counter per device: the daemon reads them all in one dump a
	// minute to count screen time (no per-packet userspace work).
	p.ch.add(name+": profile "+dev.Profile+", traffic counted for screen time",
		&expr.Objref{Type: 1, Name: p.counter}, gotoChain(profileChain(dev.Profile)))
	p.device = nftables.SetElement{Key: dev.MAC, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: p.ch.chain.Name}}
	p.dns = nftables.SetElement{Key: dev.MAC, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: dnsChain(dev.Profile)}}
	key := func(at uint64) []byte { return append(append(append([]byte{}, dev.MAC...), 0, 0), be64(at)...) }
	for _, iv := range dev.Offline {
		if from, to := ns(iv.From), ns(iv.To); to > from {
			p.windows = append(p.windows, nftables.SetElement{Key: key(from), KeyEnd: key(to - 1)})
		}
	}
	// The kernel keeps at most 256 bytes of an element's comment.
	p.comment = strings.ToValidUTF8(name[:min(len(name), 128)], "")
	if mark != 0 {
		windDownPart(t, p, dev, mark, name)
	}
	return p
}

// renderRejects renders the reject chains — TCP gets a reset, everything
// else ICMP administratively prohibited, so that apps fail fast instead
// of hanging — and the DNS-over-TLS check.
func renderRejects(d *desired) {
	rejectChain := func(name, note string) *chainSpec {
		ch := &chainSpec{chain: &nftables.Chain{Name: name, Table: d.table}}
		ch.add(note, &expr.Counter{}, l4proto(unix.IPPROTO_TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		ch.add(note, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})
		return ch
	}
	d.chains = append(d.chains,
		rejectChain("reject_offline", "device offline"),
		rejectChain("reject_blocked", "destination blocked"),
		rejectChain("reject_bypass", "resolver bypass (DNS over TLS)"))
	// Port 853 is checked first (one compare per packet), the protocol
	// only then; other protocols with those two bytes return.
	dot := &chainSpec{chain: &nftables.Chain{Name: "dot", Table: d.table}}
	dot.add("DNS over TLS (TCP)", l4proto(unix.IPPROTO_TCP), gotoChain("reject_bypass"))
	dot.add("DNS over QUIC/DTLS (UDP)", l4proto(unix.IPPROTO_UDP), gotoChain("reject_bypass"))
	d.chains = append(d.chains, dot)
}

// renderBypass renders the sets of public DNS-over-HTTPS resolvers'
// addresses (doh4, doh6).
func renderBypass(d *desired, rs *firewall.Ruleset, sig *strings.Builder) {
	if len(rs.Bypass) == 0 {
		return
	}
	fmt.Fprintf(sig, " bypass")
	var b4, b6 []nftables.SetElement
	for _, p := range rs.Bypass {
		if p.Addr().Is4() {
			b4 = append(b4, nftables.SetElement{Key: p.Addr().AsSlice()})
		} else {
			b6 = append(b6, nftables.SetElement{Key: p.Addr().AsSlice()})
		}
	}
	d.sets = append(d.sets,
		&setSpec{rebuild: true, elems: b4, set: &nftables.Set{Table: d.table, Name: "doh4", KeyType: nftables.TypeIPAddr,
			Comment: "public DNS-over-HTTPS resolvers (IPv4)"}},
		&setSpec{rebuild: true, elems: b6, set: &nftables.Set{Table: d.table, Name: "doh6", KeyType: nftables.TypeIP6Addr,
			Comment: "public DNS-over-HTTPS resolvers (IPv6)"}})
}

// renderProfile renders profile p's chain: established flows return, DoT
// and DoH are rejected, then its blocked prefixes and, in allowlist mode,
// what it may reach.
func renderProfile(d *desired, rs *firewall.Ruleset, p firewall.Profile, memo *prefixMemo, sig *strings.Builder) {
	fmt.Fprintf(sig, " profile=%s open=%v", p.ID, p.Open)
	ch := &chainSpec{chain: &nftables.Chain{Name: profileChain(p.ID), Table: d.table}}
	note := "profile " + label(p)
	// A profile's destinations are checked on a flow's first packets
	// only: a flow to a blocked destination never gets established, and
	// when a block is added the daemon deletes the flows it now forbids
	// (Cutoff). Established traffic of an online device thus pays one
	// conntrack-state test here, whatever the size of the lists.
	// (A profile that counts services counts them on this way too: its
	// unknown devices, which the fast path does not know, come here.)
	established, estNote := &expr.Verdict{Kind: expr.VerdictReturn}, ": established flows were checked at their start"
	if len(p.Services) > 0 {
		established, estNote = gotoChain(countChain(p.ID)), ": established flows were checked at their start; their services counted"
	}
	ch.add(note+estNote,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		established)
	if !p.Open {
		ch.add(note+": no DNS over TLS", dport(853), &expr.Verdict{Kind: expr.VerdictJump, Chain: "dot"})
	}
	if len(rs.Bypass) > 0 && !p.Open {
		ch.add(note+": no DNS over HTTPS", daddr(4), &expr.Lookup{SourceRegister: 1, SetName: "doh4"}, gotoChain("reject_bypass"))
		ch.add(note+": no DNS over HTTPS", daddr(6), &expr.Lookup{SourceRegister: 1, SetName: "doh6"}, gotoChain("reject_bypass"))
	}
	renderServices(d, ch, p, sig)
	renderBlocks(d, ch, p, memo, sig)
	if p.Allowlist {
		renderAllowlist(d, ch, p, sig)
	}
	d.chains = append(d.chains, ch)
}

// renderServices renders profile p's services with an allowance today:
// for each, the addresses the DNS filter learns from the profile's answers
// for its names (svc4_/svc6_<profile>_<service>, with the answers' TTL),
// a named counter, and the profile's count chain, which the fast path
// hands the profile's established packets to. There each service's
// addresses are counted — or, once its allowance is used up, rejected,
// which ends open connections at their next packet; ch, the profile's
// chain of first packets, rejects new ones. One lookup per service and
// family, for this profile's devices only: the fast path of other devices
// stays as it was.
func renderServices(d *desired, ch *chainSpec, p firewall.Profile, sig *strings.Builder) {
	if len(p.Services) == 0 {
		return
	}
	note := "profile " + label(p)
	count := &chainSpec{chain: &nftables.Chain{Name: countChain(p.ID), Table: d.table}}
	var first [][]expr.Any
	var firstNotes []string
	for _, svc := range p.Services {
		fmt.Fprintf(sig, " svc=%s:%v", svc.Name, svc.UsedUp)
		if !svc.UsedUp {
			counter := serviceCounter(p.ID, svc.Name)
			d.counters = append(d.counters, counter)
			if d.services == nil {
				d.services = map[string]firewall.ServiceKey{}
			}
			d.services[counter] = firewall.ServiceKey{Profile: p.ID, Service: svc.Name}
		}
	}
	// The rules of one family together, each family's packets leaving
	// after its own (measured: every rule a packet passes costs about a
	// percent of the forwarding rate); the last service's counting rule
	// accepts what it counts, an earlier one lets the packet on to the
	// next service's (an address two services share counts for both).
	for _, fam := range []int{4, 6} {
		typ := nftables.TypeIPAddr
		if fam == 6 {
			typ = nftables.TypeIP6Addr
		}
		for i, svc := range p.Services {
			name := serviceSet(fam, p.ID, svc.Name)
			d.sets = append(d.sets, &setSpec{dynamic: true, set: &nftables.Set{Table: d.table, Name: name, KeyType: typ,
				HasTimeout: true, Size: serviceSetMax,
				Comment: fmt.Sprintf("IPv%d addresses of %s's names for %s", fam, svc.Name, label(p))}})
			match := append(daddr(fam), &expr.Lookup{SourceRegister: 1, SetName: name})
			if svc.UsedUp {
				n := fmt.Sprintf("%s: %s used up today, IPv%d", note, svc.Name, fam)
				count.add(n, match, gotoChain("reject_blocked"))
				first = append(first, append(slices.Clone(match), gotoChain("reject_blocked")))
				firstNotes = append(firstNotes, n)
				continue
			}
			rule := []expr.Any{&expr.Objref{Type: 1, Name: serviceCounter(p.ID, svc.Name)}}
			if i == len(p.Services)-1 {
				rule = append(rule, &expr.Verdict{Kind: expr.VerdictAccept})
			}
			count.add(fmt.Sprintf("%s: %s, IPv%d, counted", note, svc.Name, fam), match, rule)
		}
		if fam == 4 {
			count.add(note+": other IPv4 of a device online now",
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
				&expr.Verdict{Kind: expr.VerdictAccept})
		}
	}
	count.add(note+": established flows of a device online now", &expr.Verdict{Kind: expr.VerdictAccept})
	d.chains = append(d.chains, count)
	// in front of the profile chain's first rule, which lets established
	// flows through: one that began before the allowance ran out and
	// takes this way ends too
	ch.rules = append(first, ch.rules...)
	ch.notes = append(firstNotes, ch.notes...)
}

// serviceSetMax bounds each service's learned addresses per family: a
// busy video app resolves a few hundred in a day.
const serviceSetMax = 16384

// renderBlocks renders profile p's blocked prefixes: a plain set per
// prefix length (blockF_<profile>_<bits>), each with its rule in ch.
func renderBlocks(d *desired, ch *chainSpec, p firewall.Profile, memo *prefixMemo, sig *strings.Builder) {
	note := "profile " + label(p)
	for _, g := range memo.groups(p.ID, p.Block) {
		fam, proto, off, size, typ := "4", byte(unix.NFPROTO_IPV4), uint32(16), uint32(4), nftables.TypeIPAddr
		if g.v6 {
			fam, proto, off, size, typ = "6", unix.NFPROTO_IPV6, 24, 16, nftables.TypeIP6Addr
		}
		name := fmt.Sprintf("block%s_%s_%d", fam, p.ID, g.bits)
		fmt.Fprintf(sig, " %s", name)
		d.sets = append(d.sets, &setSpec{rebuild: true, packed: g.keys, keyLen: g.size(), set: &nftables.Set{Table: d.table, Name: name, KeyType: typ,
			Comment: fmt.Sprintf("IPv%s /%d destinations blocked for %s", fam, g.bits, label(p))}})
		match := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		}
		if g.bits < int(size)*8 {
			match = append(match, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size,
				Mask: maskBytes(g.bits, int(size)), Xor: make([]byte, size)})
		}
		ch.add(fmt.Sprintf("%s: blocked IPv%s /%d", note, fam, g.bits), match,
			&expr.Lookup{SourceRegister: 1, SetName: name}, gotoChain("reject_blocked"))
	}
}

// renderAllowlist renders allowlist mode for profile p: only addresses
// that allowed names resolved to (added by the DNS filter with the
// answer's TTL) and the profile's allowed prefixes; hard-coded IPs and
// DoH go nowhere. After the blocked prefixes: an allowed name that
// resolves into a blocked prefix stays blocked.
func renderAllowlist(d *desired, ch *chainSpec, p firewall.Profile, sig *strings.Builder) {
	note := "profile " + label(p)
	fmt.Fprintf(sig, " allow=%s", p.ID)
	for _, fam := range []int{4, 6} {
		name := fmt.Sprintf("allow%d_%s", fam, p.ID)
		typ := nftables.TypeIPAddr
		if fam == 6 {
			typ = nftables.TypeIP6Addr
		}
		d.sets = append(d.sets, &setSpec{dynamic: true, set: &nftables.Set{Table: d.table, Name: name, KeyType: typ,
			HasTimeout: true, Comment: fmt.Sprintf("IPv%d addresses allowed names resolved to, for %s", fam, label(p))}})
		ch.add(fmt.Sprintf("%s: allowlist, resolved IPv%d", note, fam), daddr(fam),
			&expr.Lookup{SourceRegister: 1, SetName: name}, &expr.Verdict{Kind: expr.VerdictReturn})
		var static []nftables.SetElement
		for _, a := range p.Allow {
			if a.Addr().Is4() == (fam == 4) {
				static = append(static, prefixRange(a)...)
			}
		}
		if len(static) > 0 {
			netName := fmt.Sprintf("allownet%d_%s", fam, p.ID)
			fmt.Fprintf(sig, " %s", netName)
			d.sets = append(d.sets, &setSpec{rebuild: true, elems: static, set: &nftables.Set{Table: d.table, Name: netName, KeyType: typ,
				Interval: true, Comment: fmt.Sprintf("IPv%d prefixes allowed for %s", fam, label(p))}})
			ch.add(fmt.Sprintf("%s: allowlist, allowed IPv%d prefixes", note, fam), daddr(fam),
				&expr.Lookup{SourceRegister: 1, SetName: netName}, &expr.Verdict{Kind: expr.VerdictReturn})
		}
	}
	ch.add(note+": allowlist, anything else", &expr.Verdict{Kind: expr.VerdictGoto, Chain: "reject_blocked"})
}

// renderForward renders chain managed (LAN traffic to its device's chain,
// or to the unknown devices' rules) and the forward hook's chain with the
// fast path in front.
func renderForward(d *desired, rs *firewall.Ruleset, lanIndex map[string]uint32, sig *strings.Builder) {
	managed := &chainSpec{chain: &nftables.Chain{Name: "managed", Table: d.table}}
	for _, lan := range rs.LAN {
		managed.add("traffic that stays inside the LAN", ifname(expr.MetaKeyOIFNAME, lan), &expr.Verdict{Kind: expr.VerdictReturn})
	}
	managed.add("configured device: its own chain",
		etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "device_chain", DestRegister: 0, IsDestRegSet: true})
	if rs.Unknown != nil {
		managed.add("unknown device inside an offline interval", rejectInside("unknown_offline"))
		if hasProfile(rs, rs.Unknown.Profile) {
			managed.add("unknown device: profile "+rs.Unknown.Profile, gotoChain(profileChain(rs.Unknown.Profile)))
		}
	}
	d.chains = append(d.chains, managed)

	fwd := &chainSpec{chain: &nftables.Chain{Name: "forward", Table: d.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10), Policy: policy(nftables.ChainPolicyAccept)}}
	if len(rs.Devices) > 0 {
		// a LAN interface created anew has a new index: its rule changes
		fmt.Fprintf(sig, " online=%v", lanIndex)
		fwd.add("established flows of a device online now: counted, nothing else to check", onlineRule(rs.LAN, lanIndex))
	}
	if d.windDown {
		for _, lan := range rs.LAN {
			fwd.add("downloads to "+lan+" of a device that winds down: its limit", slowRule(lan))
		}
	}
	for _, lan := range rs.LAN {
		fwd.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "managed"})
	}
	d.chains = append(d.chains, fwd)
}

// renderDNS renders where DNS goes: each profile's devices to that
// profile's port of the DNS filter (or the router's resolver when there
// is no filter), so that the filter knows a query's profile from the port
// it arrives on, and a device offline now to the filter's port for
// offline devices. It adds the profiles' chains (dns_<profile>) and
// returns dns_redirect, which the caller adds after the prerouting
// pieces.
func renderDNS(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	dns := &chainSpec{chain: &nftables.Chain{Name: "dns_redirect", Table: d.table}}
	if port := rs.OfflineDNSPort; port != 0 {
		// A device offline now: the filter's port for offline devices,
		// decided here by MAC and time, so that the filter never judges
		// offline-ness by a source address a child can rebind (ARP).
		fmt.Fprintf(sig, " offline_dns=%d", port)
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			if len(rs.Devices) > 0 {
				dns.add(fmt.Sprintf("configured device inside an offline interval: the filter's port for devices offline now, %d", port),
					l4proto(proto), dport(53), offlineMatch(d, rs), redirectTo(port))
			}
			if rs.Unknown != nil {
				dns.add(fmt.Sprintf("unknown device inside an offline interval: the filter's port for devices offline now, %d", port),
					l4proto(proto), dport(53), unknownOfflineMatch(d, rs), redirectTo(port))
			}
		}
	}
	dns.add("configured device: its profile's resolver port",
		etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "dns_profile", DestRegister: 0, IsDestRegSet: true})
	if rs.Unknown != nil && hasProfile(rs, rs.Unknown.Profile) {
		dns.add("unknown device: profile "+rs.Unknown.Profile, gotoChain(dnsChain(rs.Unknown.Profile)))
	}
	for _, p := range rs.Profiles {
		port := p.DNSPort
		if port == 0 {
			port = rs.DNSPort
		}
		fmt.Fprintf(sig, " dns=%s:%d", p.ID, port)
		ch := &chainSpec{chain: &nftables.Chain{Name: dnsChain(p.ID), Table: d.table}}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			ch.add(fmt.Sprintf("profile %s: DNS to any resolver goes to the router, port %d", label(p), port), l4proto(proto), dport(53),
				redirectTo(port))
		}
		d.chains = append(d.chains, ch)
	}
	return dns
}

// renderPrerouting renders the NAT prerouting hook's chain, dns, which
// sends each LAN client through the flow limit, the bedtime page and the
// DNS redirect, in that order (adding the first two's parts).
func renderPrerouting(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	pre := &chainSpec{chain: &nftables.Chain{Name: "dns", Table: d.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-110), Policy: policy(nftables.ChainPolicyAccept)}}
	if d.windDown {
		for _, lan := range rs.LAN {
			pre.add("clients of "+lan+" that wind down: their new flows carry their id", markRule(lan))
		}
	}
	if flows := renderFlowLimit(d, rs, sig); flows != nil {
		d.chains = append(d.chains, flows)
		for _, lan := range rs.LAN {
			pre.add("clients of "+lan+": new connections, at most flow_limit a second each", ifname(expr.MetaKeyIIFNAME, lan),
				&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_limit"})
		}
	}
	if page := renderPage(d, rs, sig); page != nil {
		d.chains = append(d.chains, page)
		for _, lan := range rs.LAN {
			pre.add("clients of "+lan+": the bedtime page", ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "page"})
		}
	}
	for _, lan := range rs.LAN {
		pre.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "dns_redirect"})
	}
	return pre
}

// onlineUntil says whether a device with these offline intervals is
// online at now, and until when (the zero time: no offline instant ahead).
func onlineUntil(offline []firewall.Interval, now time.Time) (time.Time, bool) {
	var next time.Time
	for _, iv := range offline {
		if !iv.To.After(iv.From) {
			continue
		}
		if !now.Before(iv.From) && now.Before(iv.To) {
			return time.Time{}, false
		}
		if iv.From.After(now) && (next.IsZero() || iv.From.Before(next)) {
			next = iv.From
		}
	}
	return next, true
}

// onlineRule is the first rule of the forward hook: a packet of an
// established flow, leaving the LAN, from a device in the online set, is
// counted by that element and accepted at once. It is the same decision
// the device and profile chains would reach — online now (the element
// expires in the kernel at the device's next offline instant, daemon or
// not), and established flows were checked at their start — in one rule
// instead of six with two jumps; measured, that took the forwarding rate
// with curfew's table from about 0.89 to about 0.95 of the rate without
// it. Anything else goes the whole way through the chains below.
//
// The source MAC is read as raw link-layer bytes, without the link-type
// check that nft puts before `ether saddr`: in focused side-by-side runs
// the check cost 2-3% of the forwarding rate (the report's rule-by-rule
// table puts it within its error), and it guards nothing here. A
// packet without a link-layer header (a tunnel, PPP) fails the load and
// does not match; one with another kind of header could match a child's
// MAC only by chance, and would be accepted as an established flow, which
// the chains below accept too.
//
// "Not to the LAN" compares the output interface's index, not its name
// (in the same runs, the name, 16 bytes copied and compared, cost another
// 2-3%).
// OpenWrt's network restart creates br-lan anew with a new index; the
// daemon watches for that and applies again, and the new index changes
// this rule. Until then, a stale index only lets LAN-internal flows take
// the fast path too: accepted as the chains would, and counted as
// screen time. A LAN interface missing at render time is compared by
// name.
func onlineRule(lan []string, index map[string]uint32) []expr.Any {
	r := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
	for _, name := range lan {
		if i, ok := index[name]; ok {
			r = append(r, &expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(i)})
			continue
		}
		b := make([]byte, 16)
		copy(b, name)
		r = append(r, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: b})
	}
	r = append(r, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6})
	return append(r, &expr.Lookup{SourceRegister: 1, SetName: "online", DestRegister: 0, IsDestRegSet: true})
}

// configuredMax bounds the configured set and the sets only configured
// MACs can enter.
const configuredMax = 65536

// configuredSet adds, once, the plain set of configured device MACs that
// the bedtime page and the flow limit ask (a plain set: kernels before
// 6.12 refuse a lookup in the device_chain verdict map without its
// verdict).
func configuredSet(d *desired, rs *firewall.Ruleset) *setSpec {
	if d.configured != nil {
		return d.configured
	}
	s := &setSpec{set: &nftables.Set{
		Table: d.table, Name: "configured", Size: configuredMax, KeyType: nftables.TypeEtherAddr,
		Comment: "configured device MACs, for the bedtime page and the flow limit",
	}}
	s.elems = make([]nftables.SetElement, len(d.parts))
	for i, p := range d.parts {
		s.elems[i].Key = p.device.Key
	}
	d.sets = append(d.sets, s)
	d.configured = s
	return s
}

// renderPage sends the plain-HTTP requests (TCP 80, to any address but
// the router's own) of a managed device that is offline now to the
// daemon's bedtime page: phones and laptops probe a plain-HTTP address and
// show what answers as a "sign in to network" notification. "Offline now"
// is the kernel's own test against the offline intervals it holds, the
// same the forward hook uses: a configured device's in page_offline (MAC .
// time), an unknown one's in @unknown_offline. So the page starts and
// ends with the window to the second, daemon or not. (It asked @online
// before, which only the daemon refills: with the daemon dead, a child's
// plain HTTP stayed on a page nobody served after the window had ended.)
// One concatenated set serves every device here, unlike the forward hook's
// set per device: its lookup grows with its elements, but this rule sees
// only the first packet of a new connection to port 80. Nil when the page
// is off.
//
// Which devices are configured is asked of a plain set of their MACs
// (configured), not of the verdict map device_chain: older kernels refuse
// a lookup in a map without a destination register, and with it the
// whole table (EINVAL on Debian's 5.10 and 6.1; 6.12 takes it; the VM lab,
// scripts/vmlab, boots each). The set costs a hash element per
// configured device.
func renderPage(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	if rs.PagePort == 0 || (len(rs.Devices) == 0 && rs.Unknown == nil) {
		return nil
	}
	fmt.Fprintf(sig, " page=%d", rs.PagePort)
	t := d.table
	configuredSet(d, rs)
	redirect := redirectTo(rs.PagePort)
	page := &chainSpec{chain: &nftables.Chain{Name: "page", Table: t}}
	page.add("the router's own addresses (LuCI) stay what they are",
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictReturn})
	if len(rs.Devices) > 0 {
		page.add("configured device inside an offline interval: plain HTTP goes to the bedtime page",
			l4proto(unix.IPPROTO_TCP), dport(80), offlineMatch(d, rs), redirect)
	}
	if rs.Unknown != nil {
		page.add("unknown device inside an offline interval: plain HTTP goes to the bedtime page",
			l4proto(unix.IPPROTO_TCP), dport(80), unknownOfflineMatch(d, rs), redirect)
	}
	return page
}

// offlineMatch matches a configured device inside one of its offline
// intervals, for the NAT hook's redirects (the bedtime page, DNS): a
// lookup of ether saddr . meta time in the set "offline", which holds
// every configured device's intervals (added to d once). The forward
// hook asks a set per device instead (see render), since this set's
// lookup grows with its elements; the redirects see only a flow's first
// packet. The MAC goes in register 1 (6 bytes, padded to 8 with zeros by
// the kernel), the time in the 32-bit register after it (NFT_REG32_02),
// as nft lays out a concatenation; the set's ranges are inclusive.
func offlineMatch(d *desired, rs *firewall.Ruleset) []expr.Any {
	if d.offline == nil {
		s := &setSpec{set: &nftables.Set{Table: d.table, Name: "offline", Interval: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeTime),
			Comment: "offline intervals of the configured devices, for the bedtime page and DNS"}}
		s.pieces = make([][]nftables.SetElement, 0, len(d.parts))
		for _, p := range d.parts {
			if len(p.windows) > 0 {
				s.pieces = append(s.pieces, p.windows)
			}
		}
		d.sets = append(d.sets, s)
		d.offline = s
	}
	return append(etherSaddr(1),
		&expr.Meta{Key: metaTimeNS, Register: reg32(2)},
		&expr.Byteorder{SourceRegister: reg32(2), DestRegister: reg32(2), Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: "offline"})
}

// unknownOfflineMatch matches a device the config does not list inside one
// of @unknown_offline's intervals.
func unknownOfflineMatch(d *desired, rs *firewall.Ruleset) []expr.Any {
	configuredSet(d, rs)
	return append(etherSaddr(1), &expr.Lookup{SourceRegister: 1, SetName: "configured", Invert: true},
		&expr.Meta{Key: metaTimeNS, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Lookup{SourceRegister: 1, SetName: "unknown_offline"})
}

// flowLimitDevices bounds the flow_limit set of unknown devices, each
// with its own allowance: beyond this many seen in a minute (a child
// forging MACs) the others have only the allowance all unknown devices
// share. About 150 bytes of kernel memory each.
const flowLimitDevices = 4096

// flowDroppedFor is how long a flow_dropped element (a device's count of
// dropped connections) outlives its last drop: long enough for the
// daemon, which reads the counts every minute, to see each.
const flowDroppedFor = 10 * time.Minute

// renderFlowLimit limits how fast each LAN device opens connections, so
// that a child sending from forged addresses (each packet a new flow)
// cannot fill the kernel's connection table and cut everyone's new
// connections. It sits in the NAT prerouting hook, which the kernel runs
// for a flow's first packet only: established traffic never meets it,
// and a flow it drops was never confirmed, so it takes no entry.
//
// Each device gets a token bucket (a dynamic set element with a limit).
// A configured device's lives in flow_known, which only configured MACs
// can enter, so no flood of forged MACs can take it: the parents' phones
// keep opening connections whatever a child does. Unknown devices have
// their own buckets in flow_limit and, on top, one bucket they all share:
// forged MACs, however many, get one device's allowance together, and a
// MAC that does not fit in flow_limit has only that. Nil when the limit
// is off.
func renderFlowLimit(d *desired, rs *firewall.Ruleset, sig *strings.Builder) *chainSpec {
	if rs.FlowLimit <= 0 || len(rs.LAN) == 0 {
		return nil
	}
	fmt.Fprintf(sig, " flows=%d", rs.FlowLimit)
	t := d.table
	dynamic := func(name string, timeout time.Duration, size uint32, comment string) *setSpec {
		return &setSpec{dynamic: true, set: &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeEtherAddr,
			Dynamic: true, HasTimeout: true, Timeout: timeout, Size: size, Comment: comment}}
	}
	d.sets = append(d.sets,
		dynamic("flow_known", time.Minute, configuredMax, "configured devices that opened connections in the last minute, each with its allowance"),
		dynamic("flow_limit", time.Minute, flowLimitDevices, "unknown devices that opened connections in the last minute, each with its allowance"),
		dynamic("flow_dropped", flowDroppedFor, configuredMax, "configured devices that went over their allowance, with what was dropped"),
		dynamic("flow_dropped_unknown", flowDroppedFor, flowLimitDevices, "unknown devices that went over an allowance, with what was dropped"))
	limit := func() *expr.Limit {
		return &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rs.FlowLimit), Unit: expr.LimitTimeSecond,
			Burst: uint32(rs.FlowBurst), Over: true}
	}
	// What was dropped is counted per MAC, for the daemon to say so: a
	// parent whose device hits the limit must be able to find out why its
	// connections fail. The count and the drop are separate rules: an
	// update of a full set ends its rule, and the drop must not depend on
	// room for the count.
	over := func(name, dropped string) *chainSpec {
		ch := &chainSpec{chain: &nftables.Chain{Name: name, Table: t}}
		ch.add("count it for its MAC", etherSaddr(1),
			&expr.Dynset{SrcRegKey: 1, SetName: dropped, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{&expr.Counter{}}})
		ch.add("and drop it, counted or not", &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
		return ch
	}
	d.chains = append(d.chains, over("flow_over", "flow_dropped"), over("flow_over_unknown", "flow_dropped_unknown"))
	ch := &chainSpec{chain: &nftables.Chain{Name: "flow_limit", Table: t}}
	note := fmt.Sprintf("faster than %d a second (burst %d)", rs.FlowLimit, rs.FlowBurst)
	if len(rs.Devices) > 0 {
		configuredSet(d, rs)
		ch.add("a configured device opening new connections "+note, etherSaddr(1),
			&expr.Lookup{SourceRegister: 1, SetName: "configured"},
			&expr.Dynset{SrcRegKey: 1, SetName: "flow_known", Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{limit()}},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over"})
		// Not a lookup in flow_known: a lookup runs the element's limit
		// again and would charge each flow twice.
		ch.add("a configured device within its own allowance, which no other device can take", etherSaddr(1),
			&expr.Lookup{SourceRegister: 1, SetName: "configured"}, &expr.Verdict{Kind: expr.VerdictReturn})
	}
	ch.add("an unknown device opening new connections "+note, etherSaddr(1),
		&expr.Dynset{SrcRegKey: 1, SetName: "flow_limit", Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{limit()}},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over_unknown"})
	ch.add(fmt.Sprintf("unknown devices together, forged MACs among them, and those beyond the %d flow_limit holds: one allowance", flowLimitDevices),
		limit(), &expr.Verdict{Kind: expr.VerdictJump, Chain: "flow_over_unknown"})
	return ch
}

// renderGuard keeps the DNS filter's ports for the queries the redirect
// sent there: a query that reaches one of them without having been
// redirected (a child asking another profile's port directly, to be
// answered by looser rules) is dropped at input. Priority filter - 10,
// before fw4's input chain, whose accept of LAN traffic is not final
// for a drop of ours.
func renderGuard(d *desired, rs *firewall.Ruleset, sig *strings.Builder) {
	ports := firewall.FilterPorts(rs)
	if len(ports) == 0 {
		return
	}
	t := d.table
	fmt.Fprintf(sig, " guard=%v", ports)
	set := &setSpec{rebuild: true, set: &nftables.Set{Table: t, Name: "filter_ports", KeyType: nftables.TypeInetService,
		Comment: "ports of the DNS filter, one per profile and one for devices offline now"}}
	for _, p := range ports {
		set.elems = append(set.elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	d.sets = append(d.sets, set)
	guard := &chainSpec{chain: &nftables.Chain{Name: "filter_guard", Table: t}}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		guard.add("DNS filter port asked directly, not through the redirect", l4proto(proto),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: "filter_ports"},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	in := &chainSpec{chain: &nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(-10), Policy: policy(nftables.ChainPolicyAccept)}}
	for _, lan := range rs.LAN {
		in.add("clients of "+lan, ifname(expr.MetaKeyIIFNAME, lan), &expr.Verdict{Kind: expr.VerdictJump, Chain: "filter_guard"})
	}
	d.chains = append(d.chains, guard, in)
}

// ctStatusDNAT is IPS_DST_NAT: the flow's destination was rewritten (by
// our redirect, for DNS).
const ctStatusDNAT = 1 << 5

func hasProfile(rs *firewall.Ruleset, id string) bool {
	for _, p := range rs.Profiles {
		if p.ID == id {
			return true
		}
	}
	return false
}

func label(p firewall.Profile) string {
	if p.Name != "" && p.Name != p.ID {
		return p.ID + " (" + p.Name + ")"
	}
	return p.ID
}
