package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/services"
	"curfew/pkg/tz"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testConfig = `config curfew 'main'
	option unknown_profile 'guest'

config profile 'alice'
	option daily_limit '2h'
	list block 'tiktok.com'
	list block '203.0.113.0/24'

config profile 'bob'

config profile 'guest'

config device
	option mac 'aa:bb:cc:dd:ee:01'
	option name 'Alice iPhone'
	option profile 'alice'

config device
	option mac 'aa:bb:cc:dd:ee:02'
	option name 'Alice laptop'
	option profile 'alice'

config device
	option mac 'aa:bb:cc:dd:ee:03'
	option name 'Bob tablet'
	option profile 'bob'

config schedule 'bedtime'
	option profile 'alice bob'
	option days 'sun mon tue wed thu'
	option start '21:00'
	option stop '07:00'

config schedule 'friday'
	option profile 'alice'
	option days 'fri'
	option start '22:00'
	option stop '08:00'

config schedule 'dinner'
	option profile 'alice'
	option days 'daily'
	option start '18:00'
	option stop '19:00'

config schedule 'late_dinner'
	option profile 'alice'
	option days 'daily'
	option start '18:30'
	option stop '19:30'

config schedule 'homework'
	option profile 'bob'
	option days 'weekdays'
	option start '16:00'
	option stop '18:00'
	option action 'block'
	list block_service 'roblox'
	list block 'minecraft.net'
`

func load(t *testing.T, src string) *config.Config {
	t.Helper()
	c, _, err := config.Parse("curfew", []byte(src), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func london(t *testing.T) *time.Location {
	loc, err := tz.POSIX("GMT0BST,M3.5.0/1,M10.5.0")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func device(p *Plan, mac string) Device {
	for _, d := range p.Devices {
		if d.MAC == mac {
			return d
		}
	}
	return Device{}
}

const (
	alice  = "aa:bb:cc:dd:ee:01"
	alice2 = "aa:bb:cc:dd:ee:02"
	bob    = "aa:bb:cc:dd:ee:03"
)

func TestPlanSituations(t *testing.T) {
	loc := london(t)
	c := load(t, testConfig)
	// 2026-01-05 is a Monday.
	tests := []struct {
		name       string
		at         string
		overrides  []Override
		used       map[string]time.Duration
		untrusted  bool
		seen       []string
		mac        string
		wantState  string
		wantReason string
		wantUntil  string // "15:04" on its day, "-" for nil
	}{
		{"school night bedtime", "2026-01-05 22:00", nil, nil, false, nil, alice, Offline, "schedule bedtime 21:00-07:00", "2026-01-06 07:00"},
		{"morning after bedtime", "2026-01-06 07:00", nil, nil, false, nil, alice, Online, "2h of screen time left today", "2026-01-06 18:00"},
		{"Friday night runs into Saturday", "2026-01-10 07:30", nil, nil, false, nil, alice, Offline, "schedule friday 22:00-08:00", "2026-01-10 08:00"},
		{"no bedtime for Bob on Friday", "2026-01-09 23:00", nil, nil, false, nil, bob, Online, "online", "2026-01-11 21:00"},
		{"overlapping windows merge", "2026-01-06 18:45", nil, nil, false, nil, alice, Offline, "schedule dinner 18:00-19:00; schedule late_dinner 18:30-19:30", "2026-01-06 19:30"},
		{"pause until resumed", "2026-01-06 12:00",
			[]Override{{Kind: Pause, Target: "alice", From: at(t, loc, "2026-01-06 11:00")}}, nil, false, nil,
			alice2, Offline, "paused by parent", "-"},
		{"pause for a device name only", "2026-01-06 12:00",
			[]Override{{Kind: Pause, Target: "alice iphone", From: at(t, loc, "2026-01-06 11:00"), Until: at(t, loc, "2026-01-06 13:00")}}, nil, false, nil,
			alice, Offline, "paused by parent", "2026-01-06 13:00"},
		{"pause by device name leaves the sibling device online", "2026-01-06 12:00",
			[]Override{{Kind: Pause, Target: "Alice iPhone", From: at(t, loc, "2026-01-06 11:00")}}, nil, false, nil,
			alice2, Online, "2h of screen time left today", "2026-01-06 18:00"},
		{"expired pause no longer applies", "2026-01-06 14:00",
			[]Override{{Kind: Pause, Target: "alice", From: at(t, loc, "2026-01-06 11:00"), Until: at(t, loc, "2026-01-06 13:00")}}, nil, false, nil,
			alice, Online, "2h of screen time left today", "2026-01-06 18:00"},
		{"pause running into bedtime ends with bedtime", "2026-01-05 20:30",
			[]Override{{Kind: Pause, Target: "bob", From: at(t, loc, "2026-01-05 20:00"), Until: at(t, loc, "2026-01-05 21:30")}}, nil, false, nil,
			bob, Offline, "paused by parent until 21:30", "2026-01-06 07:00"},
		{"allow overrides bedtime", "2026-01-05 21:30",
			[]Override{{Kind: Allow, Target: "bob", From: at(t, loc, "2026-01-05 21:00"), Until: at(t, loc, "2026-01-05 22:00")}}, nil, false, nil,
			bob, Online, "allowed by parent (overrides schedule bedtime 21:00-07:00)", "2026-01-05 22:00"},
		{"an allow with nothing to override yet still shows", "2026-01-05 12:00",
			[]Override{{Kind: Allow, Target: "bob", From: at(t, loc, "2026-01-05 11:30"), Until: at(t, loc, "2026-01-05 20:00")}}, nil, false, nil,
			bob, Online, "allowed by parent until 20:00", "2026-01-05 21:00"},
		{"pauses of a device and of its profile read once", "2026-01-05 12:00",
			[]Override{
				{Kind: Pause, Target: "bob", From: at(t, loc, "2026-01-05 11:00"), Until: at(t, loc, "2026-01-05 13:00")},
				{Kind: Pause, Target: "Bob tablet", From: at(t, loc, "2026-01-05 11:30"), Until: at(t, loc, "2026-01-05 13:00")},
			}, nil, false, nil,
			bob, Offline, "paused by parent", "2026-01-05 13:00"},
		{"allow overrides a pause too", "2026-01-05 12:00",
			[]Override{
				{Kind: Pause, Target: "bob", From: at(t, loc, "2026-01-05 11:00")},
				{Kind: Allow, Target: "aa:bb:cc:dd:ee:03", From: at(t, loc, "2026-01-05 11:30"), Until: at(t, loc, "2026-01-05 12:30")},
			}, nil, false, nil,
			bob, Online, "allowed by parent (overrides paused by parent)", "2026-01-05 12:30"},
		{"budget used up: offline until midnight", "2026-01-06 15:00", nil,
			map[string]time.Duration{"alice": 2 * time.Hour}, false, nil,
			alice, Offline, "daily limit 2h used up", "2026-01-07 07:00"}, // midnight reset runs into bedtime
		{"grant adds to today's budget", "2026-01-06 15:00",
			[]Override{{Kind: Grant, Target: "alice", Amount: 30 * time.Minute, Day: "2026-01-06"}},
			map[string]time.Duration{"alice": 2 * time.Hour}, false, nil,
			alice, Online, "30m of screen time left today", "2026-01-06 18:00"},
		{"yesterday's grant does not count", "2026-01-06 15:00",
			[]Override{{Kind: Grant, Target: "alice", Amount: 30 * time.Minute, Day: "2026-01-05"}},
			map[string]time.Duration{"alice": 2 * time.Hour}, false, nil,
			alice, Offline, "daily limit 2h used up", "2026-01-07 07:00"}, // midnight reset runs into bedtime
		{"allow overrides an exhausted budget", "2026-01-06 15:00",
			[]Override{{Kind: Allow, Target: "alice", From: at(t, loc, "2026-01-06 14:50"), Until: at(t, loc, "2026-01-06 15:30")}},
			map[string]time.Duration{"alice": 3 * time.Hour}, false, nil,
			alice, Online, "allowed by parent (overrides daily limit 2h used up)", "2026-01-06 15:30"},
		{"clock not trusted keeps children offline", "2026-01-06 12:00", nil, nil, true, nil,
			bob, Offline, "clock not synchronised yet (clock_unsynced 'offline')", "-"},
		{"clock not trusted leaves a profile without schedules or limit online", "2026-01-06 12:00", nil, nil, true, []string{"5a:11:22:33:44:55"},
			"5a:11:22:33:44:55", Online, "online", "-"},
		{"unknown MAC gets the unknown profile", "2026-01-06 12:00", nil, nil, false, []string{"5a:11:22:33:44:55"},
			"5a:11:22:33:44:55", Online, "online", "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []net.HardwareAddr
			for _, s := range tt.seen {
				m, _ := net.ParseMAC(s)
				seen = append(seen, m)
			}
			p := Compute(Input{Config: c, Loc: loc, At: at(t, loc, tt.at), Overrides: tt.overrides, Used: tt.used,
				ClockTrusted: !tt.untrusted, Seen: seen})
			d := device(p, tt.mac)
			if d.State != tt.wantState || d.Reason != tt.wantReason {
				t.Errorf("state %q reason %q\nwant  %q reason %q", d.State, d.Reason, tt.wantState, tt.wantReason)
			}
			until := "-"
			if d.Until != nil {
				until = d.Until.In(loc).Format("2006-01-02 15:04")
			}
			if until != tt.wantUntil {
				t.Errorf("until = %s, want %s", until, tt.wantUntil)
			}
			if p.NextChange != nil && d.Until != nil && d.Until.Before(*p.NextChange) {
				t.Errorf("next_change %v after device until %v", p.NextChange, d.Until)
			}
		})
	}
}

func TestUnknownDevicesWithoutUnknownProfileAreUnmanaged(t *testing.T) {
	c := load(t, strings.Replace(testConfig, "option unknown_profile 'guest'", "", 1))
	m, _ := net.ParseMAC("5a:11:22:33:44:55")
	p := Compute(Input{Config: c, Loc: time.UTC, At: time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC), Seen: []net.HardwareAddr{m}, ClockTrusted: false})
	d := device(p, m.String())
	if d.Managed || d.State != Online || !d.Unknown || d.Profile != "" {
		t.Errorf("unknown device = %+v", d)
	}
}

func TestBlockWindowAddsDestinationsOnlyInside(t *testing.T) {
	loc := london(t)
	c := load(t, testConfig)
	in := Compute(Input{Config: c, Loc: loc, At: at(t, loc, "2026-01-06 16:30"), ClockTrusted: true})
	inside := device(in, bob)
	if got := strings.Join(in.Rules("bob").Blocked(), ","); got != "minecraft.net,service roblox" || inside.BlockedCount != 2 {
		t.Errorf("inside homework blocked = %s (%d)", got, inside.BlockedCount)
	}
	if inside.State != Online {
		t.Errorf("a block window must not take the device offline")
	}
	p := Compute(Input{Config: c, Loc: loc, At: at(t, loc, "2026-01-06 16:30"), ClockTrusted: true})
	if p.NextChange == nil || !p.NextChange.Equal(at(t, loc, "2026-01-06 18:00")) {
		t.Errorf("next change = %v, want the end of the block window", p.NextChange)
	}
	out := Compute(Input{Config: c, Loc: loc, At: at(t, loc, "2026-01-06 18:30"), ClockTrusted: true})
	if r := out.Rules("bob"); r.Count() != 0 || device(out, bob).BlockedCount != 0 {
		t.Errorf("outside homework blocked = %v", r.Blocked())
	}
}

func TestOfflineWindowsCoverTheNextWeek(t *testing.T) {
	loc := london(t)
	c := load(t, testConfig)
	now := at(t, loc, "2026-03-25 12:00") // spans the spring-forward weekend
	d := device(Compute(Input{Config: c, Loc: loc, At: now, ClockTrusted: true}), bob)
	if len(d.Offline) < 5 {
		t.Fatalf("only %d windows: %v", len(d.Offline), d.Offline)
	}
	last := d.Offline[len(d.Offline)-1]
	if last.To.Sub(now) < 7*24*time.Hour {
		t.Errorf("windows end %v, less than 7 days ahead", last.To)
	}
	for _, w := range d.Offline {
		if h := w.From.In(loc).Format("15:04"); h != "21:00" {
			t.Errorf("window starts at %s local, want 21:00 (DST drift?)", h)
		}
		if h := w.To.In(loc).Format("15:04"); h != "07:00" {
			t.Errorf("window ends at %s local, want 07:00", h)
		}
	}
}

// TestGoldenPlans renders whole plans as JSON at instants around DST and
// midnight; run with -update to rewrite testdata/*.json after a deliberate
// change, and review the diff.
func TestGoldenPlans(t *testing.T) {
	c := load(t, testConfig)
	zones := map[string]string{
		"london":  "GMT0BST,M3.5.0/1,M10.5.0",
		"newyork": "EST5EDT,M3.2.0,M11.1.0",
		"sydney":  "AEST-10AEDT,M10.1.0,M4.1.0/3",
	}
	cases := []struct{ name, zone, at string }{
		{"london-spring-forward-morning", "london", "2026-03-29 06:30"},
		{"london-fall-back-evening", "london", "2026-10-25 21:30"},
		{"newyork-spring-forward-bedtime", "newyork", "2026-03-08 06:59"},
		{"sydney-dst-ends-night", "sydney", "2026-04-05 02:30"},
		{"london-friday-midnight", "london", "2026-01-10 00:00"},
	}
	mac, _ := net.ParseMAC("5a:00:00:00:00:09")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := tz.POSIX(zones[tc.zone])
			if err != nil {
				t.Fatal(err)
			}
			p := Compute(Input{Config: c, Loc: loc, At: at(t, loc, tc.at), ClockTrusted: true, Seen: []net.HardwareAddr{mac},
				Used: map[string]time.Duration{"alice": 30 * time.Minute}})
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan differs from %s (run go test -update and review the diff)\n%s", path, got)
			}
		})
	}
}

// TestCausesAreMachineReadable: programs (LuCI) learn why a device is
// offline from Causes, never from the words of Reason.
func TestCausesAreMachineReadable(t *testing.T) {
	c := load(t, testConfig)
	loc := time.UTC
	at := func(s string) time.Time { v, _ := time.ParseInLocation("2006-01-02 15:04", s, loc); return v }
	p := Compute(Input{Config: c, Loc: loc, At: at("2026-01-05 22:00"), ClockTrusted: true,
		Overrides: []Override{{Kind: Pause, Target: "bob", From: at("2026-01-05 21:30")}}})
	if d := device(p, bob); strings.Join(d.Causes, " ") != "schedule pause" || d.Allowed {
		t.Errorf("bob at bedtime, paused: causes %q allowed %v", d.Causes, d.Allowed)
	}
	p = Compute(Input{Config: c, Loc: loc, At: at("2026-01-05 22:00"), ClockTrusted: true,
		Overrides: []Override{{Kind: Allow, Target: "bob", From: at("2026-01-05 21:30"), Until: at("2026-01-05 23:00")}}})
	if d := device(p, bob); d.State != Online || !d.Allowed || strings.Join(d.Causes, " ") != "schedule" {
		t.Errorf("bob allowed over bedtime: %s causes %q allowed %v", d.State, d.Causes, d.Allowed)
	}
	p = Compute(Input{Config: c, Loc: loc, At: at("2026-01-06 12:00"), ClockTrusted: false})
	if d := device(p, bob); strings.Join(d.Causes, " ") != "clock" {
		t.Errorf("clock untrusted: causes %q", d.Causes)
	}
}

// TestPlanGrowsWithDevicesPlusRules: a profile's list is held once, so the
// plan of 200 devices in a profile of 20,000 prefixes is not 200 times the
// list (its JSON, what status and rpcd carry, is measured).
func TestPlanGrowsWithDevicesPlusRules(t *testing.T) {
	size := func(devices, prefixes int) int {
		var b strings.Builder
		b.WriteString("config curfew 'main'\nconfig profile 'kid'\n")
		for i := 0; i < prefixes; i++ {
			fmt.Fprintf(&b, "\tlist block '10.%d.%d.0/24'\n", i/256, i%256)
		}
		for i := 0; i < devices; i++ {
			fmt.Fprintf(&b, "config device\n\toption mac '02:00:00:00:%02x:%02x'\n\toption profile 'kid'\n", i/256, i%256)
		}
		c := load(t, b.String())
		p := Compute(Input{Config: c, Loc: time.UTC, At: time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC), ClockTrusted: true})
		if len(p.Profiles) != 1 || p.Profiles[0].Count() != prefixes || p.Devices[0].BlockedCount != prefixes {
			t.Fatalf("profiles = %d, blocked %d", len(p.Profiles), p.Devices[0].BlockedCount)
		}
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return len(j)
	}
	one, many := size(1, 20000), size(200, 20000)
	perDevice := (many - one) / 199
	if perDevice > 2000 {
		t.Errorf("each device adds %d bytes to a plan with 20,000 prefixes: the list is repeated per device", perDevice)
	}
	if rules := size(1, 20000) - size(1, 0); many-one > rules {
		t.Errorf("199 devices add %d bytes, more than the 20,000 prefixes themselves (%d)", many-one, rules)
	}
	t.Logf("plan JSON: 1 device %d bytes, 200 devices %d bytes (%d per device)", one, many, perDevice)
}

// The CLI reads the plan back from the daemon's JSON: a profile's rules
// come back as the same words.
func TestProfileRulesRoundTrip(t *testing.T) {
	loc := london(t)
	p := Compute(Input{Config: load(t, testConfig), Loc: loc, At: at(t, loc, "2026-01-06 16:30"), ClockTrusted: true})
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		if got, want := strings.Join(back.Rules(id).Blocked(), ","), strings.Join(p.Rules(id).Blocked(), ","); got != want || want == "" {
			t.Errorf("%s: %q after the round trip, want %q", id, got, want)
		}
	}
}

// The daemon's status lists a few of a profile's blocked destinations and
// their count: 100,000 prefixes would not fit through rpcd. The count
// survives the trip through JSON; the plan itself is not changed.
func TestListedPlanNamesAFewAndCountsAll(t *testing.T) {
	var b strings.Builder
	b.WriteString("config profile 'kid'\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "\tlist block '10.0.%d.%d'\n", i/256, i%256)
	}
	b.WriteString("\tlist block_service 'tiktok'\n\nconfig device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'kid'\n")
	c, _, err := config.Parse("curfew", []byte(b.String()), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	p := Compute(Input{Config: c, Loc: time.UTC, At: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), ClockTrusted: true})
	for _, tc := range []struct {
		name   string
		plan   *Plan
		listed int
	}{
		{"the whole plan, as curfew plan prints it", p, 1001},
		{"the status view", p.Listed(50), 50},
		{"a view listing more than there are", p.Listed(5000), 1001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.plan)
			if err != nil {
				t.Fatal(err)
			}
			var back Plan
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			r := back.Rules("kid")
			if r == nil {
				t.Fatalf("no kid profile in %.200s", raw)
			}
			if got := len(r.Blocked()); got != tc.listed {
				t.Errorf("%d entries listed, want %d", got, tc.listed)
			}
			if r.Count() != 1001 {
				t.Errorf("count %d after JSON, want 1001", r.Count())
			}
			if got := tc.plan.Rules("kid").Some(3); strings.Join(got, " ") != "10.0.0.0 10.0.0.1 10.0.0.2" {
				t.Errorf("Some(3) = %v", got)
			}
		})
	}
	if got := len(p.Rules("kid").Blocked()); got != 1001 {
		t.Errorf("Listed changed the plan: %d entries", got)
	}
}

const windDownConfig = `config profile 'kid'
	option wind_down '10m'

config device
	option mac 'aa:bb:cc:dd:ee:01'
	option name 'Kid phone'
	option profile 'kid'

config schedule 'bedtime'
	option profile 'kid'
	option days 'mon tue wed thu'
	option start '21:00'
	option stop '07:00'

config schedule 'school'
	option profile 'kid'
	option days 'weekdays'
	option start '08:00'
	option stop '12:00'
	option wind_down '0'

config schedule 'night'
	option profile 'kid'
	option days 'sun'
	option start '02:05'
	option stop '03:00'
	option wind_down '10m'
`

func TestWindDownSituations(t *testing.T) {
	loc := london(t)
	c := load(t, windDownConfig)
	// 2026-01-05 is a Monday; 2026-03-29 a Sunday on which London's
	// clocks jump from 01:00 to 02:00.
	for _, tc := range []struct {
		name, at  string
		overrides []Override
		state     string
		reason    string
		slowUntil string // "-" for none
		next      string // the first wind-down span from at, "-" for none
	}{
		{"an hour before bedtime: online, the wind-down ahead", "2026-01-05 20:00", nil,
			Online, "online", "-", "20:50-21:00"},
		{"ten minutes before bedtime: slowed until it begins", "2026-01-05 20:55", nil,
			Online, "winding down until 21:00: slowed before it goes offline", "21:00", "20:50-21:00"},
		{"bedtime itself is offline, not slowed", "2026-01-05 21:30", nil,
			Offline, "schedule bedtime 21:00-07:00", "-", "20:50-21:00"}, // the next day's
		{"a schedule with wind_down 0 comes without one", "2026-01-06 07:55", nil,
			Online, "online", "-", "20:50-21:00"},
		{"a parent's allow ends the wind-down", "2026-01-05 20:55",
			[]Override{{Kind: Allow, Target: "kid", From: at(t, loc, "2026-01-05 20:53"), Until: at(t, loc, "2026-01-05 22:00")}},
			Online, "allowed by parent until 22:00", "-", "20:50-21:00"}, // the next day's
		{"a pause during the wind-down is offline", "2026-01-05 20:55",
			[]Override{{Kind: Pause, Target: "kid", From: at(t, loc, "2026-01-05 20:54")}},
			Offline, "paused by parent", "-", "-"}, // until resumed
		{"ten real minutes across the spring-forward jump", "2026-03-29 00:58", nil,
			Online, "winding down until 02:05: slowed before it goes offline", "02:05", "00:55-02:05"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Compute(Input{Config: c, Loc: loc, At: at(t, loc, tc.at), Overrides: tc.overrides, ClockTrusted: true})
			d := device(p, alice)
			if d.State != tc.state || d.Reason != tc.reason {
				t.Errorf("state %q reason %q\nwant  %q reason %q", d.State, d.Reason, tc.state, tc.reason)
			}
			slow := "-"
			if d.SlowUntil != nil {
				slow = d.SlowUntil.In(loc).Format("15:04")
			}
			if slow != tc.slowUntil || (slow != "-") != contains(d.Causes, CauseWindDown) {
				t.Errorf("slowed until %s (causes %v), want %s", slow, d.Causes, tc.slowUntil)
			}
			next := "-"
			if len(d.WindDown) > 0 {
				next = d.WindDown[0].From.Format("15:04") + "-" + d.WindDown[0].To.Format("15:04")
			}
			// spans that ended before at are left out
			if tc.next != next {
				t.Errorf("first wind-down span %s, want %s", next, tc.next)
			}
			if p.NextChange != nil && d.SlowUntil != nil && d.SlowUntil.Before(*p.NextChange) {
				t.Errorf("next change %v after the wind-down's end %v", p.NextChange, d.SlowUntil)
			}
		})
	}
}

const serviceConfig = `config curfew 'main'

config profile 'kid'
	option daily_limit '3h'
	list service_limit 'youtube 1h'
	list service_limit 'roblox 30m weekdays'
	list service_limit 'roblox 2h weekend'

config device
	option mac 'aa:bb:cc:dd:ee:01'
	option name 'Kid phone'
	option profile 'kid'
`

func TestServiceAllowanceSituations(t *testing.T) {
	loc := london(t)
	c := load(t, serviceConfig)
	// 2026-01-05 is a Monday, 2026-01-10 a Saturday.
	mon := "2026-01-05"
	for _, tc := range []struct {
		name      string
		at        string
		used      map[string]time.Duration
		overrides []Override
		// want is each allowance as explain says it, blocked the services
		// blocked now
		want    []string
		blocked []string
	}{
		{"nothing used yet", mon + " 16:00", nil, nil,
			[]string{"YouTube: 0m used of 1h today", "Roblox: 0m used of 30m today"}, nil},
		{"youtube used up: blocked, roblox not", mon + " 16:00", map[string]time.Duration{"youtube": time.Hour, "roblox": 10 * time.Minute}, nil,
			[]string{"YouTube: 1h used of 1h today", "Roblox: 10m used of 30m today"}, []string{"youtube"}},
		{"a grant for youtube opens it again", mon + " 16:00", map[string]time.Duration{"youtube": time.Hour},
			[]Override{{Kind: Grant, Target: "Kid phone", Service: "youtube", Amount: 15 * time.Minute, Day: mon}},
			[]string{"YouTube: 1h used of 1h15m today", "Roblox: 0m used of 30m today"}, nil},
		{"a grant of screen time is not one for youtube", mon + " 16:00", map[string]time.Duration{"youtube": time.Hour},
			[]Override{{Kind: Grant, Target: "kid", Amount: 15 * time.Minute, Day: mon}},
			[]string{"YouTube: 1h used of 1h today", "Roblox: 0m used of 30m today"}, []string{"youtube"}},
		{"yesterday's grant is gone", mon + " 16:00", map[string]time.Duration{"youtube": time.Hour},
			[]Override{{Kind: Grant, Target: "kid", Service: "youtube", Amount: 15 * time.Minute, Day: "2026-01-04"}},
			[]string{"YouTube: 1h used of 1h today", "Roblox: 0m used of 30m today"}, []string{"youtube"}},
		{"the weekend has its own roblox limit", "2026-01-10 16:00", map[string]time.Duration{"roblox": time.Hour},
			nil, []string{"YouTube: 0m used of 1h today", "Roblox: 1h used of 2h today"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Compute(Input{Config: c, Loc: loc, At: at(t, loc, tc.at), Overrides: tc.overrides, ClockTrusted: true,
				ServiceUsed: map[string]map[string]time.Duration{"kid": tc.used}})
			d := device(p, alice)
			var got []string
			for _, s := range d.Services {
				got = append(got, s.String())
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("allowances %q\nwant       %q", got, tc.want)
			}
			if d.State != Online {
				t.Errorf("state %s (%s): a used-up service leaves the rest of the internet", d.State, d.Reason)
			}
			r := p.Rules("kid")
			var blocked []string
			for _, s := range r.Blocked() {
				if name, ok := strings.CutPrefix(s, "service "); ok {
					blocked = append(blocked, name)
				}
			}
			if strings.Join(blocked, " ") != strings.Join(tc.blocked, " ") {
				t.Errorf("blocked services %q, want %q", blocked, tc.blocked)
			}
			if p.NextChange == nil || !p.NextChange.Equal(at(t, loc, tc.at[:10]+" 00:00").AddDate(0, 0, 1)) {
				t.Errorf("next change %v, want the next midnight, when allowances start again", p.NextChange)
			}
		})
	}
}
