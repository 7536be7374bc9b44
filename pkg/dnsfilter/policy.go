package dnsfilter

import (
	"net/netip"
	"strconv"
	"strings"
)

// Action is what the filter does with a query.
type Action int

const (
	// Forward passes the query to the router's resolver.
	Forward Action = iota
	// Block answers with the null address (0.0.0.0 / ::) for A/AAAA and
	// an empty answer for other types, with a one-minute TTL: apps fail at
	// once, and a name blocked only during a window works again within a
	// minute of its end. (NXDOMAIN would be cached longer by some clients.)
	Block
	// NXDomain answers "no such name": the canary domains must say exactly
	// this to turn off browsers' own DNS-over-HTTPS.
	NXDomain
	// Rewrite answers with a CNAME to Target and that name's addresses
	// (safe search).
	Rewrite
	// Refuse answers REFUSED and forwards nothing: for names the filter
	// cannot read, and for an offline device's queries. Clients do not
	// cache it, so names work again the moment the device is back online.
	Refuse
)

// Decision is the filter's verdict on one name.
type Decision struct {
	Action Action
	// By says what decided, for the log and `curfew explain`: "service
	// tiktok", "list /etc/curfew/adult.txt", "safe search", "bypass: …".
	By string
	// Matched is the listed domain that matched (a parent of the query).
	Matched string
	// Target is the rewrite target.
	Target string
	// Bypass marks a resolver-bypass attempt (counted per device).
	Bypass bool
}

// Policy is one profile's DNS rules at one instant.
type Policy struct {
	Profile string
	// Block holds the profile's own blocked domains and services (and those
	// of block windows in force); Sources names each entry's origin.
	Block   *Set
	Sources []string
	// Lists are the profile's block lists, shared between profiles.
	Lists []*List
	// SafeSearch rewrites search engines to their safe hosts.
	SafeSearch bool
	// Allowlist lets only Allow resolve.
	Allowlist bool
	Allow     *Set
	// BypassPrevention blocks the canaries and DoH hosts.
	BypassPrevention bool
	// Limited are the services with an allowance today: true while their
	// time is counted (the addresses their names resolve to go to
	// Options.Learned), false once it is used up.
	Limited map[string]bool
}

// List is a loaded block list.
type List struct {
	Name string
	Set  *Set
}

// Canary domains: Firefox turns its own DoH off when
// use-application-dns.net does not resolve; iCloud Private Relay is off
// on a network where mask.icloud.com does not resolve.
var canaries = []string{"use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"}

// probeNames are the hosts that phones, laptops and consoles resolve to
// check for a captive portal, answered even for an offline device so that
// it can show curfew's page (and the names of the router itself, below).
// A fixed list of names carries no data out: a DNS tunnel needs names of
// its own choosing.
var probeNames = map[string]bool{
	"connectivitycheck.gstatic.com": true, "connectivitycheck.android.com": true,
	"clients3.google.com": true, "clients1.google.com": true, "www.google.com": true,
	"captive.apple.com": true, "www.apple.com": true,
	"www.msftconnecttest.com": true, "www.msftncsi.com": true, "dns.msftncsi.com": true,
	"detectportal.firefox.com": true, "nmcheck.gnome.org": true,
	"network-test.debian.org": true, "connectivity-check.ubuntu.com": true,
	"conntest.nintendo.wifi.net": true, "ctest.cdn.nintendo.net": true,
}

// localZones are answered by the router's own resolver (OpenWrt's dnsmasq
// has `local '/lan/'` and `boguspriv`), never forwarded to the internet.
var localZones = []string{"lan", "home.arpa", "localdomain",
	"10.in-addr.arpa", "168.192.in-addr.arpa", "d.f.ip6.arpa", "8.e.f.ip6.arpa"}

// offlineName reports whether an offline device may still resolve name:
// a captive-portal probe, a one-label name (the router, a printer) or a
// name in a local zone.
func offlineName(name string) bool {
	if probeNames[name] || !strings.Contains(name, ".") {
		return true
	}
	for _, z := range localZones {
		if name == z || strings.HasSuffix(name, "."+z) {
			return true
		}
	}
	// 16.172.in-addr.arpa … 31.172.in-addr.arpa
	if rest, ok := strings.CutSuffix(name, ".172.in-addr.arpa"); ok {
		octet := rest[strings.LastIndexByte(rest, '.')+1:]
		n, err := strconv.Atoi(octet)
		return err == nil && n >= 16 && n <= 31
	}
	return false
}

// DoHHosts are well-known DNS-over-HTTPS endpoints. Their names are blocked
// for managed devices; their published addresses are rejected in the kernel
// (DoHAddresses), so that a hard-coded resolver does not escape either.
var DoHHosts = []string{
	"dns.google", "dns.google.com", "cloudflare-dns.com", "mozilla.cloudflare-dns.com",
	"one.one.one.one", "1dot1dot1dot1.cloudflare-dns.com", "security.cloudflare-dns.com", "family.cloudflare-dns.com",
	"dns.quad9.net", "dns9.quad9.net", "dns10.quad9.net", "dns11.quad9.net",
	"doh.opendns.com", "doh.familyshield.opendns.com", "dns.nextdns.io", "doh.cleanbrowsing.org",
	"dns.adguard.com", "dns.adguard-dns.com", "family.adguard-dns.com", "doh.mullvad.net", "dns.mullvad.net",
	"doh.libredns.gr", "dns.controld.com", "freedns.controld.com", "chrome.cloudflare-dns.com",
}

// DoHAddresses are the published addresses of the public DNS-over-HTTPS
// services above. They are only ever used as kernel set elements (traffic
// from managed devices to them is rejected); curfew never sends anything
// to them.
var DoHAddresses = []string{
	"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
	"1.1.1.1", "1.0.0.1", "1.1.1.2", "1.0.0.2", "1.1.1.3", "1.0.0.3",
	"2606:4700:4700::1111", "2606:4700:4700::1001",
	"9.9.9.9", "149.112.112.112", "9.9.9.11", "149.112.112.11", "2620:fe::fe", "2620:fe::9",
	"208.67.222.222", "208.67.220.220", "208.67.222.123", "208.67.220.123", "2620:119:35::35", "2620:119:53::53",
	"94.140.14.14", "94.140.15.15", "94.140.14.15", "94.140.15.16", "2a10:50c0::ad1:ff", "2a10:50c0::ad2:ff",
	"185.228.168.168", "185.228.169.168", "185.228.168.9", "185.228.169.9",
	"194.242.2.2", "2a07:e340::2", "76.76.2.0", "76.76.10.0",
}

// DoHPrefixes returns DoHAddresses as host prefixes for the kernel.
func DoHPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(DoHAddresses))
	for _, s := range DoHAddresses {
		a := netip.MustParseAddr(s)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

var bypassSet = func() *Set {
	var b Builder
	for _, h := range DoHHosts {
		b.Add(h, 0)
	}
	return b.Build()
}()

// safeTargets maps search and video hosts to their safe-mode hosts, the
// values each provider documents for network-level enforcement.
var safeTargets = map[string]string{
	"www.bing.com":               "strict.bing.com",
	"bing.com":                   "strict.bing.com",
	"duckduckgo.com":             "safe.duckduckgo.com",
	"www.duckduckgo.com":         "safe.duckduckgo.com",
	"start.duckduckgo.com":       "safe.duckduckgo.com",
	"www.youtube.com":            "restrict.youtube.com",
	"m.youtube.com":              "restrict.youtube.com",
	"youtubei.googleapis.com":    "restrict.youtube.com",
	"youtube.googleapis.com":     "restrict.youtube.com",
	"www.youtube-nocookie.com":   "restrict.youtube.com",
	"youtube.com":                "restrict.youtube.com",
	"music.youtube.com":          "restrict.youtube.com",
	"www.google.com":             "forcesafesearch.google.com",
	"google.com":                 "forcesafesearch.google.com",
	"images.google.com":          "forcesafesearch.google.com",
	"safe.duckduckgo.com":        "",
	"forcesafesearch.google.com": "",
}

// safeSearch returns the safe host for name, if it is a search or video
// host: the table above, and Google's country domains (www.google.co.uk,
// google.de …).
func safeSearch(name string) (string, bool) {
	if t, ok := safeTargets[name]; ok {
		return t, t != ""
	}
	n := strings.TrimPrefix(name, "www.")
	if rest, ok := strings.CutPrefix(n, "google."); ok && rest != "" && strings.Count(rest, ".") <= 1 {
		return "forcesafesearch.google.com", true
	}
	return "", false
}

// Decide returns the verdict for a normalised query name.
func (p *Policy) Decide(name string) Decision {
	if p.BypassPrevention {
		for _, c := range canaries {
			if name == c {
				return Decision{Action: NXDomain, By: "bypass: DNS-over-HTTPS/relay canary", Matched: c, Bypass: true}
			}
		}
		if m, _, ok := bypassSet.Match(name); ok {
			return Decision{Action: Block, By: "bypass: DNS-over-HTTPS resolver", Matched: m, Bypass: true}
		}
	}
	if p.Allowlist {
		if m, _, ok := p.Allow.Match(name); ok {
			return Decision{Action: Forward, By: "allowlist", Matched: m}
		}
		return Decision{Action: Block, By: "not on the allowlist"}
	}
	if m, src, ok := p.Block.Match(name); ok {
		by := "blocked"
		if int(src) < len(p.Sources) {
			by = p.Sources[src]
		}
		return Decision{Action: Block, By: by, Matched: m}
	}
	for _, l := range p.Lists {
		if m, _, ok := l.Set.Match(name); ok {
			return Decision{Action: Block, By: "list " + l.Name, Matched: m}
		}
	}
	if p.SafeSearch {
		if t, ok := safeSearch(name); ok {
			return Decision{Action: Rewrite, By: "safe search", Target: t, Matched: name}
		}
	}
	return Decision{Action: Forward}
}
