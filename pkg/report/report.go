// Package report builds the weekly report from the usage history: per
// child profile, screen time per day against its limit, the services
// looked up most, blocked names, requests for more time, bypass attempts,
// and the new devices seen. It is pure: the daemon gives it the days and
// the config, and sends what it returns (JSON to a webhook, Text to an
// ntfy topic) or answers `curfew report` with it.
package report

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/schedule"
	"curfew/pkg/services"
)

// Report is the days From to To (local dates, both included).
type Report struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Profiles are the profiles with rules (a parents' profile without
	// any is left out), in the config's order.
	Profiles []Profile `json:"profiles"`
	// NewDevices are the unlisted MACs first seen in these days;
	// NewDevicesMore counts those past the per-day bound.
	NewDevices     []control.SeenDevice `json:"new_devices"`
	NewDevicesMore int                  `json:"new_devices_more,omitempty"`
}

// Profile is one child profile's days.
type Profile struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Devices []string `json:"devices"`
	// LimitMinutes is the daily screen-time limit (0: none).
	LimitMinutes int   `json:"limit_minutes"`
	Days         []Day `json:"days"`
	// Minutes is the screen time of all the days.
	Minutes int `json:"minutes"`
	// Services are the catalogue's services the devices looked up, by
	// the minutes in which they did (from DNS: where the time went, not
	// screen time), most first, at most TopN.
	Services []Count `json:"services"`
	// Limited are the profile's services with an allowance
	// (service_limit), by the minutes counted on them, most first.
	Limited []Count `json:"limited,omitempty"`
	// Blocked counts the names the filter refused, TopBlocked the most
	// refused (at most TopN).
	Blocked        int      `json:"blocked"`
	TopBlocked     []Count  `json:"top_blocked"`
	Requests       Requests `json:"requests"`
	BypassAttempts int      `json:"bypass_attempts"`
	// FlowsDropped counts new connections dropped for flow_limit.
	FlowsDropped uint64 `json:"flows_dropped"`
}

// Day is one local day's screen time.
type Day struct {
	Date    string `json:"date"`
	Minutes int    `json:"minutes"`
}

// Count is a name and how often or how long; a service's Title is the
// catalogue's name for people.
type Count struct {
	Name  string `json:"name"`
	Title string `json:"title,omitempty"`
	Count int    `json:"count"`
}

// Requests counts the requests for more time asked in the days, by how
// they were answered (an expired one counts as unanswered);
// GrantedMinutes is the time the approvals gave.
type Requests struct {
	Asked          int `json:"asked"`
	Approved       int `json:"approved"`
	Denied         int `json:"denied"`
	Unanswered     int `json:"unanswered"`
	GrantedMinutes int `json:"granted_minutes"`
}

// TopN bounds the services and blocked names a profile lists.
const TopN = 5

// Dates returns the n local dates that end with the one of now.
func Dates(now time.Time, n int) (from, to string) {
	y, m, d := now.Date()
	last := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	return last.AddDate(0, 0, 1-n).Format(time.DateOnly), last.Format(time.DateOnly)
}

// Next returns the first time after t at which the weekly report is due:
// day at the clock time at, in loc. A time that a DST change skips
// becomes the first instant after the jump, and one it repeats counts
// once, at its first occurrence, as schedules' times do
// (schedule.Resolve): the report comes once a week, whatever the clocks
// do.
func Next(t time.Time, loc *time.Location, day time.Weekday, at schedule.Clock) time.Time {
	y, m, d := t.In(loc).Date()
	start := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	for i := 0; ; i++ {
		date := start.AddDate(0, 0, i)
		if date.Weekday() != day {
			continue
		}
		if due := schedule.Resolve(loc, date.Year(), date.Month(), date.Day(), at); due.After(t) {
			return due
		}
	}
}

// Build makes the report of the dates from..to out of days (the usage
// history, in any order; dates outside are ignored), with its times in
// loc (the router's zone).
func Build(cfg *config.Config, days []control.UsageDay, from, to string, loc *time.Location) Report {
	r := Report{From: from, To: to, Profiles: []Profile{}, NewDevices: []control.SeenDevice{}}
	byDate := map[string]*control.UsageDay{}
	for i := range days {
		if days[i].Date >= from && days[i].Date <= to {
			byDate[days[i].Date] = &days[i]
		}
	}
	dates := between(from, to)
	for _, p := range cfg.Profiles {
		if hasRules(cfg, p) {
			r.Profiles = append(r.Profiles, profile(cfg, p, dates, byDate))
		}
	}
	for _, date := range dates {
		if ud := byDate[date]; ud != nil {
			for _, sd := range ud.NewDevices {
				sd.Time = sd.Time.In(loc)
				r.NewDevices = append(r.NewDevices, sd)
			}
			r.NewDevicesMore += ud.NewDevicesMore
		}
	}
	return r
}

// between lists the dates from..to (at most a year of them).
func between(from, to string) []string {
	f, err1 := time.Parse(time.DateOnly, from)
	t, err2 := time.Parse(time.DateOnly, to)
	var out []string
	for d := f; err1 == nil && err2 == nil && !d.After(t) && len(out) < 366; d = d.AddDate(0, 0, 1) {
		out = append(out, d.Format(time.DateOnly))
	}
	return out
}

// hasRules tells a child's profile from a parents' one without rules.
func hasRules(cfg *config.Config, p *config.Profile) bool {
	if p.DailyLimit > 0 || len(p.Block) > 0 || len(p.BlockService) > 0 || len(p.Blocklists) > 0 ||
		p.SafeSearch || p.Allowlist || p.WindDown > 0 || len(p.ServiceLimits) > 0 {
		return true
	}
	for _, s := range cfg.Schedules {
		if slices.Contains(s.Profiles, p.ID) {
			return true
		}
	}
	return false
}

// profile sums one profile's days.
func profile(cfg *config.Config, p *config.Profile, dates []string, byDate map[string]*control.UsageDay) Profile {
	out := Profile{ID: p.ID, Name: cmp.Or(p.Name, p.ID), Devices: []string{}, LimitMinutes: int(p.DailyLimit / time.Minute), Days: []Day{}}
	for _, dev := range cfg.Devices {
		if dev.Profile == p.ID {
			out.Devices = append(out.Devices, cmp.Or(dev.Name, dev.MAC.String()))
		}
	}
	svcs, blocked, limited := map[string]int{}, map[string]int{}, map[string]int{}
	for _, date := range dates {
		ud := byDate[date]
		if ud == nil {
			out.Days = append(out.Days, Day{Date: date})
			continue
		}
		mins := ud.Profiles[p.ID]
		out.Days = append(out.Days, Day{Date: date, Minutes: mins})
		for k, v := range ud.Services[p.ID] {
			limited[k] += v
		}
		out.Minutes += mins
		for _, du := range ud.Devices {
			if du.Profile != p.ID {
				continue
			}
			out.Blocked += du.Blocked
			out.BypassAttempts += du.BypassAttempts
			out.FlowsDropped += du.FlowsDropped
			for k, v := range du.Services {
				svcs[k] += v
			}
			for k, v := range du.TopBlocked {
				blocked[k] += v
			}
		}
		for _, rq := range ud.Requests {
			if rq.Profile == p.ID {
				out.Requests.add(rq)
			}
		}
	}
	out.Services, out.TopBlocked = titled(top(svcs)), top(blocked)
	if len(limited) > 0 {
		out.Limited = titled(top(limited))
	}
	return out
}

// titled gives services their catalogue titles.
func titled(cs []Count) []Count {
	for i, s := range cs {
		if svc := services.Builtin().Get(s.Name); svc != nil {
			cs[i].Title = svc.Title
		}
	}
	return cs
}

func (r *Requests) add(rq control.TimeRequest) {
	r.Asked++
	switch rq.Status {
	case control.RequestApproved:
		r.Approved++
		r.GrantedMinutes += rq.Granted
	case control.RequestDenied:
		r.Denied++
	default:
		r.Unanswered++
	}
}

// top returns the TopN largest counts, ties by name. (sort.Slice, which
// the binary has anyway: a generic sort of strings cost the router's
// binary 10 kB.)
func top(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for n, c := range m {
		out = append(out, Count{Name: n, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out[:min(len(out), TopN)]
}

// Title is the notification's title.
func (r Report) Title() string { return "curfew: the week " + r.From + " to " + r.To }

// Text is the report for people: a few lines per profile, for an ntfy
// topic or a terminal. Names from the devices (DHCP host names) are
// quoted, so that they read as the text they are.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s to %s\n", r.From, r.To)
	if len(r.Profiles) == 0 {
		b.WriteString("\nNo profile has rules.\n")
	}
	for _, p := range r.Profiles {
		p.text(&b)
	}
	if len(r.NewDevices) > 0 || r.NewDevicesMore > 0 {
		fmt.Fprintf(&b, "\nNew devices: %d\n", len(r.NewDevices)+r.NewDevicesMore)
		for _, sd := range r.NewDevices {
			fmt.Fprintf(&b, "  %s %s", sd.Time.Format("Mon 15:04"), sd.MAC)
			if sd.Hostname != "" {
				fmt.Fprintf(&b, " %q", sd.Hostname)
			}
			b.WriteString("\n")
		}
		if r.NewDevicesMore > 0 {
			fmt.Fprintf(&b, "  and %d more\n", r.NewDevicesMore)
		}
	}
	return b.String()
}

// text writes the profile's lines. (Concatenation rather than fmt: each
// formatted call costs the router's binary a few hundred bytes.)
func (p Profile) text(b *strings.Builder) {
	n := strconv.Itoa
	b.WriteString("\n" + p.Name + ": " + Minutes(p.Minutes) + " online")
	if p.LimitMinutes > 0 {
		over := 0
		for _, d := range p.Days {
			if d.Minutes > p.LimitMinutes {
				over++
			}
		}
		b.WriteString(" (limit " + Minutes(p.LimitMinutes) + " a day")
		if over > 0 {
			b.WriteString(", over it on " + n(over))
		}
		b.WriteString(")")
	}
	days := make([]string, 0, len(p.Days))
	for _, d := range p.Days {
		day, _ := time.Parse(time.DateOnly, d.Date)
		days = append(days, day.Format("Mon")+" "+Minutes(d.Minutes))
	}
	b.WriteString("\n  " + strings.Join(days, " · ") + "\n")
	var parts []string
	for _, s := range p.Limited {
		parts = append(parts, cmp.Or(s.Title, s.Name)+" "+Minutes(s.Count))
	}
	if len(parts) > 0 {
		b.WriteString("  Time on limited services: " + strings.Join(parts, ", ") + "\n")
		parts = parts[:0]
	}
	for _, s := range p.Services {
		parts = append(parts, cmp.Or(s.Title, s.Name)+" "+Minutes(s.Count))
	}
	if len(parts) > 0 {
		b.WriteString("  Looked up most: " + strings.Join(parts, ", ") + "\n")
	}
	if p.Blocked > 0 {
		parts = parts[:0]
		for _, c := range p.TopBlocked {
			parts = append(parts, c.Name+" "+n(c.Count))
		}
		b.WriteString("  Blocked: " + n(p.Blocked))
		if len(parts) > 0 {
			b.WriteString(" (" + strings.Join(parts, ", ") + ")")
		}
		b.WriteString("\n")
	}
	if rq := p.Requests; rq.Asked > 0 {
		b.WriteString("  Asked for more time: " + n(rq.Asked) + " (" + n(rq.Approved) + " approved, " + n(rq.Denied) + " denied, " + n(rq.Unanswered) + " unanswered)")
		if rq.GrantedMinutes > 0 {
			b.WriteString("; " + Minutes(rq.GrantedMinutes) + " given")
		}
		b.WriteString("\n")
	}
	if p.BypassAttempts > 0 {
		b.WriteString("  Tries to get around the filter: " + n(p.BypassAttempts) + "\n")
	}
	if p.FlowsDropped > 0 {
		b.WriteString("  Connections dropped for opening too many: " + strconv.FormatUint(p.FlowsDropped, 10) + "\n")
	}
}

// Minutes writes a number of minutes as "2h 5m", "45m" or "0m".
func Minutes(m int) string {
	switch {
	case m >= 60 && m%60 == 0:
		return strconv.Itoa(m/60) + "h"
	case m >= 60:
		return strconv.Itoa(m/60) + "h " + strconv.Itoa(m%60) + "m"
	}
	return strconv.Itoa(m) + "m"
}
