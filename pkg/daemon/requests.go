package daemon

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/notify"
	"curfew/pkg/page"
	"curfew/pkg/plan"
)

// Bounds of the requests kept: each is asked by a child's device (which
// may show a new random MAC for every request) and kept on flash.
const (
	// maxOpenRequests bounds the requests waiting for an answer, all
	// devices together.
	maxOpenRequests = 20
	// maxKeptRequests bounds the answered ones kept for the audit trail,
	// and keepRequests how long they are kept.
	maxKeptRequests = 200
	keepRequests    = 8 * 24 * time.Hour
)

// askable are the causes a child may ask more time for: a schedule, a
// parent's pause, a used-up budget. Not the unset clock: no answer of a
// parent's makes that right.
var askable = []string{plan.CauseSchedule, plan.CausePause, plan.CauseLimit}

// saveLocked writes the overrides ovs and the requests to the state dir
// (d.mu held).
func (d *Daemon) saveLocked(ovs []plan.Override) error {
	if d.opts.StateDir == "" {
		return nil
	}
	if err := saveState(d.opts.StateDir, stateDoc{Overrides: ovs, Requests: d.requests, NextRequest: d.nextRequest}); err != nil {
		return fmt.Errorf("save overrides: %w", err)
	}
	d.stateErr = ""
	return nil
}

// pageDevice is what the page and a request know of a device.
type pageDevice struct {
	mac, name, profile string
	// configured is false for a MAC the config does not list.
	configured    bool
	offline       bool
	cause, reason string
	until         time.Time
	// slowUntil is set while the device winds down: when its window
	// begins.
	slowUntil time.Time
	// usedUp are its profile's services whose time is used up today.
	usedUp []plan.ServiceTime
}

// deviceAt finds the device behind a page request's source address and
// its state now: the kernel's own test, an offline interval containing
// now, wins over the last plan's state. The device is what the kernel's
// neighbour table says at the moment of the request, read for it, never
// the daemon's cache of it: a child can make the router's entry for its
// address name a sibling's MAC (ARP), wait for the cache to take it, and
// set it right again; a request would then be filed in the sibling's name.
// A page request is far rarer than a DNS query (the page's connections
// are bounded), so it can pay for the read.
func (d *Daemon) deviceAt(a netip.Addr) (pageDevice, bool) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil {
		return pageDevice{}, false
	}
	var mac string
	neighbours := d.opts.Seen(cfg.LAN)
	for _, n := range neighbours {
		if slices.Contains(n.IPs, a) {
			mac = n.MAC.String()
		}
	}
	if mac == "" {
		return pageDevice{}, false
	}
	now := d.opts.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	pd := d.byMAC[mac]
	if pd == nil && d.last != nil {
		pd = d.last.UnknownDevices
	}
	if pd == nil || !pd.Managed {
		return pageDevice{mac: mac, name: mac}, true
	}
	dev := pageDevice{mac: mac, name: cmp.Or(pd.Name, mac), profile: pd.Profile, configured: configured(cfg, mac)}
	// The plan's state and next change, unless an offline interval has
	// begun since the plan was made (the kernel enforces it already).
	var inside *plan.Span
	for i, s := range pd.Offline {
		if !now.Before(s.From) && now.Before(s.To) {
			inside = &pd.Offline[i]
		}
	}
	switch {
	case pd.State == plan.Offline:
		dev.offline = true
		if len(pd.Causes) > 0 {
			dev.cause = pd.Causes[0]
		}
		if len(pd.Reasons) > 0 {
			dev.reason = pd.Reasons[0]
		}
		if pd.Until != nil {
			dev.until = *pd.Until
		}
	case inside != nil:
		dev.offline = true
		if inside.To.Sub(now) <= control.MaxOverride { // not the plan's "no end"
			dev.until = inside.To
		}
	case pd.Until != nil:
		dev.until = *pd.Until
	}
	for _, s := range pd.WindDown {
		if !dev.offline && !now.Before(s.From) && now.Before(s.To) {
			dev.slowUntil = s.To
		}
	}
	for _, st := range pd.Services {
		if st.UsedUp() {
			dev.usedUp = append(dev.usedUp, st)
		}
	}
	return dev, true
}

// View implements page.Source.
func (d *Daemon) View(a netip.Addr) (page.View, bool) {
	dev, ok := d.deviceAt(a)
	if !ok {
		return page.View{}, false
	}
	now := d.opts.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	v := page.View{Device: dev.name, Online: !dev.offline, Cause: dev.cause, Until: dev.until, SlowUntil: dev.slowUntil, Now: now, Loc: d.loc}
	if !dev.offline {
		for _, st := range dev.usedUp {
			v.UsedUp = append(v.UsedUp, page.Service{Name: st.Service, Title: st.Title})
		}
	}
	if dev.cause == plan.CauseSchedule && d.cfg != nil {
		v.Schedule = scheduleLabel(d.cfg, dev.reason)
	}
	if r := d.latestRequest(dev.mac, now); r != nil {
		v.Request = &page.Request{Service: r.ServiceTitle, Minutes: r.Minutes, Message: r.Message, AskedAt: r.AskedAt, Status: r.Status, Granted: r.Granted}
		if r.AnsweredAt != nil {
			v.Request.AnsweredAt = *r.AnsweredAt
		}
	}
	if d.cfg != nil {
		v.AsksLeft = max(d.cfg.RequestsPerDay-d.asksToday(dev.mac, now), 0)
		v.CanAsk = v.AsksLeft > 0 && (dev.offline && slices.Contains(askable, dev.cause) || len(v.UsedUp) > 0)
	}
	return v, true
}

// scheduleLabel finds the schedule a plan reason names.
func scheduleLabel(cfg *config.Config, reason string) string {
	for _, sc := range cfg.Schedules {
		if strings.HasPrefix(reason, fmt.Sprintf("schedule %s %s", sc.Label(), sc.Window)) {
			return sc.Label()
		}
	}
	return ""
}

// latestRequest is the device's open request, or else its latest of
// today (d.mu held).
func (d *Daemon) latestRequest(mac string, now time.Time) *control.TimeRequest {
	var latest *control.TimeRequest
	for i := range d.requests {
		r := &d.requests[i]
		if r.MAC != mac {
			continue
		}
		if r.Status == control.RequestOpen {
			return r
		}
		if sameDay(r.AskedAt, now, d.loc) {
			latest = r
		}
	}
	return latest
}

func (d *Daemon) asksToday(mac string, now time.Time) int {
	n := 0
	for _, r := range d.requests {
		if r.MAC == mac && sameDay(r.AskedAt, now, d.loc) {
			n++
		}
	}
	return n
}

func sameDay(a, b time.Time, loc *time.Location) bool {
	if loc == nil {
		loc = time.UTC
	}
	return a.In(loc).Format("2006-01-02") == b.In(loc).Format("2006-01-02")
}

// configured reports whether the config lists mac.
func configured(cfg *config.Config, mac string) bool {
	return slices.ContainsFunc(cfg.Devices, func(d *config.Device) bool { return d.MAC.String() == mac })
}

// Ask implements page.Source: it records a child's request. Asking again
// while a request is open is no new request (the page shows the open
// one).
func (d *Daemon) Ask(a netip.Addr, f page.Form) error {
	minutes, message := f.Minutes, f.Message
	dev, ok := d.deviceAt(a)
	now := d.opts.Clock.Now().Truncate(time.Second)
	var svc *plan.ServiceTime
	switch {
	case !ok || dev.profile == "":
		return page.NotOffline
	case f.Service != "":
		// more time for a service whose time is used up, of a device
		// that is online otherwise
		for i := range dev.usedUp {
			if dev.usedUp[i].Service == f.Service && !dev.offline {
				svc = &dev.usedUp[i]
			}
		}
		if svc == nil {
			return page.NoSuchService
		}
		d.mu.Lock()
		loc := d.loc
		d.mu.Unlock()
		dev.cause, dev.reason = plan.CauseService, svc.String()
		dev.until = plan.NextMidnight(now, loc)
	case !dev.offline:
		return page.NotOffline
	}
	d.mu.Lock()
	cfg := d.cfg
	latest := d.latestRequest(dev.mac, now)
	switch {
	case cfg == nil || cfg.RequestsPerDay == 0 || (svc == nil && !slices.Contains(askable, dev.cause)):
		d.mu.Unlock()
		return page.AskingOff
	case latest != nil && latest.Status == control.RequestOpen:
		d.mu.Unlock()
		return nil
	case d.asksToday(dev.mac, now) >= cfg.RequestsPerDay:
		d.mu.Unlock()
		return page.TooMany
	}
	// Devices the config does not list ask as one device: a child
	// showing a new random MAC for each request gets no more than one
	// device's requests a day and one open at a time, and never the
	// open slots that the configured children's requests need.
	unknownToday, open, unknownOpen := 0, 0, 0
	for _, r := range d.requests {
		known := configured(cfg, r.MAC)
		switch {
		case r.Status == control.RequestOpen && known:
			open++
		case r.Status == control.RequestOpen:
			unknownOpen++
		}
		if !known && sameDay(r.AskedAt, now, d.loc) {
			unknownToday++
		}
	}
	switch {
	case !dev.configured && unknownToday >= cfg.RequestsPerDay:
		d.mu.Unlock()
		return page.TooMany
	case !dev.configured && unknownOpen >= 1, dev.configured && open >= maxOpenRequests:
		d.mu.Unlock()
		return page.Busy
	}
	expires := dev.until
	if expires.IsZero() || expires.Sub(now) > 24*time.Hour {
		expires = now.Add(24 * time.Hour)
	}
	d.nextRequest++
	r := control.TimeRequest{ID: strconv.Itoa(d.nextRequest), MAC: dev.mac, Device: dev.name, Profile: dev.profile,
		Minutes: minutes, Message: message, AskedAt: now, Cause: dev.cause, Reason: dev.reason, Expires: expires,
		Status: control.RequestOpen}
	if svc != nil {
		r.Service, r.ServiceTitle = svc.Service, svc.Title
	}
	// An ID reaches a parent only once it is saved: a request kept in
	// memory alone would have its ID given again after a restart, and a
	// parent answering the old notification would answer another
	// device's request. Not saved, it is not taken; the child may ask
	// again.
	kept := d.requests
	d.requests = trimRequests(append(d.requests, r), now)
	if err := d.saveLocked(d.overrides); err != nil {
		d.requests = kept
		d.mu.Unlock()
		d.log.Error("request for more time not saved, not taken", "err", err)
		return page.Busy
	}
	d.mu.Unlock()
	d.log.Info(fmt.Sprintf("request %s: %s asks for %d min", r.ID, r.Device, r.Minutes), "message", r.Message)
	d.notify(notify.Event{Event: notify.Request, Device: r.Device, MAC: r.MAC, Profile: r.Profile, Text: requestText(r),
		Time: now, ID: r.ID, Minutes: r.Minutes, Message: r.Message, Service: r.Service})
	return nil
}

// requestText is the request in one sentence for a parent.
func requestText(r control.TimeRequest) string {
	s := fmt.Sprintf("%s asks for %d more minutes (%s)", r.Device, r.Minutes, cmp.Or(r.Reason, r.Cause))
	if r.Service != "" {
		s = fmt.Sprintf("%s asks for %d more minutes of %s (%s)", r.Device, r.Minutes, r.ServiceTitle, r.Reason)
	}
	if r.Message != "" {
		s += fmt.Sprintf(": %q", r.Message)
	}
	return s + fmt.Sprintf(" — curfew approve %s", r.ID)
}

// trimRequests drops what the audit trail no longer needs: answered
// requests older than keepRequests, and the oldest answered ones beyond
// maxKeptRequests. Open ones stay (they are bounded on their own).
func trimRequests(rs []control.TimeRequest, now time.Time) []control.TimeRequest {
	out := rs[:0]
	for _, r := range rs {
		if r.Status == control.RequestOpen || now.Sub(r.AskedAt) < keepRequests {
			out = append(out, r)
		}
	}
	for len(out) > maxKeptRequests+maxOpenRequests {
		i := slices.IndexFunc(out, func(r control.TimeRequest) bool { return r.Status != control.RequestOpen })
		if i < 0 {
			break
		}
		out = slices.Delete(out, i, i+1)
	}
	return out
}

// expireRequests ends the open requests whose offline time is over (d.mu
// held). Not written to flash for this: reading the file back expires
// them the same way.
func (d *Daemon) expireRequests(now time.Time) {
	for i := range d.requests {
		if r := &d.requests[i]; r.Status == control.RequestOpen && !r.Expires.After(now) {
			r.Status = control.RequestExpired
		}
	}
}

// listRequests answers `requests`: open ones first, then the others,
// newest first.
func (d *Daemon) listRequests() []control.TimeRequest {
	now := d.opts.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireRequests(now)
	out := append([]control.TimeRequest{}, d.requests...)
	slices.SortStableFunc(out, func(a, b control.TimeRequest) int {
		if ao, bo := a.Status == control.RequestOpen, b.Status == control.RequestOpen; ao != bo {
			if ao {
				return -1
			}
			return 1
		}
		return b.AskedAt.Compare(a.AskedAt)
	})
	return out
}

// answer approves or denies a request. An approval is an override like
// a parent's own — an allow of the device (or its profile) until now +
// minutes, or for a used-up budget a grant of the minutes — written and
// in the kernel before the answer returns.
func (d *Daemon) answer(ctx context.Context, req *control.Request) (control.ActionResult, error) {
	now := d.opts.Clock.Now().Truncate(time.Second)
	d.mu.Lock()
	d.expireRequests(now)
	i := slices.IndexFunc(d.requests, func(r control.TimeRequest) bool { return r.ID == strings.TrimSpace(req.ID) })
	if i < 0 {
		d.mu.Unlock()
		return control.ActionResult{}, fmt.Errorf("no request %q (see curfew requests)", req.ID)
	}
	r := &d.requests[i]
	if r.Status != control.RequestOpen {
		d.mu.Unlock()
		return control.ActionResult{}, fmt.Errorf("request %s is %s already", r.ID, r.Status)
	}
	answered := now
	r.AnsweredAt = &answered
	ovs := live(d.overrides, now, d.loc)
	var msg string
	if req.Method == control.MethodDeny {
		r.Status = control.RequestDenied
		msg = fmt.Sprintf("denied request %s of %s", r.ID, r.Device)
	} else {
		minutes := cmp.Or(req.Minutes, r.Minutes)
		// The device by its MAC: a name may repeat its profile's id, and
		// an approval for one device must not become the profile's.
		target, who := r.MAC, r.Device
		r.Scope = "device"
		if req.WholeProfile {
			target, who, r.Scope = r.Profile, r.Profile, "profile"
		}
		amount := time.Duration(minutes) * time.Minute
		switch {
		case r.Service != "":
			ovs = append(ovs, plan.Override{Kind: plan.Grant, Target: target, From: now, Amount: amount,
				Day: now.In(d.loc).Format("2006-01-02"), Service: r.Service})
			r.Override = plan.Grant
			msg = fmt.Sprintf("approved request %s: granted %s %s more %s today", r.ID, who, plan.Short(amount), r.ServiceTitle)
		case r.Cause == plan.CauseLimit:
			ovs = append(ovs, plan.Override{Kind: plan.Grant, Target: target, From: now, Amount: amount,
				Day: now.In(d.loc).Format("2006-01-02")})
			r.Override = plan.Grant
			msg = fmt.Sprintf("approved request %s: granted %s %s more screen time today", r.ID, who, plan.Short(amount))
		default:
			// A pause stays: the allow overrides it for its time, and
			// the pause is back after it. A longer allow the parent gave
			// stays too: an approval never shortens one.
			end := now.Add(amount)
			ovs = slices.DeleteFunc(ovs, func(o plan.Override) bool {
				return o.Kind == plan.Allow && strings.EqualFold(o.Target, target) && !o.Until.After(end)
			})
			ovs = append(ovs, plan.Override{Kind: plan.Allow, Target: target, From: now, Until: end})
			r.Override = plan.Allow
			msg = fmt.Sprintf("approved request %s: allowed %s until %s", r.ID, who, plan.When(now.Add(amount), now, d.loc))
		}
		r.Status, r.Granted = control.RequestApproved, minutes
	}
	if err := d.saveLocked(ovs); err != nil {
		r.Status, r.AnsweredAt, r.Granted, r.Scope, r.Override = control.RequestOpen, nil, 0, "", ""
		d.mu.Unlock()
		return control.ActionResult{}, err
	}
	d.overrides = ovs
	d.mu.Unlock()
	d.log.Info("parent: " + msg)
	if req.Method == control.MethodApprove {
		d.reconcileNow(ctx)
	}
	return control.ActionResult{Message: msg, Overrides: ovs}, nil
}

// requestLines are a device's requests of the day as sentences, for
// explain (d.mu held).
func (d *Daemon) requestLines(mac string, now time.Time) []string {
	out := []string{}
	for _, r := range d.requests {
		if r.MAC != mac || !sameDay(r.AskedAt, now, d.loc) {
			continue
		}
		s := fmt.Sprintf("request %s: asked %d min at %s", r.ID, r.Minutes, r.AskedAt.In(d.loc).Format("15:04"))
		switch r.Status {
		case control.RequestApproved:
			s += fmt.Sprintf(", approved at %s: %d min (%s of the %s)", r.AnsweredAt.In(d.loc).Format("15:04"), r.Granted, r.Override, r.Scope)
		case control.RequestDenied:
			s += ", denied at " + r.AnsweredAt.In(d.loc).Format("15:04")
		default:
			s += " (" + r.Status + ")"
		}
		out = append(out, s)
	}
	return out
}

// notify sends an event to the parents' URLs, if any want it.
func (d *Daemon) notify(ev notify.Event) {
	if d.opts.Notify != nil {
		d.opts.Notify.Send(ev)
	}
}

// firstTime reports whether key (an event's "profile day" or "profile
// instant") is told for the first time, and remembers it (d.mu held).
// The memory is bounded: past 64 keys it starts again, at worst telling
// an event twice.
func (d *Daemon) firstTime(key string) bool {
	if d.toldOnce[key] {
		return false
	}
	if len(d.toldOnce) > 64 {
		clear(d.toldOnce)
	}
	d.toldOnce[key] = true
	return true
}

// noteWindDown tells a profile's own notify URLs (and the parents', if
// they asked) that its devices wind down: once per profile and window.
func (d *Daemon) noteWindDown(dev plan.Device, at time.Time, loc *time.Location) {
	key := dev.Profile + " " + dev.SlowUntil.UTC().Format(time.RFC3339)
	d.mu.Lock()
	told := !d.firstTime(key)
	var to []string
	if !told {
		if d.cfg != nil {
			if p := d.cfg.Profile(dev.Profile); p != nil {
				to = p.Notify
			}
		}
	}
	d.mu.Unlock()
	if told {
		return
	}
	mins := int(math.Ceil(dev.SlowUntil.Sub(at).Minutes()))
	d.notify(notify.Event{Event: notify.WindDown, Device: cmp.Or(dev.Name, dev.MAC), MAC: dev.MAC, Profile: dev.Profile, Time: at, To: to,
		Text: fmt.Sprintf("bedtime in %d minutes (%s): the internet is slower until then", mins, plan.When(*dev.SlowUntil, at, loc))})
}

// bypassEvery is how often a device's bypass attempts are told: a child's
// app retries DoH every few seconds.
const bypassEvery = time.Hour

// noteBypass tells of a device's bypass attempts, at most once an hour
// per device (d.mu held).
func (d *Daemon) noteBypass(dev plan.Device, now time.Time) {
	if last, ok := d.bypassTold[dev.MAC]; ok && now.Sub(last) < bypassEvery {
		return
	}
	if len(d.bypassTold) >= maxSeen {
		clear(d.bypassTold)
	}
	d.bypassTold[dev.MAC] = now
	name := cmp.Or(dev.Name, dev.MAC)
	d.notify(notify.Event{Event: notify.Bypass, Device: name, MAC: dev.MAC, Profile: dev.Profile, Time: now,
		Text: name + " tried to get around the DNS filter (DNS over TLS or HTTPS, or another resolver); it was stopped"})
}

// newDevicesPerHour bounds new_device events: a device that shows a new
// random MAC every minute must not flood the parents' phones.
const newDevicesPerHour = 10

// noteNewDevice tells of a MAC the config does not list, the first time
// it is seen (d.mu held).
func (d *Daemon) noteNewDevice(mac string, now time.Time) {
	if d.cfg == nil || !d.started {
		return
	}
	for _, dev := range d.cfg.Devices {
		if dev.MAC.String() == mac {
			return
		}
	}
	sd := control.SeenDevice{MAC: mac, Time: now}
	if l, ok := d.leases[mac]; ok {
		sd.Hostname = l.Hostname
	}
	d.usage.day(now.In(d.loc).Format("2006-01-02")).sighted(sd)
	if now.Sub(d.newDeviceHour) >= time.Hour {
		d.newDeviceHour, d.newDeviceCount = now, 0
	}
	if d.newDeviceCount >= newDevicesPerHour {
		return
	}
	d.newDeviceCount++
	text := "a device that is not in the config joined the network: " + mac
	prof := d.cfg.UnknownProfile
	if prof != "" {
		text += "; it gets profile " + prof
	} else {
		text += "; it is not restricted"
	}
	if l, ok := d.leases[mac]; ok && l.Hostname != "" {
		text += fmt.Sprintf(" (DHCP name %q)", l.Hostname)
	}
	d.notify(notify.Event{Event: notify.NewDevice, Device: mac, MAC: mac, Profile: prof, Time: now, Text: text + " — curfew assign " + mac + " PROFILE"})
}

// noteBudgetUsed tells that a profile's screen time ran out, once per
// profile and day.
func (d *Daemon) noteBudgetUsed(dev plan.Device, at time.Time, loc *time.Location) {
	d.mu.Lock()
	first := d.firstTime(dev.Profile + " " + at.In(loc).Format("2006-01-02"))
	d.mu.Unlock()
	if !first {
		return
	}
	d.notify(notify.Event{Event: notify.BudgetUsed, Device: cmp.Or(dev.Name, dev.MAC), MAC: dev.MAC, Profile: dev.Profile, Time: at,
		Text: fmt.Sprintf("profile %s used up today's screen time; its devices are offline until tomorrow (curfew grant %s 30m gives more)", dev.Profile, dev.Profile)})
}
