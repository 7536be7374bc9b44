// Package plan is curfew's policy core: a pure function from configuration,
// parent overrides, devices seen, screen time used and an instant to the
// desired state of every device.
//
// Nothing here reads a clock, a file or the network: the instant and the
// location are parameters, which is what makes DST days and midnight
// crossings testable as plain table tests.
//
// Besides the state at the instant, the plan predicts each device's offline
// intervals for the coming days (schedules, timed pauses, allow overrides,
// an exhausted budget until its reset). The kernel backends program those
// intervals ahead as absolute instants, so enforcement goes on — and ends on
// time — while the daemon is down.
package plan

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/schedule"
	"curfew/pkg/services"
)

// Forever stands for "no end": an indefinite pause, or an untrusted clock.
// It is far enough away to never be reached and small enough for the
// kernel's 64-bit nanosecond time keys.
var Forever = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// Dawn stands for "since always", for the same reasons.
var Dawn = time.Unix(0, 0).UTC()

// DefaultHorizon is how far ahead offline intervals are predicted: a week
// plus a day, so that the kernel holds at least the next seven days.
const DefaultHorizon = 8 * 24 * time.Hour

// Override kinds (SPEC.md "Runtime overrides").
const (
	Pause = "pause"
	Allow = "allow"
	Grant = "grant"
)

// Override is a parent's action, kept across restarts by the daemon.
type Override struct {
	Kind string `json:"kind"`
	// Target is a profile id, a device name or a MAC.
	Target string `json:"target"`
	// From is when the parent acted.
	From time.Time `json:"from"`
	// Until ends a pause or an allow; zero means until resumed (pause only).
	Until time.Time `json:"until,omitzero"`
	// Amount is the extra screen time of a grant ...
	Amount time.Duration `json:"amount,omitempty"`
	// ... and Day the local date (YYYY-MM-DD) it adds to.
	Day string `json:"day,omitempty"`
	// Service, for a grant, is the catalogue service whose allowance it
	// adds to instead of the daily limit.
	Service string `json:"service,omitempty"`
}

// Input is everything the plan depends on.
type Input struct {
	Config *config.Config
	Loc    *time.Location
	At     time.Time
	// Seen lists MACs present on the network; those not in the config get
	// the unknown profile.
	Seen      []net.HardwareAddr
	Overrides []Override
	// Used is the screen time each profile used on At's local day, and
	// ServiceUsed the time on each limited service (profile, then
	// service).
	Used        map[string]time.Duration
	ServiceUsed map[string]map[string]time.Duration
	// ClockTrusted is false until NTP has synchronised the clock.
	ClockTrusted bool
	// Horizon bounds the predicted intervals; zero means DefaultHorizon.
	Horizon time.Duration
}

// State of a device.
const (
	Online  = "online"
	Offline = "offline"
)

// Plan is the desired state at an instant.
type Plan struct {
	At         time.Time  `json:"at"`
	Devices    []Device   `json:"devices"`
	NextChange *time.Time `json:"next_change"`
	// Profiles hold what each profile in use blocks now, once: a profile's
	// lists are never repeated per device, so a plan grows with devices
	// plus rules, not devices times rules.
	Profiles []ProfileRules `json:"profiles"`
	// UnknownDevices is the state any MAC not yet seen would get from the
	// unknown profile; nil when unknown devices are unrestricted. Backends
	// enforce it for new MACs before the daemon has seen them.
	UnknownDevices *Device `json:"unknown_devices,omitempty"`
}

// ProfileRules is what a profile blocks at the plan's instant: its own
// lists and those of its block windows open now. It shares the config's
// list when no window adds to it, and it is put into words ("blocked" in
// JSON) only when a plan is printed: a pause must not format 100,000
// prefixes.
type ProfileRules struct {
	ID            string
	BlockDest     []config.Destination
	BlockServices []string
	// Services are the profile's service allowances today; one used up
	// is also in BlockServices.
	Services []ServiceTime
	// services is the catalogue's view of BlockServices.
	services []string
	// listed, when positive, is how many entries the JSON lists (see
	// Listed); total is the count read back from JSON that listed fewer.
	listed, total int
}

// Blocked lists what the profile blocks, for people: destinations, then
// "service NAME".
func (r *ProfileRules) Blocked() []string {
	return r.Some(len(r.BlockDest) + len(r.services))
}

// Some is the first n entries of Blocked, without formatting the rest.
func (r *ProfileRules) Some(n int) []string {
	n = max(min(n, len(r.BlockDest)+len(r.services)), 0)
	out := make([]string, 0, n)
	for _, dst := range r.BlockDest {
		if len(out) == n {
			return out
		}
		out = append(out, dst.String())
	}
	for _, s := range r.services {
		if len(out) == n {
			break
		}
		out = append(out, "service "+s)
	}
	return out
}

// Count is len(Blocked()), without building it; for rules read back from
// JSON that listed only some, the count the JSON gave.
func (r *ProfileRules) Count() int { return max(r.total, len(r.BlockDest)+len(r.services)) }

type profileRulesJSON struct {
	ID      string   `json:"id"`
	Blocked []string `json:"blocked"`
	// Count is how many there are, also when blocked lists only some.
	Count int `json:"blocked_count"`
}

// MarshalJSON implements json.Marshaler.
func (r ProfileRules) MarshalJSON() ([]byte, error) {
	list := r.Blocked()
	if r.listed > 0 {
		list = r.Some(r.listed)
	}
	return json.Marshal(profileRulesJSON{ID: r.ID, Blocked: list, Count: r.Count()})
}

// Listed returns a copy of the plan whose JSON lists at most n of each
// profile's blocked entries (with their count): the daemon's status goes
// through rpcd and ubus, whose messages are at most 1 MB, and LuCI polls
// it; 100,000 prefixes would be 2 MB each time.
func (p *Plan) Listed(n int) *Plan {
	q := *p
	q.Profiles = make([]ProfileRules, len(p.Profiles))
	for i, r := range p.Profiles {
		r.listed = n
		q.Profiles[i] = r
	}
	return &q
}

// UnmarshalJSON implements json.Unmarshaler (for the CLI reading status):
// the words come back, the structured lists do not.
func (r *ProfileRules) UnmarshalJSON(b []byte) error {
	var v profileRulesJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.ID = v.ID
	r.BlockDest = nil
	r.services = nil
	r.total = v.Count
	for _, s := range v.Blocked {
		if name, ok := strings.CutPrefix(s, "service "); ok {
			r.services = append(r.services, name)
			continue
		}
		if d, err := config.ParseDestination(s); err == nil {
			r.BlockDest = append(r.BlockDest, d)
		}
	}
	return nil
}

// Rules returns what profile id blocks, or nil for a profile the plan does
// not use.
func (p *Plan) Rules(id string) *ProfileRules {
	for i := range p.Profiles {
		if p.Profiles[i].ID == id {
			return &p.Profiles[i]
		}
	}
	return nil
}

// Device is one device's desired state.
type Device struct {
	MAC     string `json:"mac"`
	Name    string `json:"name"`
	Profile string `json:"profile"`
	State   string `json:"state"`
	// Reason says why, for a person.
	Reason string `json:"reason"`
	// Until is the next change of State, or nil when none is foreseen.
	Until *time.Time `json:"until"`
	// Blocked is what this device has blocked beyond its profile's
	// (Plan.Profiles); BlockedCount counts all of it, the profile's too.
	Blocked      []string `json:"blocked"`
	BlockedCount int      `json:"blocked_count"`
	// Unknown is true for a MAC that the config does not list.
	Unknown bool `json:"unknown,omitempty"`
	// WifiKey is the profile whose Wi-Fi key the device joined with
	// (never the key): it outranks the profile of the device's MAC.
	WifiKey string `json:"wifi_key,omitempty"`
	// Managed is false for devices curfew leaves alone.
	Managed bool `json:"managed"`
	// BudgetLeft is the screen time left today, for profiles with a limit.
	BudgetLeft *Duration `json:"budget_left,omitempty"`
	// Offline lists the predicted offline intervals from now on.
	Offline []Span `json:"offline_windows,omitempty"`
	// WindDown lists the intervals from now on in which the device is
	// slowed before an offline window (the profile's or the schedule's
	// wind_down), and SlowUntil is set while it is slowed now: the
	// instant its window begins.
	WindDown  []Span     `json:"wind_down_windows,omitempty"`
	SlowUntil *time.Time `json:"slow_until,omitempty"`
	// Reasons lists every cause that applies now, the first being Reason's.
	Reasons []string `json:"-"`
	// Causes are the kinds of those causes, for programs (LuCI decides its
	// buttons by them, never by the words of Reason, which may be
	// translated): "schedule", "pause", "limit", "clock".
	Causes []string `json:"causes"`
	// Allowed is true while a parent's allow keeps the device online.
	Allowed bool `json:"allowed,omitempty"`
	// Services are its profile's service allowances today.
	Services []ServiceTime `json:"services,omitempty"`
}

// The kinds of cause in Device.Causes.
const (
	CauseSchedule = "schedule"
	CausePause    = "pause"
	CauseLimit    = "limit"
	CauseClock    = "clock"
	// CauseWindDown is the one cause of an online device: it is slowed
	// before an offline window.
	CauseWindDown = "wind_down"
	// CauseService is no cause of a state: it is a request's, for more
	// time on a service whose time is used up.
	CauseService = "service"
)

// ServiceTime is a service's allowance on the plan's day: its limit
// (with the day's grants), the time used and the time left.
type ServiceTime struct {
	Service string   `json:"service"`
	Title   string   `json:"title"`
	Limit   Duration `json:"limit"`
	Used    Duration `json:"used"`
	Left    Duration `json:"left"`
}

// UsedUp reports whether no time is left.
func (s ServiceTime) UsedUp() bool { return s.Left <= 0 }

// String is the line explain prints: "YouTube: 1h used of 1h today".
func (s ServiceTime) String() string {
	return fmt.Sprintf("%s: %s used of %s today", s.Title, Short(time.Duration(s.Used)), Short(time.Duration(s.Limit)))
}

// Span is an interval in JSON form.
type Span struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Duration marshals as a duration string in the one form people read
// everywhere ("1h20m", Short), which Go's time.ParseDuration also reads.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + Short(time.Duration(d)) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler (for the CLI reading status).
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := time.ParseDuration(strings.Trim(string(b), `"`))
	if err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// source is one reason for being offline, with its intervals.
type source struct {
	kind  string // Cause*
	label string
	// ends is when this cause itself ends, for causes whose end a parent
	// set (a pause); zero otherwise. Reasons name it only where it differs
	// from the device's Until, so that no text says the same time twice.
	ends time.Time
	ivs  []schedule.Interval
}

// Compute returns the plan for in.
func Compute(in Input) *Plan {
	loc := in.Loc
	if loc == nil {
		loc = time.UTC
	}
	at := in.At.Truncate(time.Second).In(loc)
	horizon := in.Horizon
	if horizon <= 0 {
		horizon = DefaultHorizon
	}
	c := in.Config
	p := &Plan{At: at, Devices: []Device{}, Profiles: []ProfileRules{}}
	cat := services.Builtin()

	type entry struct {
		mac     net.HardwareAddr
		name    string
		profile string
		wifiKey string
		unknown bool
	}
	entries := make([]entry, 0, len(c.Devices)+len(in.Seen))
	configured := make(map[string]bool, len(c.Devices)+len(in.Seen))
	for _, d := range c.Devices {
		entries = append(entries, entry{mac: d.MAC, name: d.Name, profile: d.Profile, wifiKey: d.WifiKey})
		configured[d.MAC.String()] = true
	}
	var unknown []string
	for _, m := range in.Seen {
		k := m.String()
		if !configured[k] {
			configured[k] = true
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		mac, _ := net.ParseMAC(k)
		entries = append(entries, entry{mac: mac, profile: c.UnknownProfile, unknown: true})
	}

	// Sized at once: a Device is large, and growing the slice was most of
	// a plan's time at thousands of devices.
	p.Devices = make([]Device, 0, len(entries)+1)
	var changes []time.Time
	for _, e := range entries {
		// evaluated in place: a Device of its own would escape to the
		// heap (evaluate keeps a pointer), one allocation per device
		p.Devices = append(p.Devices, Device{MAC: e.mac.String(), Name: e.name, Profile: e.profile, WifiKey: e.wifiKey, Unknown: e.unknown, Blocked: []string{}, Causes: []string{}})
		d := &p.Devices[len(p.Devices)-1]
		prof := c.Profile(e.profile)
		switch {
		case !c.Enabled:
			d.State, d.Reason = Online, "curfew is disabled"
		case prof == nil:
			d.State, d.Reason = Online, "unknown device, not managed (unknown_profile is empty)"
		default:
			d.Managed = true
			changes = append(changes, evaluate(d, in, prof, at, loc, horizon)...)
			r := p.rules(in, prof, at, loc, cat)
			d.BlockedCount = r.Count()
			d.Services = r.Services
			if len(prof.ServiceLimits) > 0 {
				changes = append(changes, NextMidnight(at, loc)) // allowances start again
			}
		}
		if d.Until != nil {
			changes = append(changes, *d.Until)
		}
	}
	if prof := c.Profile(c.UnknownProfile); prof != nil && c.Enabled {
		d := Device{Profile: prof.ID, Unknown: true, Managed: true, Blocked: []string{}, Causes: []string{}}
		changes = append(changes, evaluate(&d, in, prof, at, loc, horizon)...)
		r := p.rules(in, prof, at, loc, cat)
		d.BlockedCount = r.Count()
		d.Services = r.Services
		p.UnknownDevices = &d
	}
	for _, t := range changes {
		if t.After(at) && t.Before(Forever) && (p.NextChange == nil || t.Before(*p.NextChange)) {
			t := t.In(loc)
			p.NextChange = &t
		}
	}
	return p
}

// targets reports whether an override's target names this device.
func targets(o Override, d *Device) bool { return Matches(o.Target, d) }

// Matches reports whether target (a profile id, a device name, any case,
// or a MAC) names the device.
func Matches(target string, d *Device) bool {
	t := strings.TrimSpace(target)
	if t == "" {
		return false
	}
	if t == d.Profile || (d.Name != "" && strings.EqualFold(t, d.Name)) {
		return true
	}
	if mac, err := net.ParseMAC(t); err == nil && mac.String() == d.MAC {
		return true
	}
	return false
}

// dependsOnTime reports whether a profile's state can change with the
// clock alone: it has a daily limit or a schedule of any action.
func dependsOnTime(c *config.Config, prof *config.Profile) bool {
	if prof.DailyLimit > 0 {
		return true
	}
	for _, sc := range c.Schedules {
		if contains(sc.Profiles, prof.ID) {
			return true
		}
	}
	return false
}

// evaluate fills a managed device's state; it returns extra instants at
// which the plan changes without the device's state changing (block
// windows starting or ending). It runs the steps of an evaluation in
// order: what takes the device offline (clock, schedules, a parent's
// overrides, the budget), the offline intervals that remain after the
// parent's allows, the next change, the causes that apply now, the
// verdict.
func evaluate(d *Device, in Input, prof *config.Profile, at time.Time, loc *time.Location, horizon time.Duration) []time.Time {
	e := &evaluation{d: d, in: in, prof: prof, at: at, loc: loc, end: at.Add(horizon), countingLeft: -1}
	e.clock()
	e.schedules()
	e.overrides()
	e.budget()
	e.intervals()
	e.windDown()
	e.nextChange()
	e.causes()
	e.verdict()
	return e.extra
}

// evaluation is one device's evaluation at an instant, step by step.
type evaluation struct {
	d    *Device
	in   Input
	prof *config.Profile
	// at is the instant, loc the router's zone, end the horizon's end.
	at  time.Time
	loc *time.Location
	end time.Time

	// sources are what would take the device offline, with their spans.
	sources []source
	// extra are instants where the plan changes without the state.
	extra []time.Time
	// allows are the parent's allows; allowUntil is the end of the one
	// in force now (zero if none).
	allows     []schedule.Interval
	allowUntil time.Time
	// slowBefore are the spans before offline windows in which the
	// device is to be slowed, before the allows and the offline
	// intervals are taken out (windDown).
	slowBefore []schedule.Interval
	// slowing is the wind-down span the device is in now, if any.
	slowing *schedule.Interval
	// countingLeft is the screen time left today while it is counting
	// down (-1: no budget, or used up).
	countingLeft time.Duration
	// offline are the offline intervals after the allows; current is
	// the one containing at, if any; until is the device's next change of
	// state (zero if none is foreseen).
	offline []schedule.Interval
	current *schedule.Interval
	until   time.Time
	// active are the causes that apply now, for people.
	active []string
}

// clock: before NTP sync only profiles whose rules read the clock (a
// schedule or a daily limit) go offline: a profile without them means
// the same at any time, and a router whose NTP is blocked must not lock
// the parents out.
func (e *evaluation) clock() {
	c := e.in.Config
	if !e.in.ClockTrusted && c.ClockUnsyncedOffline && dependsOnTime(c, e.prof) {
		e.sources = append(e.sources, source{kind: CauseClock, label: "clock not synchronised yet (clock_unsynced 'offline')",
			ivs: []schedule.Interval{{From: Dawn, To: Forever}}})
	}
}

// schedules: the profile's offline windows, and the instants where its
// block windows start or end.
func (e *evaluation) schedules() {
	for _, sc := range e.in.Config.Schedules {
		if !contains(sc.Profiles, e.prof.ID) {
			continue
		}
		occ := sc.Window.Occurrences(e.loc, e.at.Add(-24*time.Hour), e.end)
		label := fmt.Sprintf("schedule %s %s", sc.Label(), sc.Window)
		if sc.Action == config.ActionOffline {
			e.sources = append(e.sources, source{kind: CauseSchedule, label: label, ivs: occ})
			if n := sc.WindDownFor(e.prof); n > 0 {
				for _, iv := range occ {
					e.slowBefore = append(e.slowBefore, schedule.Interval{From: iv.From.Add(-n), To: iv.From})
				}
			}
			continue
		}
		for _, iv := range occ {
			e.extra = append(e.extra, iv.From, iv.To) // its block list starts or ends
		}
	}
}

// overrides: the parent's pauses and allows that name the device and
// have not ended.
func (e *evaluation) overrides() {
	for _, o := range e.in.Overrides {
		if !targets(o, e.d) {
			continue
		}
		until := o.Until
		if until.IsZero() {
			until = Forever
		}
		if !until.After(e.at) {
			continue // expired
		}
		switch o.Kind {
		case Pause:
			e.sources = append(e.sources, source{kind: CausePause, label: "paused by parent", ends: until, ivs: []schedule.Interval{{From: o.From, To: until}}})
		case Allow:
			e.allows = append(e.allows, schedule.Interval{From: o.From, To: until})
			if !o.From.After(e.at) && until.After(e.allowUntil) {
				e.allowUntil = until
			}
		}
	}
}

// budget: the screen-time budget, the limit plus today's grants minus
// what was used; used up, the device is offline until the next local
// midnight, when it is reset.
func (e *evaluation) budget() {
	if e.prof.DailyLimit <= 0 {
		return
	}
	limit := e.prof.DailyLimit
	today := e.at.Format("2006-01-02")
	for _, o := range e.in.Overrides {
		if o.Kind == Grant && o.Service == "" && o.Day == today && targets(o, e.d) {
			limit += o.Amount
		}
	}
	left := max(limit-e.in.Used[e.prof.ID], 0)
	bl := Duration(left)
	e.d.BudgetLeft = &bl
	reset := NextMidnight(e.at, e.loc)
	if left == 0 {
		e.sources = append(e.sources, source{kind: CauseLimit, label: fmt.Sprintf("daily limit %s used up", Short(limit)),
			ivs: []schedule.Interval{{From: e.at, To: reset}}})
	} else {
		e.countingLeft = left
	}
	e.extra = append(e.extra, reset)
}

// intervals: every source's spans merged, less the allows; those within
// the horizon are the device's offline windows.
func (e *evaluation) intervals() {
	var all []schedule.Interval
	for _, s := range e.sources {
		all = append(all, s.ivs...)
	}
	e.offline = schedule.Subtract(schedule.Merge(all), schedule.Merge(e.allows))
	for _, iv := range e.offline {
		if iv.To.After(e.at) && iv.From.Before(e.end) {
			e.d.Offline = append(e.d.Offline, Span{From: iv.From.In(e.loc), To: iv.To.In(e.loc)})
		}
	}
}

// windDown: the spans before offline windows in which the device is
// slowed, less its offline intervals and the parent's allows (an allow
// ends a wind-down as it ends a bedtime). Their starts and ends are
// changes of the plan (the child is told; the page says so).
func (e *evaluation) windDown() {
	if len(e.slowBefore) == 0 {
		return
	}
	slow := schedule.Subtract(schedule.Subtract(schedule.Merge(e.slowBefore), e.offline), schedule.Merge(e.allows))
	for i, iv := range slow {
		if !iv.To.After(e.at) || !iv.From.Before(e.end) {
			continue
		}
		e.d.WindDown = append(e.d.WindDown, Span{From: iv.From.In(e.loc), To: iv.To.In(e.loc)})
		e.extra = append(e.extra, iv.From, iv.To)
		if iv.Contains(e.at) {
			e.slowing = &slow[i]
		}
	}
}

// nextChange: the offline interval the device is in now, if any, and its
// next change of state. An end beyond the horizon is no foreseen end (an
// all-day window every day, an indefinite pause).
func (e *evaluation) nextChange() {
	for i := range e.offline {
		if e.offline[i].Contains(e.at) {
			e.current = &e.offline[i]
		}
	}
	if e.current != nil {
		if e.current.To.Before(e.end) {
			e.until = e.current.To.In(e.loc)
		}
		return
	}
	for _, iv := range e.offline {
		if iv.From.After(e.at) {
			e.until = iv.From.In(e.loc)
			break
		}
	}
}

// causes: those that apply now, each once (a pause of the device and one
// of its profile read the same), with their own end where it is not the
// device's.
func (e *evaluation) causes() {
	for _, s := range e.sources {
		for _, iv := range s.ivs {
			if !iv.Contains(e.at) {
				continue
			}
			label := s.label
			if !s.ends.IsZero() && s.ends.Before(Forever) && !s.ends.Equal(e.until) {
				label += " until " + When(s.ends, e.at, e.loc)
			}
			if !contains(e.active, label) {
				e.active = append(e.active, label)
			}
			if !contains(e.d.Causes, s.kind) {
				e.d.Causes = append(e.d.Causes, s.kind)
			}
			break
		}
	}
	e.d.Reasons = e.active
	if !e.until.IsZero() {
		until := e.until
		e.d.Until = &until
	}
}

// verdict: the state and its reason for people. A budget running out is
// not foreseen here: it depends on use, and the daemon recomputes the plan
// as minutes are counted.
func (e *evaluation) verdict() {
	d, at, loc := e.d, e.at, e.loc
	d.Allowed = e.current == nil && e.allowUntil.After(at)
	if e.current != nil {
		d.State = Offline
		d.Reason = strings.Join(e.active, "; ")
		return
	}
	d.State = Online
	switch {
	case len(e.active) > 0:
		label := "allowed by parent"
		if e.allowUntil.Before(Forever) && !e.allowUntil.Equal(e.until) {
			label += " until " + When(e.allowUntil, at, loc)
		}
		d.Reason = fmt.Sprintf("%s (overrides %s)", label, strings.Join(e.active, "; "))
	case e.allowUntil.After(at):
		// nothing to override now, but the allow holds until then
		d.Reason = "allowed by parent until " + When(e.allowUntil, at, loc)
	case e.slowing != nil:
		until := e.slowing.To.In(loc)
		d.SlowUntil = &until
		d.Causes = append(d.Causes, CauseWindDown)
		d.Reason = "winding down until " + When(until, at, loc) + ": slowed before it goes offline"
	case e.countingLeft > 0:
		d.Reason = fmt.Sprintf("%s of screen time left today", Short(e.countingLeft))
	default:
		d.Reason = "online"
	}
}

// rules returns what profile prof blocks at instant at — its lists and
// those of its block windows open now — computed once per plan, however
// many devices share the profile.
func (p *Plan) rules(in Input, prof *config.Profile, at time.Time, loc *time.Location, cat services.Catalogue) *ProfileRules {
	if r := p.Rules(prof.ID); r != nil {
		return r
	}
	c := in.Config
	r := ProfileRules{ID: prof.ID}
	// the config's own slices, shared until a window adds to them
	r.BlockDest = prof.Block[:len(prof.Block):len(prof.Block)]
	r.BlockServices = prof.BlockService[:len(prof.BlockService):len(prof.BlockService)]
	for _, sc := range c.Schedules {
		if sc.Action == config.ActionOffline || !contains(sc.Profiles, prof.ID) {
			continue
		}
		for _, iv := range sc.Window.Occurrences(loc, at.Add(-24*time.Hour), at.Add(time.Second)) {
			if iv.Contains(at) {
				r.BlockDest = append(r.BlockDest, sc.Block...)
				r.BlockServices = append(r.BlockServices, sc.BlockService...)
				break
			}
		}
	}
	r.Services = allowances(in, prof, at, cat)
	for _, st := range r.Services {
		if st.UsedUp() && !contains(r.BlockServices, st.Service) {
			r.BlockServices = append(r.BlockServices, st.Service)
		}
	}
	for _, s := range r.BlockServices {
		if cat.Has(s) {
			r.services = append(r.services, s)
		}
	}
	p.Profiles = append(p.Profiles, r)
	return &p.Profiles[len(p.Profiles)-1]
}

// allowances are profile prof's service allowances on at's local day:
// each limit plus the day's grants for that service to the profile or
// to one of its devices (the time is the profile's, shared by its
// devices, as the daily limit is).
func allowances(in Input, prof *config.Profile, at time.Time, cat services.Catalogue) []ServiceTime {
	if len(prof.ServiceLimits) == 0 {
		return nil
	}
	today := at.Format("2006-01-02")
	var out []ServiceTime
	for _, l := range prof.ServiceLimits {
		if !l.Days.Has(at.Weekday()) {
			continue
		}
		limit := l.Limit
		for _, o := range in.Overrides {
			if o.Kind == Grant && o.Service == l.Service && o.Day == today && grantsProfile(in.Config, o.Target, prof.ID) {
				limit += o.Amount
			}
		}
		used := in.ServiceUsed[prof.ID][l.Service]
		title := l.Service
		if s := cat.Get(l.Service); s != nil {
			title = s.Title
		}
		out = append(out, ServiceTime{Service: l.Service, Title: title, Limit: Duration(limit), Used: Duration(used), Left: Duration(max(limit-used, 0))})
	}
	return out
}

// grantsProfile reports whether a grant's target names profile id or one
// of its configured devices.
func grantsProfile(c *config.Config, target, id string) bool {
	if strings.TrimSpace(target) == id {
		return true
	}
	for _, d := range c.Devices {
		if d.Profile == id && Matches(target, &Device{MAC: d.MAC.String(), Name: d.Name, Profile: d.Profile}) {
			return true
		}
	}
	return false
}

// NextMidnight is the start of the local day after at's, when budgets
// and allowances start again.
func NextMidnight(at time.Time, loc *time.Location) time.Time {
	y, m, d := at.In(loc).Date()
	return schedule.Resolve(loc, y, m, d+1, 0)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// When prints an instant as a parent reads it, relative to at: "07:00" the
// same local day, "Sat 07:00" within six days, a date beyond.
func When(t, at time.Time, loc *time.Location) string {
	t = t.In(loc)
	ay, am, ad := at.In(loc).Date()
	ty, tm, td := t.Date()
	switch {
	case ay == ty && am == tm && ad == td:
		return t.Format("15:04")
	case t.Sub(at) < 6*24*time.Hour:
		return t.Format("Mon 15:04")
	}
	return t.Format("2006-01-02 15:04")
}

// Short prints a duration as parents read it, without zero units: 2h,
// 1h30m, 45m. Every text for people uses it (never Go's 2h30m0s).
func Short(d time.Duration) string {
	d = d.Round(time.Minute)
	h, m := int(d.Hours()), int(d.Minutes())%60
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}
