package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/plan"
	"curfew/pkg/schedule"
	"curfew/pkg/uci"
)

// Handle answers one control request (control.Handler).
func (d *Daemon) Handle(ctx context.Context, req *control.Request) (any, error) {
	switch req.Method {
	case control.MethodStatus:
		return d.status(), nil
	case control.MethodDevices:
		return d.devices(), nil
	case control.MethodExplain:
		return d.explain(req.Target)
	case control.MethodPause, control.MethodResume, control.MethodAllow, control.MethodGrant:
		return d.act(ctx, req)
	case control.MethodAssign:
		return d.assign(ctx, req)
	case control.MethodRequests:
		return d.listRequests(), nil
	case control.MethodApprove, control.MethodDeny:
		return d.answer(ctx, req)
	case control.MethodUsage:
		return d.usageReport(req.Target, req.Limit)
	case control.MethodReport:
		return d.report(d.opts.Clock.Now(), cmp.Or(req.Limit, 7))
	case control.MethodLog:
		return d.queryLog(req.Target, req.Limit)
	case control.MethodReload:
		d.load()
		d.reconcileNow(ctx)
		st := d.status()
		if !st.Config.OK {
			return nil, fmt.Errorf("config not applied, the last good one stays in force:\n%s", strings.Join(st.Config.Errors, "\n"))
		}
		return control.ActionResult{Message: "config reloaded"}, nil
	case control.MethodClockSynced:
		d.mu.Lock()
		was := d.ntpTrusted
		d.ntpTrusted = true
		d.mu.Unlock()
		if !was {
			d.log.Info("clock synchronised (NTP); schedules now follow the clock")
		}
		d.reconcileNow(ctx)
		return control.ActionResult{Message: "clock trusted"}, nil
	}
	return nil, fmt.Errorf("unknown method %q", req.Method)
}

// Reload re-reads the config (SIGHUP).
func (d *Daemon) Reload(ctx context.Context) {
	d.load()
	d.reconcileNow(ctx)
}

func (d *Daemon) status() control.Status {
	notes := d.notes()
	if flowOffloading(d.opts.FirewallPath) {
		notes["offload"] = "flow offloading is on (" + d.opts.FirewallPath + "): offloaded connections skip curfew's per-packet rules, " +
			"so their traffic is not counted as screen time, and a window that begins while the daemon is down does not stop them " +
			"(the daemon's cut at the window's start does)"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := control.Status{
		Version:      d.opts.Version,
		Backend:      d.opts.Backend.Name(),
		ClockTrusted: d.ntpTrusted || d.opts.ClockTrusted(),
		Zone:         d.zone,
		Zonename:     d.zoneFrom[0],
		Timezone:     d.zoneFrom[1],
		Config: control.ConfigStatus{
			File: d.opts.ConfigPath, OK: d.loadErrs == nil, Errors: d.loadErrs, LoadedAt: d.loadedAt,
		},
		Plan:        listed(d.last),
		Overrides:   append([]plan.Override{}, d.overrides...),
		Notes:       []string{},
		Enforcement: d.enforce,
	}
	if st.Config.Errors == nil {
		st.Config.Errors = []string{}
	}
	if d.stateErr != "" {
		st.StateError = d.stateErr
	}
	if d.fellBack != "" {
		st.Notes = append(st.Notes, "backend 'auto': "+d.fellBack)
	}
	for _, n := range notes {
		st.Notes = append(st.Notes, n)
	}
	sort.Strings(st.Notes)
	return st
}

// flowOffloading reports whether the firewall config (fw4's, or fw3's)
// turns on software or hardware flow offloading: LuCI's "Software flow
// offloading". Offloaded flows skip the forward hook (measured in the VM
// lab, TestAnOffloadedFlowEndsAtTheCut). Read from the config rather than
// the kernel's flowtables: what the parent set, and no netlink parsing of
// flowtables in the binary (6 kB of mipsle text).
func flowOffloading(path string) bool {
	if path == "" {
		return false
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	f, err := uci.Parse(path, src)
	if err != nil {
		return false
	}
	for _, s := range f.Sections {
		if s.Type != "defaults" {
			continue
		}
		// (hardware offloading, flow_offloading_hw, needs this one on)
		if o, ok := s.Get("flow_offloading"); ok && o.Value == "1" {
			return true
		}
	}
	return false
}

// listed is the plan as status shows it: a few of each profile's blocked
// destinations, and their count.
func listed(p *plan.Plan) *plan.Plan {
	if p == nil {
		return nil
	}
	return p.Listed(control.ListedBlocked)
}

func (d *Daemon) devices() []control.Device {
	notes := d.notes()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []control.Device
	byMAC := map[string]int{}
	if d.last != nil {
		for _, pd := range d.last.Devices {
			byMAC[pd.MAC] = len(out)
			out = append(out, control.Device{MAC: pd.MAC, Name: pd.Name, Profile: pd.Profile, Configured: !pd.Unknown, WifiKey: pd.WifiKey,
				State: pd.State, Addresses: []string{}})
		}
	}
	for mac, sd := range d.seen {
		i, ok := byMAC[mac]
		if !ok {
			// seen since the last plan: it gets what unknown devices get
			dev := control.Device{MAC: mac, State: plan.Online, Addresses: []string{}}
			if d.last != nil && d.last.UnknownDevices != nil {
				dev.Profile, dev.State = d.last.UnknownDevices.Profile, d.last.UnknownDevices.State
			}
			byMAC[mac] = len(out)
			i = len(out)
			out = append(out, dev)
		}
		first, last := sd.first, sd.last
		out[i].FirstSeen, out[i].LastSeen = &first, &last
		for _, ip := range sd.ips {
			out[i].Addresses = append(out[i].Addresses, ip.String())
		}
		sort.Strings(out[i].Addresses)
	}
	for i := range out {
		if l, ok := d.leases[out[i].MAC]; ok {
			out[i].Hostname, out[i].ClientID = l.Hostname, l.ClientID
		}
		out[i].Note = notes[out[i].MAC]
	}
	return out
}

// targetDevices returns the plan's devices that target names.
func targetDevices(p *plan.Plan, target string) []plan.Device {
	var out []plan.Device
	if p == nil {
		return nil
	}
	for i := range p.Devices {
		if plan.Matches(target, &p.Devices[i]) {
			out = append(out, p.Devices[i])
		}
	}
	return out
}

// limitedService checks that the target's profile has an allowance for
// service today (a grant for a service it does not limit would do
// nothing) and returns the service's title.
func limitedService(p *plan.Plan, target, service string) (string, error) {
	if p != nil {
		for _, dev := range targetDevices(p, target) {
			for _, st := range dev.Services {
				if st.Service == service {
					return st.Title, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s has no time limit on %s today (service_limit in its profile)", target, service)
}

func (d *Daemon) explain(target string) (control.Explanation, error) {
	d.mu.Lock()
	p, cfg, loc := d.last, d.cfg, d.loc
	d.mu.Unlock()
	if p == nil || cfg == nil {
		return control.Explanation{}, errors.New("no plan yet: the config has not loaded")
	}
	devs := targetDevices(p, target)
	if len(devs) == 0 {
		return control.Explanation{}, fmt.Errorf("no device matches %q (a profile id, device name or MAC)", target)
	}
	ex := control.Explanation{Target: target}
	for _, dev := range devs {
		e := control.Explained{MAC: dev.MAC, Name: dev.Name, Profile: dev.Profile, State: dev.State,
			Reason: dev.Reason, Until: dev.Until, AlsoApplies: []string{}}
		e.Blocked = append([]string{}, dev.Blocked[:min(len(dev.Blocked), control.ListedBlocked)]...)
		e.BlockedCount = len(dev.Blocked)
		if r := p.Rules(dev.Profile); r != nil {
			e.Blocked = append(e.Blocked, r.Some(control.ListedBlocked-len(e.Blocked))...)
			e.BlockedCount += r.Count()
		}
		if dev.BudgetLeft != nil {
			e.BudgetLeft = plan.Short(time.Duration(*dev.BudgetLeft))
		}
		for _, st := range dev.Services {
			e.Services = append(e.Services, st.String())
		}
		e.Text = explainText(cfg, dev, p.At, loc, &e)
		d.mu.Lock()
		now := d.opts.Clock.Now()
		e.Requests = d.requestLines(dev.MAC, now)
		if day := d.usage.Days[now.In(loc).Format("2006-01-02")]; day != nil && day.Devices[dev.MAC] != nil {
			e.FlowsDropped = day.Devices[dev.MAC].FlowsDropped
		}
		d.mu.Unlock()
		e.FlowLimit = cfg.FlowLimit
		e.DNSBlocked = []string{}
		if d.opts.DNS != nil {
			c := d.opts.DNS.Stats().Get(dev.MAC)
			e.DNS = control.DNSCounters{Queries: c.Queries, Blocked: c.Blocked, BypassAttempts: c.Bypass}
			for _, q := range d.opts.DNS.QueryLog().Recent(func(q dnsfilter.Entry) bool {
				return q.MAC == dev.MAC && q.Verdict != "allowed"
			}, 5) {
				e.DNSBlocked = append(e.DNSBlocked, fmt.Sprintf("%s %s by %s", q.Name, q.Verdict, q.By))
			}
		}
		ex.Devices = append(ex.Devices, e)
	}
	return ex, nil
}

// explainText says in one line what state a device is in, until when and
// why, in the words of the plan table, each fact once: "offline until 07:00
// — schedule 'bedtime' (21:00-07:00, daily); paused by parent until 22:30
// would also apply", "online until 21:00, then offline — 2h of screen time
// left today", "online".
func explainText(cfg *config.Config, dev plan.Device, at time.Time, loc *time.Location, e *control.Explained) string {
	var text strings.Builder
	text.WriteString(string(dev.State))
	switch {
	case dev.Until != nil && dev.State == plan.Online:
		fmt.Fprintf(&text, " until %s, then offline", plan.When(*dev.Until, at, loc))
	case dev.Until != nil:
		fmt.Fprintf(&text, " until %s", plan.When(*dev.Until, at, loc))
	case dev.State == plan.Offline:
		text.WriteString(", no end foreseen")
	}
	main := dev.Reason
	if dev.State == plan.Offline && len(dev.Reasons) > 0 {
		main = enrich(cfg, dev.Reasons[0])
		for _, r := range dev.Reasons[1:] {
			e.AlsoApplies = append(e.AlsoApplies, enrich(cfg, r))
		}
	}
	if main != "" && main != "online" {
		text.WriteString(" — " + main)
	}
	for _, a := range e.AlsoApplies {
		fmt.Fprintf(&text, "; %s would also apply", a)
	}
	if e.BudgetLeft != "" && dev.State == plan.Online && !strings.Contains(main, "left today") {
		fmt.Fprintf(&text, "; %s of screen time left today", e.BudgetLeft)
	}
	for _, s := range e.Services {
		text.WriteString("; " + s)
	}
	return text.String()
}

// enrich turns the plan's short schedule reason into the parent-facing one:
// "schedule 'bedtime' (21:00-07:00, sun mon tue wed thu)".
func enrich(cfg *config.Config, reason string) string {
	for _, sc := range cfg.Schedules {
		short := fmt.Sprintf("schedule %s %s", sc.Label(), sc.Window)
		if reason == short {
			return fmt.Sprintf("schedule '%s' (%s, %s)", sc.Label(), sc.Window, sc.Window.Days)
		}
	}
	return reason
}

// resolveTarget checks that target names something and returns the form
// stored in the override: a profile id, a configured device name or a
// normalised MAC.
func resolveTarget(cfg *config.Config, target string) (string, error) {
	t := strings.TrimSpace(target)
	if cfg.Profile(t) != nil {
		return t, nil
	}
	for _, dev := range cfg.Devices {
		if dev.Name != "" && strings.EqualFold(dev.Name, t) {
			return dev.Name, nil
		}
	}
	if mac, err := net.ParseMAC(t); err == nil && len(mac) == 6 {
		return mac.String(), nil
	}
	return "", fmt.Errorf("unknown target %q: not a profile id, device name or MAC", target)
}

// nameOf is how a message names target: a configured device by its name
// when target is its MAC (LuCI's buttons and approvals act on MACs, since
// names may repeat a profile's id), else target as given.
func nameOf(cfg *config.Config, target string) string {
	for _, d := range cfg.Devices {
		if d.Name != "" && d.MAC.String() == target {
			return d.Name
		}
	}
	return target
}

// when turns --for / --until into an instant; --until HH:MM is the next
// such local time, and RFC 3339 is accepted too.
func when(now time.Time, loc *time.Location, forArg, untilArg string) (time.Time, error) {
	if forArg != "" {
		dur, err := config.ParseDuration(forArg)
		if err != nil || dur <= 0 {
			return time.Time{}, fmt.Errorf("--for: invalid duration %q (want e.g. 30m or 1h30m)", forArg)
		}
		if dur > control.MaxOverride {
			return time.Time{}, fmt.Errorf("--for %s: at most a year (366 days)", forArg)
		}
		return now.Add(dur), nil
	}
	if untilArg == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, untilArg); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("--until %s is in the past", untilArg)
		}
		if t.Sub(now) > control.MaxOverride {
			return time.Time{}, fmt.Errorf("--until %s: at most a year (366 days) ahead", untilArg)
		}
		return t, nil
	}
	c, err := schedule.ParseClock(untilArg)
	if err != nil {
		return time.Time{}, fmt.Errorf("--until: %v", err)
	}
	local := now.In(loc)
	y, m, day := local.Date()
	t := schedule.Resolve(loc, y, m, day, c)
	if !t.After(now) {
		t = schedule.Resolve(loc, y, m, day+1, c)
	}
	return t, nil
}

// act applies a parent's command: it updates the overrides, writes them to
// the state dir, and reconciles before answering, so that the kernel
// already enforces the change when the command returns.
func (d *Daemon) act(ctx context.Context, req *control.Request) (any, error) {
	// Whole seconds, as the plan's instant: a pause must cover the second
	// in which the parent gave it.
	now := d.opts.Clock.Now().Truncate(time.Second)
	d.mu.Lock()
	cfg, loc := d.cfg, d.loc
	d.mu.Unlock()
	if cfg == nil {
		return nil, errors.New("no config loaded yet")
	}
	target, err := resolveTarget(cfg, req.Target)
	if err != nil {
		return nil, err
	}
	var msg string
	who := nameOf(cfg, target)
	d.mu.Lock()
	ovs := live(d.overrides, now, loc)
	switch req.Method {
	case control.MethodPause:
		until, err := when(now, loc, req.For, req.Until)
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		ovs = withoutDevice(cfg, ovs, target, plan.Pause, plan.Allow) // the latest word wins
		ovs = append(ovs, plan.Override{Kind: plan.Pause, Target: target, From: now, Until: until})
		msg = "paused " + who
		if !until.IsZero() {
			msg += " until " + plan.When(until, now, loc)
		} else {
			msg += " until resumed"
		}
	case control.MethodResume:
		var still string
		ovs, msg, still = resume(cfg, ovs, target, now)
		if msg == "" {
			d.mu.Unlock()
			if still != "" {
				return nil, fmt.Errorf("%s has no pause of its own; %s", who, still)
			}
			return nil, fmt.Errorf("%s is not paused", who)
		}
		if still != "" {
			msg += "; " + still
		}
	case control.MethodAllow:
		until, err := when(now, loc, req.For, req.Until)
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		ovs = withoutDevice(cfg, ovs, target, plan.Pause, plan.Allow)
		ovs = append(ovs, plan.Override{Kind: plan.Allow, Target: target, From: now, Until: until})
		msg = fmt.Sprintf("allowed %s until %s", who, plan.When(until, now, loc))
	case control.MethodGrant:
		amount, err := config.ParseDuration(req.Amount)
		if err != nil || amount <= 0 || amount > control.MaxGrant {
			d.mu.Unlock()
			return nil, fmt.Errorf("invalid amount %q (want e.g. 15m or 1h)", req.Amount)
		}
		if req.Service != "" {
			title, err := limitedService(d.last, target, req.Service)
			if err != nil {
				d.mu.Unlock()
				return nil, err
			}
			ovs = append(ovs, plan.Override{Kind: plan.Grant, Target: target, From: now, Amount: amount,
				Day: now.In(loc).Format("2006-01-02"), Service: req.Service})
			msg = fmt.Sprintf("granted %s %s more %s today", who, plan.Short(amount), title)
			break
		}
		ovs = append(ovs, plan.Override{Kind: plan.Grant, Target: target, From: now, Amount: amount,
			Day: now.In(loc).Format("2006-01-02")})
		msg = fmt.Sprintf("granted %s %s more screen time today", who, plan.Short(amount))
	}
	if d.opts.StateDir != "" {
		if err := d.saveLocked(ovs); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	d.overrides = ovs
	d.mu.Unlock()
	d.log.Info("parent: " + msg)
	d.reconcileNow(ctx)
	return control.ActionResult{Message: msg, Overrides: ovs}, nil
}

// resume ends pauses for target. A profile's resume is what a parent means
// by "let Alice back online": the profile's pause and every pause of one of
// its devices. A device's resume ends the device's own pauses; if its
// profile is paused too, still says so and how to end that, since ending it
// would also free the profile's other devices. msg is empty when nothing
// was resumed.
func resume(cfg *config.Config, ovs []plan.Override, target string, now time.Time) (out []plan.Override, msg, still string) {
	n := len(ovs)
	out = without(ovs, target, plan.Pause)
	var dev *config.Device
	if prof := cfg.Profile(target); prof != nil {
		for _, d := range cfg.Devices {
			if d.Profile == prof.ID {
				out = without(without(out, d.MAC.String(), plan.Pause), d.Name, plan.Pause)
			}
		}
	} else {
		for _, d := range cfg.Devices {
			if strings.EqualFold(d.Name, target) || d.MAC.String() == target {
				dev = d
				out = without(without(out, d.MAC.String(), plan.Pause), d.Name, plan.Pause)
			}
		}
	}
	if dev != nil {
		for _, o := range out {
			if o.Kind == plan.Pause && o.Target == dev.Profile && !o.From.After(now) {
				still = fmt.Sprintf("it stays paused through profile %s (curfew resume %s ends that, for all its devices)", dev.Profile, dev.Profile)
			}
		}
	}
	switch removed := n - len(out); {
	case removed == 0:
		return out, "", still
	case removed == 1:
		msg = "resumed " + nameOf(cfg, target)
	default:
		msg = fmt.Sprintf("resumed %s (%d pauses ended)", nameOf(cfg, target), removed)
	}
	return out, msg, still
}

// withoutDevice is without for target and, when target is a configured
// device, for the device's other form (its name for its MAC and back): a
// pause from LuCI (by MAC) after an allow typed by name replaces it.
func withoutDevice(cfg *config.Config, ovs []plan.Override, target string, kinds ...string) []plan.Override {
	ovs = without(ovs, target, kinds...)
	for _, d := range cfg.Devices {
		if d.Name != "" && (d.MAC.String() == target || strings.EqualFold(d.Name, target)) {
			ovs = without(without(ovs, d.MAC.String(), kinds...), d.Name, kinds...)
		}
	}
	return ovs
}

// without removes the overrides of the given kinds for target.
func without(ovs []plan.Override, target string, kinds ...string) []plan.Override {
	var out []plan.Override
	for _, o := range ovs {
		drop := false
		for _, k := range kinds {
			if o.Kind == k && strings.EqualFold(o.Target, target) {
				drop = true
			}
		}
		if !drop {
			out = append(out, o)
		}
	}
	return out
}

// queryLog returns the DNS log, of target's devices when given.
func (d *Daemon) queryLog(target string, limit int) ([]control.LogEntry, error) {
	out := []control.LogEntry{}
	if d.opts.DNS == nil {
		return out, nil
	}
	var macs map[string]bool
	if strings.TrimSpace(target) != "" {
		d.mu.Lock()
		devs := targetDevices(d.last, target)
		d.mu.Unlock()
		if len(devs) == 0 {
			return nil, fmt.Errorf("no device matches %q (a profile id, device name or MAC)", target)
		}
		macs = map[string]bool{}
		for _, dev := range devs {
			macs[dev.MAC] = true
		}
	}
	for _, e := range d.opts.DNS.QueryLog().Recent(func(e dnsfilter.Entry) bool { return macs == nil || macs[e.MAC] }, limit) {
		out = append(out, control.LogEntry{Time: e.Time, MAC: e.MAC, Device: e.Device, Profile: e.Profile,
			Name: e.Name, Type: e.Type, Verdict: e.Verdict, By: e.By})
	}
	return out, nil
}
