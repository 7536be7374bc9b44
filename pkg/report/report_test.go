package report

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/schedule"
	"curfew/pkg/services"
	"curfew/pkg/tz"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/report -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test ./pkg/report -update, then review the diff):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

const weekConfig = `
config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'guest'

config profile 'guest'
	option name 'Unknown devices'
	option safesearch '1'

config profile 'family'
	option name 'Family (no rules)'

config profile 'alice'
	option name 'Alice'
	option daily_limit '2h'
	list block_service 'tiktok'
	list service_limit 'youtube 1h'

config profile 'bob'
	option name 'Bob'

config device
	option mac '02:00:00:00:00:a1'
	option name 'Alice phone'
	option profile 'alice'

config device
	option mac '02:00:00:00:00:a2'
	option name 'Alice tablet'
	option profile 'alice'

config device
	option mac '02:00:00:00:00:b1'
	option name 'Bob laptop'
	option profile 'bob'

config device
	option mac '02:00:00:00:00:f1'
	option name 'Dad'
	option profile 'family'

config schedule 'bedtime'
	list profile 'bob'
	option days 'daily'
	option start '21:00'
	option stop '07:00'
`

func weekCfg(t *testing.T) *config.Config {
	t.Helper()
	cfg, _, err := config.Parse("curfew", []byte(weekConfig), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testWeek is a week of usage, Monday 30 November to Sunday 6 December
// 2026, as the daemon records it, with a day outside the week on each
// side that the report must leave out.
func testWeek() []control.UsageDay {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	day := func(date string, alice, bob int) control.UsageDay {
		return control.UsageDay{Date: date, Profiles: map[string]int{"alice": alice, "bob": bob, "family": 300},
			Services: map[string]map[string]int{"alice": {"youtube": min(alice/2, 60)}},
			Devices: map[string]control.DeviceUsage{
				"02:00:00:00:00:a1": {Name: "Alice phone", Profile: "alice", Minutes: alice, Blocked: 10, BypassAttempts: 1,
					TopBlocked: map[string]int{"tiktok.com": 6, "www.tiktok.com": 3, "v16.tiktokcdn.com": 1},
					Services:   map[string]int{"youtube": alice / 2, "roblox": 10}},
				"02:00:00:00:00:a2": {Name: "Alice tablet", Profile: "alice", Minutes: 15, Blocked: 2,
					TopBlocked: map[string]int{"tiktok.com": 2}, Services: map[string]int{"netflix": 15}},
				"02:00:00:00:00:b1": {Name: "Bob laptop", Profile: "bob", Minutes: bob, FlowsDropped: 3,
					Services: map[string]int{"minecraft": bob}},
				"02:00:00:00:00:f1": {Name: "Dad", Profile: "family", Minutes: 300, Services: map[string]int{"netflix": 120}},
			},
			Requests: []control.TimeRequest{}}
	}
	days := []control.UsageDay{
		day("2026-11-29", 500, 500),
		day("2026-11-30", 95, 60), day("2026-12-01", 120, 45), day("2026-12-02", 130, 0),
		day("2026-12-04", 80, 200), day("2026-12-05", 150, 30), day("2026-12-06", 40, 10),
		day("2026-12-07", 500, 500),
	}
	// Wednesday: Alice asked three times; Friday a new device.
	days[3].Requests = []control.TimeRequest{
		{ID: "4", Profile: "alice", Device: "Alice phone", Minutes: 30, Status: control.RequestApproved, Granted: 30},
		{ID: "5", Profile: "alice", Device: "Alice phone", Minutes: 30, Status: control.RequestDenied},
		{ID: "6", Profile: "alice", Device: "Alice tablet", Minutes: 15, Status: control.RequestExpired},
	}
	days[5].NewDevices = []control.SeenDevice{
		{MAC: "5a:00:00:00:00:01", Hostname: "Alices-iPhone", Time: at("2026-12-05T19:02:00Z")},
		{MAC: "5a:00:00:00:00:02", Hostname: "<b>x</b>", Time: at("2026-12-05T19:03:00Z")},
	}
	days[5].NewDevicesMore = 7
	return days
}

func TestAWeekOfUsageMakesTheReport(t *testing.T) {
	r := Build(weekCfg(t), testWeek(), "2026-11-30", "2026-12-06", london(t))
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "week.json", append(js, '\n'))
	golden(t, "week.txt", []byte(r.Text()))

	if len(r.Profiles) != 3 || r.Profiles[0].ID != "guest" || r.Profiles[1].ID != "alice" || r.Profiles[2].ID != "bob" {
		t.Fatalf("profiles %+v, want guest, alice, bob (family has no rules)", r.Profiles)
	}
	alice := r.Profiles[1]
	if alice.Minutes != 95+120+130+80+150+40 || len(alice.Days) != 7 || alice.Days[3] != (Day{Date: "2026-12-03"}) {
		t.Errorf("alice's days %+v (%d minutes), want 7 with a silent Thursday", alice.Days, alice.Minutes)
	}
	if alice.Blocked != 6*12 || alice.TopBlocked[0] != (Count{Name: "tiktok.com", Count: 6 * 8}) {
		t.Errorf("alice blocked %d, top %+v", alice.Blocked, alice.TopBlocked)
	}
	if want := (Requests{Asked: 3, Approved: 1, Denied: 1, Unanswered: 1, GrantedMinutes: 30}); alice.Requests != want {
		t.Errorf("alice's requests %+v, want %+v", alice.Requests, want)
	}
	if len(r.NewDevices) != 2 || r.NewDevicesMore != 7 {
		t.Errorf("new devices %+v and %d more", r.NewDevices, r.NewDevicesMore)
	}
}

func TestAnEmptyHistoryMakesAReportOfSilentDays(t *testing.T) {
	r := Build(weekCfg(t), nil, "2026-11-30", "2026-12-06", london(t))
	if len(r.Profiles) != 3 || len(r.Profiles[1].Days) != 7 || r.Profiles[1].Minutes != 0 {
		t.Errorf("empty week: %+v", r.Profiles)
	}
	if js, _ := json.Marshal(r); string(js) == "" || r.Text() == "" {
		t.Error("nothing rendered")
	}
}

func london(t *testing.T) *time.Location {
	t.Helper()
	loc, err := tz.POSIX("GMT0BST,M3.5.0/1,M10.5.0")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestDatesEndWithToday(t *testing.T) {
	berlin, err := tz.POSIX("CET-1CEST,M3.5.0,M10.5.0/3")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now      time.Time
		n        int
		from, to string
	}{
		{time.Date(2026, 12, 6, 18, 0, 0, 0, berlin), 7, "2026-11-30", "2026-12-06"},
		{time.Date(2026, 3, 29, 3, 30, 0, 0, berlin), 7, "2026-03-23", "2026-03-29"},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, berlin), 3, "2025-12-30", "2026-01-01"},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, berlin), 1, "2026-01-01", "2026-01-01"},
	} {
		if from, to := Dates(c.now, c.n); from != c.from || to != c.to {
			t.Errorf("Dates(%v, %d) = %s..%s, want %s..%s", c.now, c.n, from, to, c.from, c.to)
		}
	}
}

func TestMinutesReadLikeDurations(t *testing.T) {
	for m, want := range map[int]string{0: "0m", 45: "45m", 60: "1h", 125: "2h 5m", 1440: "24h"} {
		if got := Minutes(m); got != want {
			t.Errorf("Minutes(%d) = %q, want %q", m, got, want)
		}
	}
}

// The report is due once a week at its time in the router's zone: on the
// days the clocks change too, where its time may not exist or may come
// twice.
func TestTheReportIsDueOnceAWeekAcrossDST(t *testing.T) {
	berlin, err := tz.POSIX("CET-1CEST,M3.5.0,M10.5.0/3")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name  string
		after string
		day   time.Weekday
		clock schedule.Clock
		want  string
	}{
		{"a week day later", "2026-12-02T10:00:00+01:00", time.Sunday, 18 * 60, "2026-12-06T18:00:00+01:00"},
		{"later the same day", "2026-12-06T17:59:00+01:00", time.Sunday, 18 * 60, "2026-12-06T18:00:00+01:00"},
		{"at the time itself: a week on", "2026-12-06T18:00:00+01:00", time.Sunday, 18 * 60, "2026-12-13T18:00:00+01:00"},
		{"the Sunday summer time begins: 18:00 is an hour nearer", "2026-03-28T18:00:00+01:00", time.Sunday, 18 * 60, "2026-03-29T18:00:00+02:00"},
		{"a time the spring change skips: the first instant after", "2026-03-28T18:00:00+01:00", time.Sunday, 2*60 + 30, "2026-03-29T03:00:00+02:00"},
		{"a time the autumn change repeats: its first occurrence", "2026-10-24T18:00:00+02:00", time.Sunday, 2*60 + 30, "2026-10-25T02:30:00+02:00"},
		{"after the first occurrence: not again in the repeated hour", "2026-10-25T02:30:00+02:00", time.Sunday, 2*60 + 30, "2026-11-01T02:30:00+01:00"},
		{"Monday morning", "2026-12-06T18:00:00+01:00", time.Monday, 7 * 60, "2026-12-07T07:00:00+01:00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Next(at(c.after), berlin, c.day, c.clock)
			if !got.Equal(at(c.want)) {
				t.Errorf("Next(%s) = %s, want %s", c.after, got.Format(time.RFC3339), c.want)
			}
		})
	}
	// Week after week through both changes, every report 7 days of
	// calendar apart and at 18:00 on the wall clock.
	t0 := at("2026-01-04T18:00:00+01:00")
	for i := 0; i < 52; i++ {
		n := Next(t0, berlin, time.Sunday, 18*60)
		if l := n.In(berlin); l.Weekday() != time.Sunday || l.Hour() != 18 || l.Minute() != 0 {
			t.Fatalf("report %d at %s", i, l)
		}
		if h := n.Sub(t0).Hours(); h != 168 && h != 167 && h != 169 {
			t.Fatalf("report %d %v after the one before", i, n.Sub(t0))
		}
		t0 = n
	}
}
