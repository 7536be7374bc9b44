package schedule

import (
	"testing"
	"time"

	"curfew/pkg/tz"
)

// zones returns each test zone twice: from the POSIX string OpenWrt writes
// and from its IANA name, so both paths are held to the same expectations.
func zones(t *testing.T, name, posix string) map[string]*time.Location {
	t.Helper()
	out := map[string]*time.Location{}
	p, err := tz.POSIX(posix)
	if err != nil {
		t.Fatal(err)
	}
	out["posix "+posix] = p
	if l, err := time.LoadLocation(name); err == nil {
		out["zonename "+name] = l
	} else if testingCI {
		t.Fatalf("no zoneinfo for %s in CI: %v", name, err)
	}
	return out
}

func mustDays(t *testing.T, s string) Days {
	d, err := ParseDays(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustClock(t *testing.T, s string) Clock {
	c, err := ParseClock(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOccurrencesOnDSTDays(t *testing.T) {
	tests := []struct {
		name        string
		zone, posix string
		days        string
		start, stop string
		date        string // local date the window starts on
		wantFrom    string // RFC 3339, UTC
		wantTo      string
	}{
		{"London bedtime on the spring-forward night is an hour shorter", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"sat", "21:00", "07:00", "2026-03-28", "2026-03-28T21:00:00Z", "2026-03-29T06:00:00Z"},
		{"London start inside the skipped hour begins at the jump", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"sun", "01:30", "03:00", "2026-03-29", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
		{"London ambiguous start on fall-back night means the first 01:30", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"sun", "01:30", "02:00", "2026-10-25", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z"},
		{"London bedtime on the fall-back night is an hour longer", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"sat", "21:00", "07:00", "2026-10-24", "2026-10-24T20:00:00Z", "2026-10-25T07:00:00Z"},
		{"New York start inside the skipped hour", "America/New_York", "EST5EDT,M3.2.0,M11.1.0",
			"sun", "02:30", "03:30", "2026-03-08", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"},
		{"New York bedtime across the fall-back night keeps wall-clock ends", "America/New_York", "EST5EDT,M3.2.0,M11.1.0",
			"sat", "21:00", "07:00", "2026-10-31", "2026-11-01T01:00:00Z", "2026-11-01T12:00:00Z"},
		{"Sydney ambiguous start when DST ends in April", "Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3",
			"sun", "02:30", "06:00", "2026-04-05", "2026-04-04T15:30:00Z", "2026-04-04T20:00:00Z"},
		{"Sydney start in the October gap", "Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3",
			"sun", "02:15", "04:00", "2026-10-04", "2026-10-03T16:00:00Z", "2026-10-03T17:00:00Z"},
		{"stop 24:00 is the next midnight", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"daily", "23:00", "24:00", "2026-03-28", "2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z"},
		{"whole-day window starting at midnight", "Europe/London", "GMT0BST,M3.5.0/1,M10.5.0",
			"sun", "00:00", "24:00", "2026-03-29", "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"},
	}
	for _, tt := range tests {
		for zname, loc := range zones(t, tt.zone, tt.posix) {
			t.Run(tt.name+"/"+zname, func(t *testing.T) {
				w := Window{Days: mustDays(t, tt.days), Start: mustClock(t, tt.start), Stop: mustClock(t, tt.stop)}
				d, _ := time.Parse("2006-01-02", tt.date)
				got := w.Occurrence(loc, d.Year(), d.Month(), d.Day())
				if f := got.From.UTC().Format(time.RFC3339); f != tt.wantFrom {
					t.Errorf("from = %s, want %s", f, tt.wantFrom)
				}
				if to := got.To.UTC().Format(time.RFC3339); to != tt.wantTo {
					t.Errorf("to = %s, want %s", to, tt.wantTo)
				}
			})
		}
	}
}

func TestWindowsBelongToTheDayTheyStart(t *testing.T) {
	loc, err := tz.POSIX("CET-1CEST,M3.5.0,M10.5.0/3")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	school := Window{Days: mustDays(t, "sun mon tue wed thu"), Start: 21 * 60, Stop: 7 * 60}
	friday := Window{Days: mustDays(t, "fri"), Start: 22 * 60, Stop: 8 * 60}
	tests := []struct {
		name string
		w    Window
		at   string
		want bool
	}{
		// 2026-01-05 is a Monday.
		{"school night Thursday 23:00 is inside", school, "2026-01-08 23:00", true},
		{"Friday 23:00 is not a school night", school, "2026-01-09 23:00", false},
		{"Friday morning 06:00 ends Thursday's window", school, "2026-01-09 06:00", true},
		{"Saturday 06:00 has no window (Friday not listed)", school, "2026-01-10 06:00", false},
		{"Monday 06:00 belongs to Sunday's window", school, "2026-01-05 06:00", true},
		{"window end is exclusive", school, "2026-01-06 07:00", false},
		{"window start is inclusive", school, "2026-01-05 21:00", true},
		{"Friday night window reaches into Saturday", friday, "2026-01-10 07:59", true},
		{"Friday night window ends Saturday 08:00", friday, "2026-01-10 08:00", false},
		{"Saturday night is not Friday night", friday, "2026-01-10 23:00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := at(tt.at)
			got := false
			for _, iv := range tt.w.Occurrences(loc, a.Add(-48*time.Hour), a.Add(48*time.Hour)) {
				got = got || iv.Contains(a)
			}
			if got != tt.want {
				t.Errorf("inside = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseDaysAndClock(t *testing.T) {
	for in, want := range map[string]Days{
		"daily": AllDays, "weekdays": 0x3e, "weekend": 0x41, "mon wed": 0x0a, "Sunday saturday": 0x41,
	} {
		if got, err := ParseDays(in); err != nil || got != want {
			t.Errorf("ParseDays(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "mo", "funday"} {
		if _, err := ParseDays(bad); err == nil {
			t.Errorf("ParseDays(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"25:00", "24:01", "7", "07:60", "ab:cd", "-1:00", "07:5"} {
		if _, err := ParseClock(bad); err == nil {
			t.Errorf("ParseClock(%q) accepted", bad)
		}
	}
	if c, err := ParseClock("7:05"); err != nil || c != 425 {
		t.Errorf("ParseClock(7:05) = %v, %v", c, err)
	}
}

func TestMergeAndSubtract(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return base.Add(time.Duration(n) * time.Hour) }
	merged := Merge([]Interval{{h(5), h(7)}, {h(1), h(3)}, {h(2), h(4)}, {h(4), h(5)}})
	if len(merged) != 1 || !merged[0].From.Equal(h(1)) || !merged[0].To.Equal(h(7)) {
		t.Errorf("overlapping and touching windows merge: got %v", merged)
	}
	cut := Subtract([]Interval{{h(1), h(10)}}, []Interval{{h(2), h(3)}, {h(9), h(12)}})
	want := []Interval{{h(1), h(2)}, {h(3), h(9)}}
	if len(cut) != len(want) {
		t.Fatalf("subtract = %v", cut)
	}
	for i := range want {
		if !cut[i].From.Equal(want[i].From) || !cut[i].To.Equal(want[i].To) {
			t.Errorf("subtract[%d] = %v, want %v", i, cut[i], want[i])
		}
	}
}
