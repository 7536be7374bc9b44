package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/firewall"
	"curfew/pkg/notify"
	"curfew/pkg/plan"
	"curfew/pkg/report"
)

// countDevice adds a device's minute to its day (d.mu held): its bytes
// since the last reading (cur is the kernel's running count) and a minute
// of use when they pass the threshold. It returns the bytes; false at the
// first reading, which has no interval to judge.
func (d *Daemon) countDevice(day *usageDay, dev plan.Device, cur, threshold uint64) (uint64, bool) {
	prev, had := d.lastBytes[dev.MAC]
	delta := cur
	if had && cur >= prev {
		delta = cur - prev
	}
	d.lastBytes[dev.MAC] = cur
	if !had {
		return 0, false
	}
	du := day.device(dev)
	du.BytesUp += delta
	if delta > threshold {
		du.Minutes++
	}
	return delta, true
}

// countDNS adds a device's DNS minute to its day (d.mu held): its blocks
// and bypass tries since the last minute, and what it looked up (act) —
// of configured devices only: a child's thousand random MACs would each
// keep ten names a day, on flash.
func (d *Daemon) countDNS(day *usageDay, dev plan.Device, act *dnsfilter.Activity, now time.Time) {
	c := d.opts.DNS.Stats().Get(dev.MAC)
	last := d.lastDNS[dev.MAC]
	if dev.Unknown {
		act = nil
	}
	if c != last || act != nil {
		du := day.device(dev)
		du.Blocked += c.Blocked - last.Blocked
		du.BypassAttempts += c.Bypass - last.Bypass
		if act != nil {
			addActivity(du, act)
		}
	}
	if c.Bypass > last.Bypass {
		d.noteBypass(dev, now)
	}
	d.lastDNS[dev.MAC] = c
}

// addActivity adds a device's minute of DNS activity to its day: a
// minute for each service it looked up, and the names refused, of which
// the day keeps the control.MaxTopBlocked most refused.
func addActivity(du *control.DeviceUsage, act *dnsfilter.Activity) {
	for svc := range act.Services {
		if du.Services == nil {
			du.Services = map[string]int{}
		}
		du.Services[svc]++
	}
	for name, n := range act.Blocked {
		if du.TopBlocked == nil {
			du.TopBlocked = map[string]int{}
		}
		du.TopBlocked[name] += n
	}
	if over := len(du.TopBlocked) - control.MaxTopBlocked; over > 0 {
		names := make([]string, 0, len(du.TopBlocked))
		for name := range du.TopBlocked {
			names = append(names, name)
		}
		// the fewest first, and of equal counts the last name
		sort.Slice(names, func(i, j int) bool {
			a, b := names[i], names[j]
			if du.TopBlocked[a] != du.TopBlocked[b] {
				return du.TopBlocked[a] < du.TopBlocked[b]
			}
			return a > b
		})
		for _, name := range names[:over] {
			delete(du.TopBlocked, name)
		}
	}
}

// flowDropsEvery is how often a device's dropped connections are logged.
const flowDropsEvery = time.Hour

// countDrops adds the connections the kernel dropped for flow_limit since
// the last minute to each device's day, and logs a device that went over,
// at most once an hour: a parent whose device cannot connect must be able
// to find out why (explain shows the day's count too).
func (d *Daemon) countDrops(ctx context.Context) {
	fd, ok := d.opts.Backend.(firewall.FlowCounter)
	if !ok {
		return
	}
	drops, err := fd.FlowDrops(ctx)
	if err != nil {
		d.log.Warn("dropped-connection counts not read", "err", err)
		return
	}
	now := d.opts.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	p, loc, cfg := d.last, d.loc, d.cfg
	if p == nil || cfg == nil {
		return
	}
	// A count whose kernel element expired starts again from zero.
	for mac := range d.lastDrops {
		if _, ok := drops[mac]; !ok {
			delete(d.lastDrops, mac)
		}
	}
	if len(drops) == 0 {
		return
	}
	known := make(map[string]*plan.Device, len(p.Devices))
	for i := range p.Devices {
		known[p.Devices[i].MAC] = &p.Devices[i]
	}
	day := d.usage.day(now.In(loc).Format("2006-01-02"))
	for mac, cur := range drops {
		delta := cur
		if prev, ok := d.lastDrops[mac]; ok && cur >= prev {
			delta = cur - prev
		}
		d.lastDrops[mac] = cur
		if delta == 0 {
			continue
		}
		du := day.Devices[mac]
		if du == nil {
			if len(day.Devices) >= maxSeen {
				continue // forged MACs: the day's list stays bounded
			}
			du = &control.DeviceUsage{}
			if dev := known[mac]; dev != nil {
				du.Name, du.Profile = dev.Name, dev.Profile
			}
			day.Devices[mac] = du
		}
		du.FlowsDropped += delta
		if last, ok := d.dropsTold[mac]; ok && now.Sub(last) < flowDropsEvery {
			continue
		}
		if len(d.dropsTold) >= maxSeen {
			clear(d.dropsTold)
		}
		d.dropsTold[mac] = now
		d.log.Warn("a device opened new connections faster than flow_limit allows; the kernel dropped the rest",
			"device", cmp.Or(du.Name, mac), "mac", mac, "dropped", delta, "flow_limit", cfg.FlowLimit)
	}
}

// usageFile keeps the usage history in the state dir. It is written at
// most once an hour and on a clean stop — never per minute: flash wears.
const usageFile = "usage.json"

// keepDays is how much usage history is kept, and keepDetailDays how
// long of it keeps each device's blocked names and services (the weekly
// report's, which cost most of a day's bytes).
const (
	keepDays       = 30
	keepDetailDays = 7
)

// usageBook is the screen-time and activity history, per local day.
type usageBook struct {
	Days map[string]*usageDay `json:"days"`
	// ReportSent is when the last weekly report was due and sent: a
	// restart neither repeats nor forgets it.
	ReportSent time.Time `json:"report_sent,omitzero"`
}

type usageDay struct {
	// Profiles counts each profile's online minutes (its budget use).
	Profiles map[string]int `json:"profiles"`
	// Services counts each profile's minutes on its limited services
	// (profile, then service).
	Services map[string]map[string]int `json:"services,omitempty"`
	// Devices holds each device's activity.
	Devices map[string]*control.DeviceUsage `json:"devices"`
	// NewDevices are the day's first sightings of unlisted MACs.
	NewDevices     []control.SeenDevice `json:"new_devices,omitempty"`
	NewDevicesMore int                  `json:"new_devices_more,omitempty"`
}

// device returns dev's activity of the day, new if it has none yet.
func (d *usageDay) device(dev plan.Device) *control.DeviceUsage {
	du := d.Devices[dev.MAC]
	if du == nil {
		du = &control.DeviceUsage{Name: dev.Name, Profile: dev.Profile}
		d.Devices[dev.MAC] = du
	}
	return du
}

// sighted records an unlisted MAC's first sighting in its day.
func (d *usageDay) sighted(sd control.SeenDevice) {
	if len(d.NewDevices) >= control.MaxNewDevices {
		d.NewDevicesMore++
		return
	}
	d.NewDevices = append(d.NewDevices, sd)
}

func (b *usageBook) day(date string) *usageDay {
	if b.Days == nil {
		b.Days = map[string]*usageDay{}
	}
	d := b.Days[date]
	if d == nil {
		d = &usageDay{Profiles: map[string]int{}, Devices: map[string]*control.DeviceUsage{}}
		b.Days[date] = d
	}
	return d
}

func (b *usageBook) prune(today string, now time.Time) {
	cutoff := now.AddDate(0, 0, -keepDays).Format("2006-01-02")
	detail := now.AddDate(0, 0, 1-keepDetailDays).Format("2006-01-02")
	for date, day := range b.Days {
		switch {
		case date < cutoff:
			delete(b.Days, date)
		case date < detail:
			for _, du := range day.Devices {
				du.TopBlocked, du.Services = nil, nil
			}
		}
	}
}

func loadUsage(dir string) (*usageBook, error) {
	b := &usageBook{}
	data, err := os.ReadFile(filepath.Join(dir, usageFile))
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(data, b)
}

// used returns each profile's screen time on date, for the plan.
func (b *usageBook) used(date string) map[string]time.Duration {
	out := map[string]time.Duration{}
	if d := b.Days[date]; d != nil {
		for p, m := range d.Profiles {
			out[p] = time.Duration(m) * time.Minute
		}
	}
	return out
}

// tick counts one minute: a device whose traffic since the last tick
// exceeds the threshold was online in it, and so was its profile if its
// devices together exceed it (the budget is shared by the profile's
// devices: two tablets at once cost one minute, not two). Background
// chatter of an idle phone stays under the threshold.
func (d *Daemon) tick(ctx context.Context) {
	d.weeklyReport(d.opts.Clock.Now())
	d.countDrops(ctx)
	ctr, ok := d.opts.Backend.(firewall.Counters)
	if !ok {
		return
	}
	counts, err := ctr.Counters(ctx)
	if err != nil {
		d.log.Warn("usage counters not read", "err", err)
		return
	}
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	svcCounts := d.readServices(ctx, last)
	now := d.opts.Clock.Now()
	d.mu.Lock()
	p, loc, cfg := d.last, d.loc, d.cfg
	if p == nil || cfg == nil {
		d.mu.Unlock()
		return
	}
	date := now.In(loc).Format("2006-01-02")
	day := d.usage.day(date)
	threshold := cfg.ActiveThreshold
	var acts map[string]*dnsfilter.Activity
	if d.opts.DNS != nil {
		acts = d.opts.DNS.Stats().Drain()
	}
	perProfile := map[string]uint64{}
	for _, dev := range p.Devices {
		if !dev.Managed {
			continue
		}
		if cur, seen := counts[dev.MAC]; seen {
			if delta, ok := d.countDevice(day, dev, cur, threshold); ok {
				perProfile[dev.Profile] += delta
			}
		}
		if d.opts.DNS != nil {
			d.countDNS(day, dev, acts[dev.MAC], now)
		}
	}
	exhausted := d.countServices(day, svcCounts, p, threshold)
	for prof, bytes := range perProfile {
		if bytes <= threshold {
			continue
		}
		day.Profiles[prof]++
		if cp := cfg.Profile(prof); cp != nil && cp.DailyLimit > 0 && time.Duration(day.Profiles[prof])*time.Minute >= cp.DailyLimit {
			exhausted = true
		}
	}
	d.usage.prune(date, now)
	save := d.opts.StateDir != "" && now.Sub(d.usageSaved) >= time.Hour
	if save {
		d.usageSaved = now
	}
	d.mu.Unlock()
	if save {
		d.saveUsage()
	}
	if exhausted {
		d.kick()
	}
}

func (d *Daemon) saveUsage() {
	d.mu.Lock()
	data, err := json.Marshal(d.usage)
	d.mu.Unlock()
	if err == nil {
		err = atomicWrite(d.opts.StateDir, usageFile, data)
	}
	if err != nil {
		d.log.Warn("usage history not saved", "err", err)
	}
}

// countMinutes runs tick every minute (MinuteLength) until ctx ends.
func (d *Daemon) countMinutes(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.opts.MinuteLength):
			d.tick(ctx)
		}
	}
}

// usageReport answers `usage`: the last days of history, newest first.
func (d *Daemon) usageReport(target string, days int) ([]control.UsageDay, error) {
	if days <= 0 {
		days = 7
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var macs map[string]bool
	var profiles map[string]bool
	if target != "" {
		devs := targetDevices(d.last, target)
		if len(devs) == 0 {
			return nil, errors.New("no device matches " + target)
		}
		macs, profiles = map[string]bool{}, map[string]bool{}
		for _, dev := range devs {
			macs[dev.MAC] = true
			profiles[dev.Profile] = true
		}
	}
	var dates []string
	for date := range d.usage.Days {
		dates = append(dates, date)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dates)))
	if len(dates) > days {
		dates = dates[:days]
	}
	out := []control.UsageDay{}
	for _, date := range dates {
		day := d.usage.Days[date]
		ud := control.UsageDay{Date: date, Profiles: map[string]int{}, Devices: map[string]control.DeviceUsage{}, Requests: []control.TimeRequest{}}
		if macs == nil {
			ud.NewDevices, ud.NewDevicesMore = slices.Clone(day.NewDevices), day.NewDevicesMore
		}
		for _, r := range d.requests {
			if r.AskedAt.In(d.loc).Format("2006-01-02") == date && (macs == nil || macs[r.MAC]) {
				ud.Requests = append(ud.Requests, r)
			}
		}
		for p, m := range day.Profiles {
			if profiles == nil || profiles[p] {
				ud.Profiles[p] = m
			}
		}
		for p, svcs := range day.Services {
			if profiles == nil || profiles[p] {
				if ud.Services == nil {
					ud.Services = map[string]map[string]int{}
				}
				ud.Services[p] = maps.Clone(svcs)
			}
		}
		for mac, du := range day.Devices {
			if macs == nil || macs[mac] {
				ud.Devices[mac] = *du
			}
		}
		out = append(out, ud)
	}
	return out, nil
}

// report answers `report` and makes the weekly one: the n local days
// that end with now's.
func (d *Daemon) report(now time.Time, n int) (report.Report, error) {
	d.mu.Lock()
	cfg, loc := d.cfg, d.loc
	d.mu.Unlock()
	if cfg == nil || loc == nil {
		return report.Report{}, errors.New("no config loaded yet")
	}
	days, err := d.usageReport("", keepDays+1)
	if err != nil {
		return report.Report{}, err
	}
	from, to := report.Dates(now.In(loc), n)
	return report.Build(cfg, days, from, to, loc), nil
}

// weeklyReport sends the weekly report when it is due (each minute's
// tick asks): once a week at report_day and report_time in the router's
// zone, late rather than never when the router was off at that time, and
// never twice — the time it was due is kept with the usage history and
// saved at once. Only a clock NTP has confirmed is believed: a router's
// clock at boot is its firmware's date.
func (d *Daemon) weeklyReport(now time.Time) {
	if !d.clockTrusted() {
		return
	}
	d.mu.Lock()
	cfg, loc, last := d.cfg, d.loc, d.usage.ReportSent
	if cfg == nil || loc == nil {
		d.mu.Unlock()
		return
	}
	// The first start, or a time saved by a clock that was far ahead:
	// count from now.
	if last.IsZero() || last.Sub(now) > 7*24*time.Hour {
		d.usage.ReportSent = now
		d.mu.Unlock()
		return
	}
	due := report.Next(last, loc, cfg.ReportDay, cfg.ReportTime)
	if now.Before(due) {
		d.mu.Unlock()
		return
	}
	// After weeks switched off, one report, of the last week.
	for n := report.Next(due, loc, cfg.ReportDay, cfg.ReportTime); !now.Before(n); n = report.Next(n, loc, cfg.ReportDay, cfg.ReportTime) {
		due = n
	}
	d.usage.ReportSent = due
	d.mu.Unlock()
	r, err := d.report(due, 7)
	if err != nil {
		return
	}
	d.notify(notify.Event{Event: notify.WeeklyReport, Time: due, Text: r.Text(), Report: r})
	if d.opts.StateDir != "" {
		d.saveUsage()
	}
}

// servicesToday is the plan's input: time each profile used on each
// limited service today.
func (d *Daemon) servicesToday(now time.Time, loc *time.Location) map[string]map[string]time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]map[string]time.Duration{}
	if day := d.usage.Days[now.In(loc).Format("2006-01-02")]; day != nil {
		for p, svcs := range day.Services {
			out[p] = map[string]time.Duration{}
			for s, m := range svcs {
				out[p][s] = time.Duration(m) * time.Minute
			}
		}
	}
	return out
}

// usedToday is the plan's input: screen time each profile used today.
func (d *Daemon) usedToday(now time.Time, loc *time.Location) map[string]time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage.used(now.In(loc).Format("2006-01-02"))
}
