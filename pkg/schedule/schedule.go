// Package schedule turns weekly wall-clock windows ("21:00–07:00 on school
// nights") into absolute instants in a given location.
//
// The rules, from the product spec:
//   - a window belongs to the day it starts: fri 22:00–08:00 runs Friday
//     22:00 to Saturday 08:00;
//   - stop <= start means the window ends on the next day; stop 24:00 is the
//     next midnight; start == stop is refused by the config layer;
//   - on DST days a window keeps its wall-clock start and stop; a time inside
//     the skipped hour means the first valid instant after it (the moment of
//     the jump), and an ambiguous time means its first occurrence.
//
// Everything here is pure: the location and instants are parameters.
package schedule

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Days is a set of weekdays, bit i for time.Weekday(i).
type Days uint8

// AllDays is every day of the week.
const AllDays Days = 0x7f

// Has reports whether d contains w.
func (d Days) Has(w time.Weekday) bool { return d&(1<<uint(w)) != 0 }

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// String lists the days in Monday-first order, as parents read a week,
// with the short forms the config accepts ("daily", "weekdays", "weekend").
func (d Days) String() string {
	switch d {
	case AllDays:
		return "daily"
	case 0x3e:
		return "weekdays"
	case 0x41:
		return "weekend"
	}
	var parts []string
	for _, w := range []int{1, 2, 3, 4, 5, 6, 0} {
		if d.Has(time.Weekday(w)) {
			parts = append(parts, dayNames[w])
		}
	}
	return strings.Join(parts, " ")
}

// ParseDays parses space-separated day names: mon..sun (also full English
// names), daily, weekdays, weekend.
func ParseDays(s string) (Days, error) {
	var d Days
	fields := strings.Fields(strings.ToLower(s))
	if len(fields) == 0 {
		return 0, fmt.Errorf("no days given (want mon..sun, daily, weekdays or weekend)")
	}
	for _, f := range fields {
		switch f {
		case "daily", "everyday", "all":
			d |= AllDays
			continue
		case "weekdays":
			d |= 0x3e
			continue
		case "weekend", "weekends":
			d |= 0x41
			continue
		}
		found := false
		for i, n := range dayNames {
			if f == n || f == strings.ToLower(time.Weekday(i).String()) {
				d |= 1 << uint(i)
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown day %q (want mon..sun, daily, weekdays or weekend)", f)
		}
	}
	return d, nil
}

// Clock is a wall-clock time of day in minutes, 0..1440 (1440 is 24:00).
type Clock int

// ParseClock parses HH:MM, 00:00 to 24:00.
func ParseClock(s string) (Clock, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, fmt.Errorf("invalid time %q (want HH:MM, 00:00 to 24:00)", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("invalid time %q (want HH:MM, 00:00 to 24:00)", s)
	}
	return Clock(hh*60 + mm), nil
}

func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

// Window is a weekly window: on each of Days, from Start to Stop local time.
type Window struct {
	Days  Days
	Start Clock
	Stop  Clock
}

func (w Window) String() string { return w.Start.String() + "-" + w.Stop.String() }

// Interval is a half-open span of absolute time [From, To).
type Interval struct {
	From, To time.Time
}

// Contains reports whether t is inside the interval.
func (i Interval) Contains(t time.Time) bool { return !t.Before(i.From) && t.Before(i.To) }

// Resolve turns a local date and a wall-clock time into an instant in loc,
// following the spec's DST rules. time.Date leaves the choice in gaps and
// overlaps unspecified, so we decide ourselves.
func Resolve(loc *time.Location, year int, month time.Month, day int, c Clock) time.Time {
	naive := time.Date(year, month, day, 0, int(c), 0, 0, time.UTC)
	var best time.Time
	found := false
	// Any offset valid near this wall time is in force within a day of it.
	for _, probe := range []time.Duration{-36 * time.Hour, 0, 36 * time.Hour} {
		_, off := naive.Add(probe).In(loc).Zone()
		cand := naive.Add(-time.Duration(off) * time.Second)
		if _, o := cand.In(loc).Zone(); o == off && (!found || cand.Before(best)) {
			best, found = cand, true
		}
	}
	if found {
		return best.In(loc)
	}
	// In a gap: read the wall time with the offset from before the jump;
	// that lands after the jump, and the zone in force there began at the
	// jump itself, the first valid instant after the skipped time.
	_, before := naive.Add(-36 * time.Hour).In(loc).Zone()
	start, _ := naive.Add(-time.Duration(before) * time.Second).In(loc).ZoneBounds()
	return start.In(loc)
}

// Occurrence returns the window's instance that starts on the given local
// date (which must be one of its days: the caller checks).
func (w Window) Occurrence(loc *time.Location, year int, month time.Month, day int) Interval {
	from := Resolve(loc, year, month, day, w.Start)
	stopDay := day
	if w.Stop <= w.Start {
		stopDay++
	}
	to := Resolve(loc, year, month, stopDay, w.Stop)
	return Interval{From: from, To: to}
}

// Occurrences returns every instance of w that overlaps [from, to), in order.
// Windows are at most a day long, so it starts looking a day early.
func (w Window) Occurrences(loc *time.Location, from, to time.Time) []Interval {
	var out []Interval
	d := from.In(loc)
	y, m, dd := d.Date()
	for i := -1; ; i++ {
		day := time.Date(y, m, dd+i, 12, 0, 0, 0, loc) // noon: never in a gap
		if !day.Before(to.Add(24 * time.Hour)) {
			break
		}
		if !w.Days.Has(day.Weekday()) {
			continue
		}
		dy, dm, ddd := day.Date()
		occ := w.Occurrence(loc, dy, dm, ddd)
		if occ.To.After(occ.From) && occ.To.After(from) && occ.From.Before(to) {
			out = append(out, occ)
		}
	}
	return out
}

// Merge sorts intervals and joins those that overlap or touch.
func Merge(in []Interval) []Interval {
	if len(in) == 0 {
		return nil
	}
	s := append([]Interval(nil), in...)
	sort.Slice(s, func(i, j int) bool { return s[i].From.Before(s[j].From) })
	out := []Interval{s[0]}
	for _, iv := range s[1:] {
		last := &out[len(out)-1]
		if !iv.From.After(last.To) {
			if iv.To.After(last.To) {
				last.To = iv.To
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// Subtract removes the spans of cut from in; both must be merged.
func Subtract(in, cut []Interval) []Interval {
	var out []Interval
	for _, iv := range in {
		parts := []Interval{iv}
		for _, c := range cut {
			var next []Interval
			for _, p := range parts {
				if !c.From.Before(p.To) || !c.To.After(p.From) {
					next = append(next, p)
					continue
				}
				if c.From.After(p.From) {
					next = append(next, Interval{From: p.From, To: c.From})
				}
				if c.To.Before(p.To) {
					next = append(next, Interval{From: c.To, To: p.To})
				}
			}
			parts = next
		}
		out = append(out, parts...)
	}
	return out
}
