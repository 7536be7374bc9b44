// Package config is the typed model of /etc/config/curfew and its
// validation.
//
// Validation reports every problem at once, each naming file:line, section
// and option, so that a parent fixing a file by hand sees the whole list in
// one `curfew check`. Unknown options are warnings, not errors: a config
// written for a newer curfew must still load on an older one.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"curfew/pkg/schedule"
	"curfew/pkg/uci"
)

// DefaultActiveThreshold is the bytes a minute that make it screen time:
// 16 KiB sent through the router (upstream; traffic inside the LAN and to
// the router itself does not count). An idle device in the lab sends
// nothing through the router (the e2e test checks it burns no budget);
// push keep-alives of an idle phone are a few hundred bytes a minute, far
// below; watching video at 3 Mbit/s sends about 60 KiB a minute of
// acknowledgements alone, and browsing or playing far more.
const DefaultActiveThreshold = 16 << 10

// DefaultPagePort is where the bedtime page listens on the LAN side.
const DefaultPagePort = 8099

// MaxRequestsPerDay bounds requests_per_day: each request is a line in
// the state file on flash and a message to the parents.
const MaxRequestsPerDay = 50

// DefaultFlowLimit is flow_limit's default: new connections a second per
// device. No app of a phone or laptop comes near it for long (a page
// opens tens at once, which the burst takes); a forged-source flood opens
// thousands a second.
const DefaultFlowLimit = 50

// MaxFlowLimit bounds flow_limit, and FlowBurst is the burst a device
// gets on top of its rate, in seconds' worth: 50 a second lets 1,000
// connections open at once.
const (
	MaxFlowLimit = 100000
	FlowBurst    = 20
)

// MaxNotify bounds the notify URLs: every event is sent to each.
const MaxNotify = 8

// NotifyEventNames are the events notify_events may select.
var NotifyEventNames = []string{"request", "new_device", "bypass", "budget_used", "enforcement_failed", "wind_down", "weekly_report"}

// DefaultNotifyEvents are the events sent without notify_events: all but
// wind_down (it comes every evening, and goes to a profile's own notify
// URLs anyway).
var DefaultNotifyEvents = []string{"request", "new_device", "bypass", "budget_used", "enforcement_failed", "weekly_report"}

// The weekly report's default time: Sunday evening, router time, when
// the week is over and the next one not yet begun.
const (
	DefaultReportDay  = time.Sunday
	DefaultReportTime = schedule.Clock(18 * 60)
)

// checkNotifyURL accepts http and https URLs with a host. Plain http is
// allowed: a home's webhook receiver (Home Assistant, a NAS) is often on
// the LAN without a certificate; the events carry no secrets.
func checkNotifyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid notify URL %q (want http:// or https:// with a host)", raw)
	}
	if len(raw) > 2048 {
		return fmt.Errorf("notify URL of %d bytes: at most 2048", len(raw))
	}
	return nil
}

// Config is a validated curfew configuration.
type Config struct {
	// File is the path it was read from.
	File    string
	Enabled bool
	// LAN lists the interfaces whose clients are managed.
	LAN []string
	// UnknownProfile is the profile for MACs not listed; empty means
	// unknown devices are unrestricted.
	UnknownProfile string
	// ClockUnsyncedOffline is true when managed devices stay offline until
	// the clock is trusted (clock_unsynced 'offline', the default).
	ClockUnsyncedOffline bool
	// Backend is auto, nftables or iptables.
	Backend string
	// DNSFilter turns the per-profile DNS filter on (default).
	DNSFilter bool
	// DNSUpstream is the router's own resolver the filter forwards to.
	DNSUpstream string
	// DNSPort is the filter's first port; profile i listens on DNSPort+i,
	// and the port after the last profile's is for devices offline now
	// (OfflineDNSPort).
	DNSPort uint16
	// BypassPrevention blocks DoH canaries, hosts and addresses (default).
	BypassPrevention bool
	// DoHAddresses overrides the built-in list of DoH resolver addresses.
	DoHAddresses []netip.Prefix
	// ActiveThreshold is how many bytes a profile's devices must send in a
	// minute for it to count as screen time.
	ActiveThreshold uint64
	// Page turns on the bedtime page: an offline device's plain-HTTP
	// requests (port 80) are answered by the daemon's page on PagePort,
	// where the child can ask for more time.
	Page     bool
	PagePort uint16
	// RequestsPerDay bounds a device's requests for more time per local
	// day; 0 turns asking off (the page still says why and until when).
	RequestsPerDay int
	// FlowLimit is how many new connections a second each LAN device may
	// open (with a burst of FlowBurst times that); 0 turns the limit off.
	// A device that opens flows faster, as a child forging source
	// addresses does, would otherwise fill the router's connection
	// table (16,384 entries on OpenWrt) and cut everyone's new
	// connections, the parents' too.
	FlowLimit int
	// Notify lists the URLs the daemon posts events to, and NotifyEvents
	// the events it posts (DefaultNotifyEvents by default).
	Notify       []string
	NotifyEvents []string
	// ReportDay and ReportTime are when the weekly report is sent, in
	// the router's zone.
	ReportDay  time.Weekday
	ReportTime schedule.Clock
	// WifiKeyFile is the key file the daemon writes for hostapd, and
	// HostapdDir where hostapd's control sockets are (wifi.go).
	WifiKeyFile string
	HostapdDir  string
	Profiles    []*Profile
	Devices     []*Device
	Schedules   []*Schedule
}

// Profile is a named set of rules shared by a child's devices.
type Profile struct {
	ID   string
	Name string
	// DailyLimit is the screen-time budget per local day; 0 means none.
	DailyLimit time.Duration
	// Block holds always-blocked destinations.
	Block        []Destination
	BlockService []string
	Blocklists   []string
	SafeSearch   bool
	Allowlist    bool
	Allow        []Destination
	// WindDown is how long before each of its offline windows the
	// profile's devices are slowed to WindDownRate (bits per second);
	// 0 means no wind-down.
	WindDown     time.Duration
	WindDownRate uint64
	// Notify are the profile's own URLs (a child's ntfy topic): they
	// hear that its devices wind down.
	Notify []string
	// ServiceLimits are the profile's daily allowances for single
	// services ("youtube 1h"), each on its days.
	ServiceLimits []ServiceLimit
	// WifiKeys are the profile's Wi-Fi passwords (wifi.go): the key a
	// device joined with outranks its MAC.
	WifiKeys []WifiKey
	Line     int
}

// ServiceLimit is a daily allowance for one catalogue service on some
// days of the week: on the other days the service is not limited.
type ServiceLimit struct {
	Service string
	Limit   time.Duration
	Days    schedule.Days
}

// DefaultWindDownRate slows a device enough that video drops in quality
// while messages and calls still work.
const DefaultWindDownRate = 1_000_000

// Destination is a blocked or allowed domain, address or prefix.
type Destination struct {
	// Domain is set for names (lower-case, no trailing dot) ...
	Domain string
	// ... and Prefix for addresses (a single address is a /32 or /128).
	Prefix netip.Prefix
}

func (d Destination) String() string {
	if d.Domain != "" {
		return d.Domain
	}
	if d.Prefix.IsSingleIP() {
		return d.Prefix.Addr().String()
	}
	return d.Prefix.String()
}

// Device is a child's device, known by its MAC.
type Device struct {
	MAC     net.HardwareAddr
	Name    string
	Profile string
	// Hostname is the device's DHCP host name, if the parent wrote it down
	// (curfew also learns it from the leases).
	Hostname string
	// MatchHostname makes any MAC that asks DHCP for this device's host name
	// count as this device: it follows a phone's new random MAC. Host names
	// are chosen by the device, so this is spoofable — a convenience, not
	// a lock.
	MatchHostname bool
	// WifiKey is set by the daemon, never read from the file: the
	// profile whose Wi-Fi key the device joined with.
	WifiKey string
	Line    int
}

// Action is what a schedule window does.
type Action string

const (
	// ActionOffline cuts the internet for the window's profiles.
	ActionOffline Action = "offline"
	// ActionBlock blocks only the section's own destinations in the window.
	ActionBlock Action = "block"
)

// Schedule is a named weekly window for one or more profiles.
type Schedule struct {
	ID           string
	Profiles     []string
	Window       schedule.Window
	Action       Action
	Block        []Destination
	BlockService []string
	// WindDown, when set, replaces its profiles' wind-down before this
	// schedule's windows (0: none).
	WindDown *time.Duration
	Line     int
}

// WindDownFor is how long before a window of s the devices of profile p
// are slowed.
func (s *Schedule) WindDownFor(p *Profile) time.Duration {
	if s.Action != ActionOffline {
		return 0
	}
	if s.WindDown != nil {
		return *s.WindDown
	}
	return p.WindDown
}

// Label names the schedule for people: its section name, or its line.
func (s *Schedule) Label() string {
	if s.ID != "" {
		return s.ID
	}
	return fmt.Sprintf("@line%d", s.Line)
}

// Profile returns the profile with the given id, or nil.
func (c *Config) Profile(id string) *Profile {
	for _, p := range c.Profiles {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// OfflineDNSPort is where the kernel sends the DNS of a device that is
// offline now, whatever its profile: the filter there answers only the
// names an offline device needs (captive-portal probes, local names). The
// kernel decides it by the device's MAC and its offline intervals, so the
// filter never has to tell from a source address whose query it is.
func (c *Config) OfflineDNSPort() uint16 { return c.DNSPort + uint16(len(c.Profiles)) }

// Diag is one problem found in the config.
type Diag struct {
	File    string
	Line    int
	Section string
	Option  string
	Msg     string
}

func (d Diag) String() string {
	d.Msg = uci.Clip(d.Msg) // it may quote a value of any length
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:", d.File, d.Line)
	if d.Section != "" {
		fmt.Fprintf(&b, " section %s", d.Section)
	}
	if d.Option != "" {
		fmt.Fprintf(&b, " option '%s'", d.Option)
	}
	if d.Section != "" || d.Option != "" {
		b.WriteString(":")
	}
	b.WriteString(" " + d.Msg)
	return b.String()
}

// Errors is every error found in a config.
type Errors []Diag

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, d := range e {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates a config file. On failure the error is a
// *uci.Error (syntax) or Errors (every semantic problem); warnings are
// returned in both cases.
func Load(path string, services ServiceCatalogue) (*Config, []Diag, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	// read at most one byte past the limit: a huge file is refused before
	// it is in memory; a buffer of the file's size, not one grown by
	// doubling (a 3 MB file took 7 MB that way)
	size := 512
	if st, err := f.Stat(); err == nil && st.Size() < MaxFileSize {
		size = int(st.Size()) + 1 // +1: EOF is seen without growing
	}
	src, err := readAll(io.LimitReader(f, MaxFileSize+1), size)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	if len(src) > MaxFileSize {
		return nil, nil, Errors{{File: path, Line: 1, Msg: fmt.Sprintf("the file is larger than %d MB, curfew's limit for a config file (long block lists belong in a blocklist file)", MaxFileSize>>20)}}
	}
	return Parse(path, src, services)
}

// readAll is io.ReadAll into a buffer of size bytes to begin with.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// MaxFileSize bounds a config file: 100,000 blocked prefixes take about
// 3 MB; past 16 MB a file is a mistake or an attack on a router's memory.
const MaxFileSize = 16 << 20

// Restricted reports whether a profile has any rule at all (blocks, lists,
// safe search, allowlist, a daily limit, a schedule). Profiles without one
// (a parent's) are left out of the DNS filter and the resolver-bypass rules.
func (c *Config) Restricted(p *Profile) bool {
	if len(p.Block) > 0 || len(p.BlockService) > 0 || len(p.Blocklists) > 0 || p.SafeSearch || p.Allowlist || p.DailyLimit > 0 || len(p.ServiceLimits) > 0 {
		return true
	}
	for _, sc := range c.Schedules {
		for _, id := range sc.Profiles {
			if id == p.ID {
				return true
			}
		}
	}
	return false
}

// Problems lists the problems behind a Load or Parse error, one line each,
// in the form `file:line: section 'x' option 'y': what is wrong`.
func Problems(err error) []string {
	var errs Errors
	if errors.As(err, &errs) {
		lines := make([]string, len(errs))
		for i, d := range errs {
			lines[i] = d.String()
		}
		return lines
	}
	return []string{err.Error()}
}

// ServiceCatalogue reports whether a block_service name is known.
type ServiceCatalogue interface {
	Has(name string) bool
}

// Parse validates src as the curfew config named path.
func Parse(path string, src []byte, services ServiceCatalogue) (*Config, []Diag, error) {
	f, err := uci.Parse(path, src)
	if err != nil {
		return nil, nil, err
	}
	v := &validator{file: path, services: services}
	c := v.build(f)
	if len(v.errs) > 0 {
		return nil, v.warns, v.errs
	}
	return c, v.warns, nil
}

type validator struct {
	file     string
	services ServiceCatalogue
	errs     Errors
	warns    []Diag
}

func sectionLabel(s *uci.Section) string {
	if s.Name != "" {
		return "'" + s.Name + "'"
	}
	return fmt.Sprintf("@%s (line %d)", s.Type, s.Line)
}

func (v *validator) errorf(s *uci.Section, o *uci.Option, format string, args ...any) {
	d := Diag{File: v.file, Line: s.Line, Section: sectionLabel(s), Msg: fmt.Sprintf(format, args...)}
	if o != nil {
		d.Line, d.Option = o.Line, o.Name
	}
	v.errs = append(v.errs, d)
}

// number reads option name of s, a number from lo to hi written one way
// only: decimal digits, no sign, no leading zero. "+5", "05" and "016384"
// are refused, as each option once read them differently; what and want
// word the message ("invalid port "80" (want 1024 to 65535)").
func (v *validator) number(s *uci.Section, name, what string, lo, hi uint64, want string) (uint64, bool) {
	o, ok := s.Get(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(o.Value, 10, 64)
	if err != nil || n < lo || n > hi || strconv.FormatUint(n, 10) != o.Value {
		v.errorf(s, o, "invalid %s %q (want %s)", what, o.Value, want)
		return 0, false
	}
	return n, true
}

func (v *validator) warnf(s *uci.Section, o *uci.Option, format string, args ...any) {
	d := Diag{File: v.file, Line: s.Line, Section: sectionLabel(s), Msg: fmt.Sprintf(format, args...)}
	if o != nil {
		d.Line, d.Option = o.Line, o.Name
	}
	v.warns = append(v.warns, d)
}

// known lists the options each section type understands and whether each
// is a list. Values given with the other keyword are accepted, as libuci
// does, except that a repeated `option` keeps only its last value.
var known = map[string]map[string]bool{
	"curfew": {"enabled": false, "lan": true, "unknown_profile": false, "clock_unsynced": false, "backend": false,
		"dns_filter": false, "dns_upstream": false, "dns_port": false, "bypass_prevention": false, "doh_address": true, "active_threshold": false,
		"page": false, "page_port": false, "requests_per_day": false, "flow_limit": false, "notify": true, "notify_events": true,
		"report_day": false, "report_time": false, "wifi_key_file": false, "hostapd_dir": false},
	"profile": {"name": false, "daily_limit": false, "block": true, "block_service": true, "service_limit": true, "blocklist": true, "safesearch": false, "allowlist": false, "allow": true,
		"wind_down": false, "wind_down_rate": false, "notify": true, "wifi_key": true},
	"device":   {"mac": false, "name": false, "profile": false, "hostname": false, "match_hostname": false},
	"schedule": {"profile": true, "days": true, "start": false, "stop": false, "action": false, "block": true, "block_service": true, "wind_down": false},
}

// values returns every value of name in s: all list entries, or the last
// option (libuci semantics).
func values(s *uci.Section, name string) []*uci.Option {
	n := 0
	for _, o := range s.Options {
		if o.Name == name {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	// sized once: a list of 100,000 entries grown by appending costs five
	// times its size
	out := make([]*uci.Option, 0, n)
	for _, o := range s.Options {
		if o.Name != name {
			continue
		}
		if !o.List {
			out = out[:0]
		}
		out = append(out, o)
	}
	return out
}

func (v *validator) bool(s *uci.Section, name string, def bool) bool {
	o, ok := s.Get(name)
	if !ok {
		return def
	}
	switch o.Value {
	case "1", "on", "true", "yes", "enabled":
		return true
	case "0", "off", "false", "no", "disabled":
		return false
	}
	v.errorf(s, o, "invalid boolean %q (want 1 or 0)", o.Value)
	return def
}

func (v *validator) build(f *uci.File) *Config {
	c := &Config{File: v.file, Enabled: true, ClockUnsyncedOffline: true, Backend: "auto",
		DNSFilter: true, DNSUpstream: "127.0.0.1:53", DNSPort: 5353 + 100, BypassPrevention: true,
		ActiveThreshold: DefaultActiveThreshold, Page: true, PagePort: DefaultPagePort, RequestsPerDay: 5, FlowLimit: DefaultFlowLimit,
		NotifyEvents: DefaultNotifyEvents, ReportDay: DefaultReportDay, ReportTime: DefaultReportTime,
		WifiKeyFile: DefaultWifiKeyFile, HostapdDir: DefaultHostapdDir}
	var mains int
	for _, s := range f.Sections {
		opts, ok := known[s.Type]
		if !ok {
			v.warnf(s, nil, "unknown section type %q ignored", s.Type)
			continue
		}
		for _, o := range s.Options {
			if _, ok := opts[o.Name]; !ok {
				v.warnf(s, o, "unknown option ignored")
			}
			if n := strings.Count(o.Value, "\n"); n > 0 {
				v.errorf(s, o, "the value runs over %d more line(s): is its closing quote missing?", n)
			}
		}
		switch s.Type {
		case "curfew":
			mains++
			if mains > 1 {
				v.errorf(s, nil, "a second 'curfew' section; merge it into the first")
				continue
			}
			v.main(c, s)
		case "profile":
			if p := v.profile(s); p != nil {
				if c.Profile(p.ID) != nil {
					v.errorf(s, nil, "profile %q defined twice", p.ID)
					continue
				}
				c.Profiles = append(c.Profiles, p)
			}
		case "device":
			c.Devices = append(c.Devices, v.device(s))
		case "schedule":
			c.Schedules = append(c.Schedules, v.schedule(s))
		}
	}
	for _, line := range f.NULLines {
		v.warns = append(v.warns, Diag{File: v.file, Line: line, Msg: "a NUL byte: the rest of this line is ignored, as libuci ignores it (is the file damaged?)"})
	}
	v.crossCheck(c, f)
	if len(c.Devices) == 0 && c.UnknownProfile == "" && !c.HasWifiKeys() {
		v.warns = append(v.warns, Diag{File: v.file, Line: 1, Msg: "nothing is managed: no device sections, no unknown_profile and no Wi-Fi keys (see examples/curfew.conf)"})
	}
	return c
}

// main reads the 'curfew' section, feature by feature.
func (v *validator) main(c *Config, s *uci.Section) {
	v.mainDevices(c, s)
	v.mainDNS(c, s)
	v.mainPage(c, s)
	v.mainNotify(c, s)
	v.mainKernel(c, s)
	v.mainWifi(c, s)
}

// mainDevices reads who is managed: enabled, the LAN interfaces, the
// profile of devices not listed, and what a clock not yet synchronised
// means.
func (v *validator) mainDevices(c *Config, s *uci.Section) {
	c.Enabled = v.bool(s, "enabled", true)
	for _, o := range values(s, "lan") {
		if o.Value == "" || strings.ContainsAny(o.Value, " /") || len(o.Value) > 15 {
			v.errorf(s, o, "invalid interface name %q", o.Value)
			continue
		}
		c.LAN = append(c.LAN, o.Value)
	}
	if len(c.LAN) == 0 {
		c.LAN = []string{"br-lan"}
	}
	if o, ok := s.Get("unknown_profile"); ok {
		c.UnknownProfile = o.Value
	}
	if c.UnknownProfile == "" {
		// Not an error (a house without children's rules for visitors may
		// want it), but the one setting that lets a new MAC out.
		v.warnf(s, nil, "unknown_profile is empty: devices not listed here — a child's phone with a new random MAC among them — are not restricted")
	}
	if o, ok := s.Get("clock_unsynced"); ok {
		switch o.Value {
		case "offline":
		case "online":
			c.ClockUnsyncedOffline = false
		default:
			v.errorf(s, o, "invalid value %q (want offline or online)", o.Value)
		}
	}
}

// mainDNS reads the DNS filter's options.
func (v *validator) mainDNS(c *Config, s *uci.Section) {
	c.DNSFilter = v.bool(s, "dns_filter", true)
	c.BypassPrevention = v.bool(s, "bypass_prevention", true)
	if o, ok := s.Get("dns_upstream"); ok {
		if _, err := netip.ParseAddrPort(o.Value); err != nil {
			v.errorf(s, o, "invalid resolver address %q (want e.g. 127.0.0.1:53)", o.Value)
		} else {
			c.DNSUpstream = o.Value
		}
	}
	if n, ok := v.number(s, "dns_port", "port", 1024, 65000, "1024 to 65000; each profile takes the next one"); ok {
		c.DNSPort = uint16(n)
	}
	for _, o := range values(s, "doh_address") {
		d, err := ParseDestination(o.Value)
		if err != nil || d.Domain != "" || !d.Prefix.IsSingleIP() {
			v.errorf(s, o, "invalid address %q (want an IPv4 or IPv6 address)", o.Value)
			continue
		}
		c.DoHAddresses = append(c.DoHAddresses, d.Prefix)
	}
}

// mainPage reads the bedtime page's options and how often a child may
// ask.
func (v *validator) mainPage(c *Config, s *uci.Section) {
	c.Page = v.bool(s, "page", true)
	if n, ok := v.number(s, "page_port", "port", 1024, 65535, "1024 to 65535"); ok {
		c.PagePort = uint16(n)
	}
	if n, ok := v.number(s, "requests_per_day", "count", 0, MaxRequestsPerDay, fmt.Sprintf("0 to %d; 0 turns asking off", MaxRequestsPerDay)); ok {
		c.RequestsPerDay = int(n)
	}
}

// notifyURLs reads a section's notify URLs: the parents' (main) or a
// child's (profile).
func (v *validator) notifyURLs(s *uci.Section) []string {
	var urls []string
	for _, o := range values(s, "notify") {
		if err := checkNotifyURL(o.Value); err != nil {
			v.errorf(s, o, "%v", err)
			continue
		}
		urls = append(urls, o.Value)
	}
	if len(urls) > MaxNotify {
		v.errorf(s, nil, "%d notify URLs: at most %d", len(urls), MaxNotify)
	}
	return urls
}

// mainNotify reads where and what the parents are told.
func (v *validator) mainNotify(c *Config, s *uci.Section) {
	c.Notify = v.notifyURLs(s)
	if evs := values(s, "notify_events"); len(evs) > 0 {
		c.NotifyEvents = nil
		for _, o := range evs {
			for _, ev := range strings.Fields(o.Value) {
				if !slices.Contains(NotifyEventNames, ev) {
					v.errorf(s, o, "unknown event %q (want %s)", ev, strings.Join(NotifyEventNames, ", "))
					continue
				}
				if !slices.Contains(c.NotifyEvents, ev) {
					c.NotifyEvents = append(c.NotifyEvents, ev)
				}
			}
		}
	}
	v.reportWhen(c, s)
}

// reportWhen reads when the weekly report is sent: one day of the week
// and a time of day.
func (v *validator) reportWhen(c *Config, s *uci.Section) {
	if o, ok := s.Get("report_day"); ok {
		days, err := schedule.ParseDays(o.Value)
		var one []time.Weekday
		for w := time.Sunday; w <= time.Saturday; w++ {
			if err == nil && days.Has(w) {
				one = append(one, w)
			}
		}
		if len(one) != 1 {
			v.errorf(s, o, "invalid report day %q (want one day: sun, mon, tue, wed, thu, fri or sat)", o.Value)
		} else {
			c.ReportDay = one[0]
		}
	}
	if o, ok := s.Get("report_time"); ok {
		if t, err := schedule.ParseClock(o.Value); err != nil {
			v.errorf(s, o, "invalid report time %q (want HH:MM)", o.Value)
		} else {
			c.ReportTime = t
		}
	}
}

// mainKernel reads what the kernel is asked for beyond the rules: screen
// time's threshold, the new-connection limit, the backend.
func (v *validator) mainKernel(c *Config, s *uci.Section) {
	if n, ok := v.number(s, "active_threshold", "byte count", 1, math.MaxUint64, "e.g. 16384"); ok {
		c.ActiveThreshold = n
	}
	if n, ok := v.number(s, "flow_limit", "rate", 0, MaxFlowLimit,
		fmt.Sprintf("new connections a second per device, 1 to %d; 0 turns the limit off", MaxFlowLimit)); ok {
		c.FlowLimit = int(n)
	}
	if o, ok := s.Get("backend"); ok {
		switch o.Value {
		case "auto", "nftables", "iptables":
			c.Backend = o.Value
		default:
			v.errorf(s, o, "invalid backend %q (want auto, nftables or iptables)", o.Value)
		}
	}
}

func (v *validator) profile(s *uci.Section) *Profile {
	if s.Name == "" {
		v.errorf(s, nil, "a profile must be named: write config profile 'alice'")
		return nil
	}
	p := &Profile{ID: s.Name, Name: s.Name, Line: s.Line}
	if o, ok := s.Get("name"); ok && o.Value != "" {
		p.Name = o.Value
	}
	if o, ok := s.Get("daily_limit"); ok {
		d, err := ParseDuration(o.Value)
		if err != nil || d <= 0 || d > 24*time.Hour {
			v.errorf(s, o, "invalid duration %q (want e.g. 90m, 1h30m, at most 24h)", o.Value)
		}
		p.DailyLimit = d
	}
	p.Block = v.destinations(s, "block")
	p.Allow = v.destinations(s, "allow")
	p.BlockService = v.serviceNames(s)
	p.ServiceLimits = v.serviceLimits(s, p.BlockService)
	for _, o := range values(s, "blocklist") {
		if strings.HasPrefix(o.Value, "http://") {
			// A list decides what a child can reach: over plain http
			// anyone on the way can rewrite it.
			v.errorf(s, o, "blocklist %q is plain http; use an https URL or a local file", o.Value)
			continue
		}
		if !strings.HasPrefix(o.Value, "/") && !strings.HasPrefix(o.Value, "https://") {
			v.errorf(s, o, "invalid blocklist %q (want an absolute file path or an https URL)", o.Value)
			continue
		}
		p.Blocklists = append(p.Blocklists, o.Value)
	}
	if d, ok := v.windDown(s); ok {
		p.WindDown = d
	}
	p.WindDownRate = DefaultWindDownRate
	if o, ok := s.Get("wind_down_rate"); ok {
		r, err := ParseRate(o.Value)
		if err != nil || r < 64_000 || r > 1_000_000_000 {
			v.errorf(s, o, "invalid rate %q (want e.g. 1mbit or 512kbit, from 64kbit to 1000mbit)", o.Value)
		}
		p.WindDownRate = r
	}
	p.Notify = v.notifyURLs(s)
	p.SafeSearch = v.bool(s, "safesearch", false)
	p.Allowlist = v.bool(s, "allowlist", false)
	v.wifiKeys(s, p)
	if p.Allowlist && len(p.Allow) == 0 {
		v.warnf(s, nil, "allowlist is on but nothing is allowed: every destination is blocked")
	}
	return p
}

// serviceLimits reads a profile's "list service_limit 'youtube 1h
// [days]'" entries. Two for one service may not share a day; a service
// the profile blocks outright gets a warning, as its limit never applies.
func (v *validator) serviceLimits(s *uci.Section, blocked []string) []ServiceLimit {
	var out []ServiceLimit
	for _, o := range values(s, "service_limit") {
		f := strings.Fields(o.Value)
		if len(f) < 2 {
			v.errorf(s, o, "invalid service_limit %q (want a service and a duration, e.g. 'youtube 1h' or 'roblox 30m weekdays')", o.Value)
			continue
		}
		name := strings.ToLower(f[0])
		if v.services != nil && !v.services.Has(name) {
			v.errorf(s, o, "unknown service %q (see curfew services)", f[0])
			continue
		}
		d, err := ParseDuration(f[1])
		if err != nil || d < time.Minute || d > 24*time.Hour {
			v.errorf(s, o, "invalid duration %q in service_limit (want e.g. 30m, 1h30m, from 1m to 24h)", f[1])
			continue
		}
		days := schedule.AllDays
		if len(f) > 2 {
			if days, err = schedule.ParseDays(strings.Join(f[2:], " ")); err != nil {
				v.errorf(s, o, "service_limit %q: %v", o.Value, err)
				continue
			}
		}
		clash := false
		for _, l := range out {
			if l.Service == name && l.Days&days != 0 {
				v.errorf(s, o, "service_limit %q: %s already has a limit on %s", o.Value, name, l.Days&days)
				clash = true
			}
		}
		if clash {
			continue
		}
		if slices.Contains(blocked, name) {
			v.warnf(s, o, "service %s is both blocked (block_service) and limited: it stays blocked, the limit never applies", name)
		}
		out = append(out, ServiceLimit{Service: name, Limit: d, Days: days})
	}
	return out
}

func (v *validator) serviceNames(s *uci.Section) []string {
	var out []string
	for _, o := range values(s, "block_service") {
		name := strings.ToLower(o.Value)
		if v.services != nil && !v.services.Has(name) {
			v.errorf(s, o, "unknown service %q (see curfew services)", o.Value)
			continue
		}
		out = append(out, name)
	}
	return out
}

func (v *validator) destinations(s *uci.Section, name string) []Destination {
	vals := values(s, name)
	if len(vals) == 0 {
		return nil
	}
	out := make([]Destination, 0, len(vals))
	for _, o := range vals {
		d, err := ParseDestination(o.Value)
		if err != nil {
			v.errorf(s, o, "%v", err)
			continue
		}
		out = append(out, d)
	}
	return out
}

func (v *validator) device(s *uci.Section) *Device {
	d := &Device{Line: s.Line}
	if o, ok := s.Get("mac"); !ok {
		v.errorf(s, nil, "missing option 'mac'")
	} else if mac, err := ParseDeviceMAC(o.Value); err != nil {
		v.errorf(s, o, "%v", err)
	} else {
		d.MAC = mac
	}
	if o, ok := s.Get("name"); ok {
		d.Name = o.Value
	}
	if o, ok := s.Get("profile"); ok {
		d.Profile = o.Value
	} else {
		v.errorf(s, nil, "missing option 'profile'")
	}
	if o, ok := s.Get("hostname"); ok {
		d.Hostname = o.Value
	}
	d.MatchHostname = v.bool(s, "match_hostname", false)
	return d
}

func (v *validator) schedule(s *uci.Section) *Schedule {
	sc := &Schedule{ID: s.Name, Line: s.Line, Action: ActionOffline}
	for _, o := range values(s, "profile") {
		sc.Profiles = append(sc.Profiles, strings.Fields(o.Value)...)
	}
	if len(sc.Profiles) == 0 {
		v.errorf(s, nil, "missing option 'profile'")
	}
	days := values(s, "days")
	if len(days) == 0 {
		sc.Window.Days = schedule.AllDays
	}
	for _, o := range days {
		d, err := schedule.ParseDays(o.Value)
		if err != nil {
			v.errorf(s, o, "%v", err)
		}
		sc.Window.Days |= d
	}
	start, okStart := v.clock(s, "start")
	stop, okStop := v.clock(s, "stop")
	sc.Window.Start, sc.Window.Stop = start, stop
	if okStart && okStop && start == stop {
		o, _ := s.Get("stop")
		v.errorf(s, o, "start and stop are both %s: a window needs a length", start)
	}
	if okStart && start == 24*60 {
		o, _ := s.Get("start")
		v.errorf(s, o, "start 24:00 is not a time of day (use 00:00 on the next day)")
	}
	if o, ok := s.Get("action"); ok {
		switch Action(o.Value) {
		case ActionOffline, ActionBlock:
			sc.Action = Action(o.Value)
		default:
			v.errorf(s, o, "unknown action %q (want offline or block)", o.Value)
		}
	}
	sc.Block = v.destinations(s, "block")
	sc.BlockService = v.serviceNames(s)
	if sc.Action == ActionBlock && len(sc.Block) == 0 && len(sc.BlockService) == 0 {
		v.warnf(s, nil, "action 'block' without block or block_service entries does nothing")
	}
	if d, ok := v.windDown(s); ok {
		sc.WindDown = &d
		if sc.Action != ActionOffline && d > 0 {
			o, _ := s.Get("wind_down")
			v.warnf(s, o, "wind_down slows devices before an offline window; this schedule's action is %s", sc.Action)
		}
	}
	return sc
}

// windDown reads option wind_down: a duration up to two hours, or 0 for
// none.
func (v *validator) windDown(s *uci.Section) (time.Duration, bool) {
	o, ok := s.Get("wind_down")
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(o.Value)
	if err != nil || d < 0 || d > 2*time.Hour || (d > 0 && d < time.Minute) {
		v.errorf(s, o, "invalid wind_down %q (want e.g. 10m, from 1m to 2h, or 0 for none)", o.Value)
		return 0, false
	}
	return d, true
}

func (v *validator) clock(s *uci.Section, name string) (schedule.Clock, bool) {
	o, ok := s.Get(name)
	if !ok {
		v.errorf(s, nil, "missing option '%s'", name)
		return 0, false
	}
	c, err := schedule.ParseClock(o.Value)
	if err != nil {
		v.errorf(s, o, "%v", err)
		return 0, false
	}
	return c, true
}

// windDowns warns of a profile's wind_down that no offline window uses,
// and of one for devices not in the config, which are not wound down.
func (v *validator) windDowns(c *Config, byLine map[int]*uci.Section) {
	for _, p := range c.Profiles {
		if p.WindDown == 0 {
			continue
		}
		o, _ := byLine[p.Line].Get("wind_down")
		used := false
		for _, sc := range c.Schedules {
			used = used || slices.Contains(sc.Profiles, p.ID) && sc.WindDownFor(p) > 0
		}
		if !used {
			v.warnf(byLine[p.Line], o, "wind_down does nothing: no offline schedule of profile %s winds down", p.ID)
		} else if c.UnknownProfile == p.ID {
			v.warnf(byLine[p.Line], o, "devices not in the config (unknown_profile) are not wound down, only cut at the window")
		}
	}
}

// crossCheck validates references between sections.
func (v *validator) crossCheck(c *Config, f *uci.File) {
	byLine := map[int]*uci.Section{}
	for _, s := range f.Sections {
		byLine[s.Line] = s
	}
	opt := func(line int, name string) *uci.Option {
		o, _ := byLine[line].Get(name)
		return o
	}
	if c.Page && c.DNSFilter && c.PagePort >= c.DNSPort && c.PagePort <= c.OfflineDNSPort() {
		for _, s := range f.Sections {
			if o, ok := s.Get("page_port"); ok && s.Type == "curfew" {
				v.errorf(s, o, "port %d is one of the DNS filter's ports (dns_port %d, one per profile and then one for devices offline now); choose another", c.PagePort, c.DNSPort)
			}
		}
	}
	v.windDowns(c, byLine)
	v.crossCheckWifi(c, byLine)
	if c.UnknownProfile != "" && c.Profile(c.UnknownProfile) == nil {
		for _, s := range f.Sections {
			if s.Type == "curfew" {
				v.errorf(s, opt(s.Line, "unknown_profile"), "unknown profile %q", c.UnknownProfile)
				break
			}
		}
	}
	seen := map[string]int{}
	// Names are how a parent says which device (`curfew pause NAME`,
	// status, notifications), compared without case: two devices of one
	// name would make each of those mean both.
	names := map[string]int{}
	for _, d := range c.Devices {
		s := byLine[d.Line]
		if d.Profile != "" && c.Profile(d.Profile) == nil {
			v.errorf(s, opt(d.Line, "profile"), "unknown profile %q", d.Profile)
		}
		if d.Name != "" {
			key := strings.ToLower(d.Name)
			if first, dup := names[key]; dup {
				v.errorf(s, opt(d.Line, "name"), "name %q is already used by the device at line %d: give each device its own name", d.Name, first)
			} else {
				names[key] = d.Line
			}
			for _, p := range c.Profiles {
				if strings.EqualFold(p.ID, d.Name) {
					v.warnf(s, opt(d.Line, "name"), "name %q is also profile %q's id: `curfew pause %s` means the whole profile; the device alone is paused by its MAC", d.Name, p.ID, p.ID)
				}
			}
		}
		if d.MAC == nil {
			continue
		}
		key := d.MAC.String()
		if first, dup := seen[key]; dup {
			v.errorf(s, opt(d.Line, "mac"), "MAC %s is already used by the device at line %d", key, first)
			continue
		}
		seen[key] = d.Line
	}
	for _, sc := range c.Schedules {
		s := byLine[sc.Line]
		for _, p := range sc.Profiles {
			if c.Profile(p) == nil {
				o := values(s, "profile")
				var po *uci.Option
				if len(o) > 0 {
					po = o[0]
				}
				v.errorf(s, po, "unknown profile %q", p)
			}
		}
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
}

// ParseMAC parses a 48-bit MAC address written with colons or dashes.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("invalid MAC address %q (want aa:bb:cc:dd:ee:ff)", s)
	}
	return mac, nil
}

// ParseDeviceMAC is ParseMAC for the address of one device: the all-zero
// address and group addresses (multicast, broadcast: the first octet's
// lowest bit set) belong to no device, so a rule for them would silently
// match nothing. Locally administered (random) addresses are devices.
func ParseDeviceMAC(s string) (net.HardwareAddr, error) {
	mac, err := ParseMAC(s)
	if err != nil {
		return nil, err
	}
	switch {
	case mac.String() == "00:00:00:00:00:00":
		return nil, fmt.Errorf("MAC address %q is all zeros, no device's address", s)
	case mac.String() == "ff:ff:ff:ff:ff:ff":
		return nil, fmt.Errorf("MAC address %q is the broadcast address, no device's address", s)
	case mac[0]&1 == 1:
		return nil, fmt.Errorf("MAC address %q is a multicast address (first octet odd), no device's address", s)
	}
	return mac, nil
}

// ParseDuration parses durations as parents write them: 90m, 1h30m, 2h, 45s.
// A bare number means minutes.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if strings.Trim(s, "0123456789") == "" {
		s += "m"
	}
	d, err := time.ParseDuration(s)
	if err != nil || strings.ContainsAny(s, "-+") {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30m or 1h30m)", s)
	}
	return d, nil
}

// ParseRate parses a rate as tc writes it, in bits per second: 1mbit,
// 512kbit, 1.5mbit.
func ParseRate(s string) (uint64, error) {
	num, unit := s, uint64(0)
	for suffix, u := range map[string]uint64{"kbit": 1_000, "mbit": 1_000_000} {
		if n, ok := strings.CutSuffix(strings.ToLower(s), suffix); ok {
			num, unit = n, u
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	digits := strings.Trim(num, "0123456789.") == "" && strings.Count(num, ".") <= 1
	if unit == 0 || !digits || err != nil || f <= 0 || f > 1e6 {
		return 0, fmt.Errorf("invalid rate %q (want e.g. 1mbit or 512kbit)", s)
	}
	return uint64(f * float64(unit)), nil
}

// ParseDestination parses a domain, an IPv4/IPv6 address or a prefix.
func ParseDestination(s string) (Destination, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Destination{}, fmt.Errorf("invalid prefix %q (want e.g. 203.0.113.0/24 or 2001:db8::/32)", s)
		}
		if p.Masked() != p {
			return Destination{}, fmt.Errorf("invalid prefix %q: host bits set (did you mean %s?)", s, p.Masked())
		}
		return Destination{Prefix: p}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return Destination{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	d, err := NormalizeDomain(s)
	if err != nil {
		return Destination{}, err
	}
	return Destination{Domain: d}, nil
}

// NormalizeDomain lower-cases a domain name, drops a trailing dot and checks
// that it is a valid host name (labels of letters, digits, '-' and '_').
func NormalizeDomain(s string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(s), ".")
	bad := fmt.Errorf("invalid domain %q (want e.g. example.com)", s)
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") {
		return "", bad
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", bad
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", bad
			}
		}
	}
	return d, nil
}
