package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"curfew/pkg/services"
)

const good = `config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'guest'

config profile 'alice'
	option daily_limit '1h30m'
	list block 'TikTok.com.'
	list block '203.0.113.0/24'
	list block '2001:db8::1'
	list block_service 'roblox'

config profile 'guest'

config device
	option mac 'AA-BB-CC-DD-EE-FF'
	option name 'Alice iPhone'
	option profile 'alice'

config schedule 'bedtime'
	option profile 'alice guest'
	list days 'sun mon'
	list days 'tue'
	option start '21:00'
	option stop '07:00'
`

func TestParseGoodConfig(t *testing.T) {
	c, warns, err := Parse("curfew", []byte(good), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	a := c.Profile("alice")
	if a.DailyLimit != 90*time.Minute {
		t.Errorf("daily_limit = %v", a.DailyLimit)
	}
	var blocks []string
	for _, b := range a.Block {
		blocks = append(blocks, b.String())
	}
	if got := strings.Join(blocks, ","); got != "tiktok.com,203.0.113.0/24,2001:db8::1" {
		t.Errorf("block = %s", got)
	}
	if c.Devices[0].MAC.String() != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("mac = %s", c.Devices[0].MAC)
	}
	s := c.Schedules[0]
	if strings.Join(s.Profiles, ",") != "alice,guest" || s.Window.Days.String() != "mon tue sun" {
		t.Errorf("schedule = %+v days %s", s, s.Window.Days)
	}
	if !c.Enabled || c.Backend != "auto" || !c.ClockUnsyncedOffline {
		t.Errorf("defaults wrong: %+v", c)
	}
	if !c.Page || c.PagePort != DefaultPagePort || c.RequestsPerDay != 5 || len(c.Notify) != 0 || len(c.NotifyEvents) != len(DefaultNotifyEvents) {
		t.Errorf("page defaults wrong: page %v port %d per day %d notify %v events %v", c.Page, c.PagePort, c.RequestsPerDay, c.Notify, c.NotifyEvents)
	}
	if c.FlowLimit != DefaultFlowLimit {
		t.Errorf("flow limit %d by default, want %d", c.FlowLimit, DefaultFlowLimit)
	}
}

func TestFlowLimitCanBeSetOrTurnedOff(t *testing.T) {
	for value, want := range map[string]int{"0": 0, "1": 1, "400": 400} {
		c, _, err := Parse("f", []byte("config curfew 'main'\n\toption flow_limit '"+value+"'\n"), services.Builtin())
		if err != nil {
			t.Fatalf("flow_limit %s: %v", value, err)
		}
		if c.FlowLimit != want {
			t.Errorf("flow_limit %s gave %d", value, c.FlowLimit)
		}
	}
}

func TestNotifySettings(t *testing.T) {
	c, _, err := Parse("f", []byte("config curfew 'main'\n\tlist notify 'https://ntfy.example/kids?format=text'\n\tlist notify 'http://192.0.2.5:8123/hook'\n"+
		"\toption notify_events 'request budget_used request'\n\toption requests_per_day '0'\n\toption page '0'\n"), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notify) != 2 || strings.Join(c.NotifyEvents, ",") != "request,budget_used" || c.RequestsPerDay != 0 || c.Page {
		t.Errorf("notify %v events %v per day %d page %v", c.Notify, c.NotifyEvents, c.RequestsPerDay, c.Page)
	}
}

// TestEveryErrorNamesLineAndOption feeds one broken line at a time and
// checks that the message names the file, the line, the section, the option
// and what is wrong.
func TestEveryErrorNamesLineAndOption(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"invalid MAC", "config profile 'p'\nconfig device\n\toption mac 'aa:bb:cc:dd:ee'\n\toption profile 'p'\n",
			`f:3: section @device (line 2) option 'mac': invalid MAC address "aa:bb:cc:dd:ee"`},
		{"invalid time", "config profile 'p'\nconfig schedule 's'\n\toption profile 'p'\n\toption start '25:00'\n\toption stop '07:00'\n",
			`f:4: section 's' option 'start': invalid time "25:00"`},
		{"invalid day", "config profile 'p'\nconfig schedule 's'\n\toption profile 'p'\n\toption days 'mon funday'\n\toption start '21:00'\n\toption stop '07:00'\n",
			`f:4: section 's' option 'days': unknown day "funday"`},
		{"invalid duration", "config profile 'p'\n\toption daily_limit '2 hours'\n",
			`f:2: section 'p' option 'daily_limit': invalid duration "2 hours"`},
		{"invalid CIDR", "config profile 'p'\n\tlist block '203.0.113.0/33'\n",
			`f:2: section 'p' option 'block': invalid prefix "203.0.113.0/33"`},
		{"prefix with host bits", "config profile 'p'\n\tlist block '203.0.113.7/24'\n",
			`f:2: section 'p' option 'block': invalid prefix "203.0.113.7/24": host bits set (did you mean 203.0.113.0/24?)`},
		{"invalid domain", "config profile 'p'\n\tlist block 'tik tok.com'\n",
			`f:2: section 'p' option 'block': invalid domain "tik tok.com"`},
		{"unknown profile reference", "config device\n\toption mac 'aa:bb:cc:dd:ee:ff'\n\toption profile 'nobody'\n",
			`f:3: section @device (line 1) option 'profile': unknown profile "nobody"`},
		{"same MAC twice", "config profile 'p'\nconfig device\n\toption mac 'aa:bb:cc:dd:ee:ff'\n\toption profile 'p'\nconfig device\n\toption mac 'AA:BB:CC:DD:EE:FF'\n\toption profile 'p'\n",
			`f:6: section @device (line 5) option 'mac': MAC aa:bb:cc:dd:ee:ff is already used by the device at line 2`},
		{"same name twice, in another case", "config profile 'p'\nconfig device\n\toption mac 'aa:bb:cc:dd:ee:01'\n\toption name 'Tablet'\n\toption profile 'p'\nconfig device\n\toption mac 'aa:bb:cc:dd:ee:02'\n\toption name 'tablet'\n\toption profile 'p'\n",
			`f:8: section @device (line 6) option 'name': name "tablet" is already used by the device at line 2: give each device its own name`},
		{"anonymous profile", "config profile\n\toption name 'x'\n",
			`f:1: section @profile (line 1): a profile must be named`},
		{"start equals stop", "config profile 'p'\nconfig schedule 's'\n\toption profile 'p'\n\toption start '21:00'\n\toption stop '21:00'\n",
			`f:5: section 's' option 'stop': start and stop are both 21:00`},
		{"unknown action", "config profile 'p'\nconfig schedule 's'\n\toption profile 'p'\n\toption start '21:00'\n\toption stop '07:00'\n\toption action 'sleep'\n",
			`f:6: section 's' option 'action': unknown action "sleep"`},
		{"unknown service", "config profile 'p'\n\tlist block_service 'myspace'\n",
			`f:2: section 'p' option 'block_service': unknown service "myspace"`},
		{"service limit without a duration", "config profile 'p'\n\tlist service_limit 'youtube'\n",
			`f:2: section 'p' option 'service_limit': invalid service_limit "youtube" (want a service and a duration`},
		{"service limit of an unknown service", "config profile 'p'\n\tlist service_limit 'myspace 1h'\n",
			`f:2: section 'p' option 'service_limit': unknown service "myspace"`},
		{"service limit of no time", "config profile 'p'\n\tlist service_limit 'youtube 0m'\n",
			`f:2: section 'p' option 'service_limit': invalid duration "0m" in service_limit`},
		{"service limit on bad days", "config profile 'p'\n\tlist service_limit 'youtube 1h someday'\n",
			`f:2: section 'p' option 'service_limit': service_limit "youtube 1h someday": `},
		{"two limits of a service on one day", "config profile 'p'\n\tlist service_limit 'roblox 1h weekdays'\n\tlist service_limit 'roblox 2h fri sat'\n",
			`f:3: section 'p' option 'service_limit': service_limit "roblox 2h fri sat": roblox already has a limit on fri`},
		{"schedule for unknown profile", "config schedule 's'\n\toption profile 'ghost'\n\toption start '21:00'\n\toption stop '07:00'\n",
			`f:2: section 's' option 'profile': unknown profile "ghost"`},
		{"unknown_profile names a missing profile", "config curfew 'main'\n\toption unknown_profile 'guest'\n",
			`f:2: section 'main' option 'unknown_profile': unknown profile "guest"`},
		{"bad boolean", "config profile 'p'\n\toption safesearch 'maybe'\n",
			`f:2: section 'p' option 'safesearch': invalid boolean "maybe"`},
		{"bad backend", "config curfew 'main'\n\toption backend 'pf'\n",
			`f:2: section 'main' option 'backend': invalid backend "pf"`},
		{"bad clock_unsynced", "config curfew 'main'\n\toption clock_unsynced 'maybe'\n",
			`f:2: section 'main' option 'clock_unsynced': invalid value "maybe"`},
		{"missing start", "config profile 'p'\nconfig schedule 's'\n\toption profile 'p'\n\toption stop '07:00'\n",
			`f:2: section 's': missing option 'start'`},
		{"page port out of range", "config curfew 'main'\n\toption page_port '80'\n",
			`f:2: section 'main' option 'page_port': invalid port "80"`},
		{"page port is a DNS filter port", "config curfew 'main'\n\toption page_port '5454'\nconfig profile 'a'\nconfig profile 'b'\n",
			`f:2: section 'main' option 'page_port': port 5454 is one of the DNS filter's ports`},
		{"page port is the offline devices' DNS port", "config curfew 'main'\n\toption page_port '5455'\nconfig profile 'a'\nconfig profile 'b'\n",
			`f:2: section 'main' option 'page_port': port 5455 is one of the DNS filter's ports`},
		{"requests per day negative", "config curfew 'main'\n\toption requests_per_day '-1'\n",
			`f:2: section 'main' option 'requests_per_day': invalid count "-1"`},
		{"flow limit not a number", "config curfew 'main'\n\toption flow_limit '50/s'\n",
			`f:2: section 'main' option 'flow_limit': invalid rate "50/s"`},
		{"flow limit too high", "config curfew 'main'\n\toption flow_limit '1000000'\n",
			`f:2: section 'main' option 'flow_limit': invalid rate "1000000"`},
		{"notify not a URL", "config curfew 'main'\n\tlist notify 'ntfy.sh/kids'\n",
			`f:2: section 'main' option 'notify': invalid notify URL "ntfy.sh/kids"`},
		{"unknown notify event", "config curfew 'main'\n\tlist notify_events 'request bedtime'\n",
			`f:2: section 'main' option 'notify_events': unknown event "bedtime"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("f", []byte(tt.src), services.Builtin())
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			if !strings.HasPrefix(errs[0].String(), tt.want) {
				t.Errorf("got  %s\nwant %s", errs[0], tt.want)
			}
		})
	}
}

func TestAllErrorsAreReportedAtOnce(t *testing.T) {
	src := "config profile 'p'\n\toption daily_limit 'x'\n\tlist block 'a b'\nconfig device\n\toption mac 'zz'\n\toption profile 'q'\n"
	_, _, err := Parse("f", []byte(src), services.Builtin())
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Line < errs[i-1].Line {
			t.Errorf("errors not in line order: %v", err)
		}
	}
}

func TestUnknownOptionsAreWarnings(t *testing.T) {
	src := "config profile 'p'\n\toption colour 'blue'\nconfig gadget 'g'\nconfig device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'p'\n"
	c, warns, err := Parse("f", []byte(src), services.Builtin())
	if err != nil || c == nil {
		t.Fatalf("err = %v", err)
	}
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "f:2: section 'p' option 'colour': unknown option ignored") {
		t.Errorf("warnings = %v", warns)
	}
}

func TestDevicesNeedTheAddressOfOneDevice(t *testing.T) {
	for mac, want := range map[string]string{
		"00:00:00:00:00:00": "all zeros",
		"ff:ff:ff:ff:ff:ff": "broadcast",
		"01:00:5e:00:00:fb": "multicast",
		"33:33:00:00:00:01": "multicast",
	} {
		src := "config profile 'p'\nconfig device\n\toption mac '" + mac + "'\n\toption profile 'p'\n"
		_, _, err := Parse("f", []byte(src), services.Builtin())
		if err == nil || !strings.Contains(err.Error(), "f:3: section @device (line 2) option 'mac'") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", mac, err)
		}
	}
	// a phone's random (locally administered) address is a device
	src := "config profile 'p'\nconfig device\n\toption mac '5a:00:00:00:00:09'\n\toption profile 'p'\n"
	if _, _, err := Parse("f", []byte(src), services.Builtin()); err != nil {
		t.Errorf("random MAC refused: %v", err)
	}
}

func TestAnEmptyConfigWarnsThatNothingIsManaged(t *testing.T) {
	for _, src := range []string{"", "config curfew 'main'\n\toption unknown_profile ''\n"} {
		_, warns, err := Parse("f", []byte(src), services.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, w := range warns {
			found = found || strings.Contains(w.String(), "nothing is managed")
		}
		if !found {
			t.Errorf("%q: warnings %v", src, warns)
		}
	}
}

func TestADeviceNamedLikeItsProfileIsWarnedAbout(t *testing.T) {
	src := "config profile 'alice'\nconfig device\n\toption mac 'aa:bb:cc:dd:ee:01'\n\toption name 'Alice'\n\toption profile 'alice'\n"
	_, warns, err := Parse("f", []byte(src), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), `f:4: section @device (line 2) option 'name': name "Alice" is also profile "alice"'s id`) {
		t.Errorf("warnings = %v", warns)
	}
}

func TestAMissingClosingQuoteIsReportedWhereItBegan(t *testing.T) {
	src := "config profile 'p'\nconfig device\n\toption name 'Kid phone\n\toption mac '02:00:00:00:00:01'\n\toption profile 'p'\n\nconfig schedule 's'\n\toption profile 'p'\n"
	_, _, err := Parse("f", []byte(src), services.Builtin())
	if err == nil || !strings.Contains(err.Error(), "f:3:") || !strings.Contains(err.Error(), "closing quote") {
		t.Errorf("error = %v", err)
	}
	// quotes that pair up again still leave a value over two lines
	src = "config profile 'p'\nconfig device\n\toption name 'Kid\nphone'\n\toption mac '02:00:00:00:00:01'\n\toption profile 'p'\n"
	_, _, err = Parse("f", []byte(src), services.Builtin())
	if err == nil || !strings.Contains(err.Error(), "f:3: section @device (line 2) option 'name': the value runs over 1 more line(s): is its closing quote missing?") {
		t.Errorf("error = %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90m": 90 * time.Minute, "1h30m": 90 * time.Minute, "2h": 2 * time.Hour, "45": 45 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-5m", "soon", "1d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestBlocklistsOverPlainHTTPAreRefused(t *testing.T) {
	_, _, err := Parse("curfew", []byte("config profile 'kid'\n\tlist blocklist 'http://lists.example/adult.txt'\n"), services.Builtin())
	if err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("http list accepted: %v", err)
	}
}

// A NUL byte is read as libuci reads it — the rest of its line ignored —
// with a warning, never a refusal of the whole file.
func TestANULByteIsAWarning(t *testing.T) {
	src := "config profile 'p'\n\x00 damaged line\nconfig device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'p'\n"
	c, warns, err := Parse("f", []byte(src), services.Builtin())
	if err != nil || len(c.Devices) != 1 {
		t.Fatalf("config = %+v, %v", c, err)
	}
	found := false
	for _, w := range warns {
		found = found || strings.HasPrefix(w.String(), "f:2: a NUL byte")
	}
	if !found {
		t.Errorf("warnings = %v", warns)
	}
}

// Limits on what a file can make curfew hold or say: a config past 16 MB is
// refused before it is read whole, and no message echoes a long value.
func TestInputLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	f.WriteString("config curfew 'main'\n# ")
	f.Write(bytes.Repeat([]byte("x"), MaxFileSize))
	f.Close()
	_, _, err := Load(big, services.Builtin())
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MB") {
		t.Errorf("16 MB config: %v", err)
	}
	long := strings.Repeat("y", 1<<20)
	for _, src := range []string{
		"config profile 'p'\n\toption daily_limit '" + long + "'\n", // a value
		"config profile '" + strings.Repeat("-", 1<<20) + "'\n",     // a name (a syntax error)
	} {
		_, _, err := Parse("f", []byte(src), services.Builtin())
		if err == nil {
			t.Fatal("accepted")
		}
		for _, line := range Problems(err) {
			if len(line) > 400 || !strings.HasSuffix(line, "…") {
				t.Errorf("message of %d bytes: %.80s…", len(line), line)
			}
		}
	}
}

// Every number is read one way: digits only, no sign, no leading zero,
// each refusal naming file, line and option.
func TestNumbersAreReadOneWay(t *testing.T) {
	for _, opt := range []struct{ name, good string }{
		{"dns_port", "5353"}, {"active_threshold", "16384"}, {"page_port", "8099"},
		{"requests_per_day", "5"}, {"flow_limit", "50"},
	} {
		src := func(v string) []byte { return []byte("config curfew 'main'\n\toption " + opt.name + " '" + v + "'\n") }
		if _, _, err := Parse("f", src(opt.good), services.Builtin()); err != nil {
			t.Errorf("%s %q refused: %v", opt.name, opt.good, err)
		}
		for _, bad := range []string{"+" + opt.good, "0" + opt.good, " " + opt.good, opt.good + " ", "-" + opt.good, opt.good + ".0", "0x10"} {
			_, _, err := Parse("f", src(bad), services.Builtin())
			if err == nil || !strings.Contains(err.Error(), "f:2: section 'main' option '"+opt.name+"': invalid ") || !strings.Contains(err.Error(), strconv.Quote(bad)) {
				t.Errorf("%s %q: %v", opt.name, bad, err)
			}
		}
	}
}

func TestWindDownIsReadFromProfilesAndSchedules(t *testing.T) {
	src := `config device
	option mac '02:00:00:00:00:01'
	option profile 'kid'

config profile 'kid'
	option wind_down '10m'
	option wind_down_rate '512kbit'

config profile 'teen'

config schedule 'bedtime'
	option profile 'kid teen'
	option start '21:00'
	option stop '07:00'

config schedule 'school'
	option profile 'kid'
	option start '08:00'
	option stop '12:00'
	option wind_down '0'
`
	c, warns, err := Parse("f", []byte(src), services.Builtin())
	if err != nil || len(warns) > 0 {
		t.Fatalf("%v %v", err, warns)
	}
	kid, teen := c.Profile("kid"), c.Profile("teen")
	if kid.WindDown != 10*time.Minute || kid.WindDownRate != 512_000 || teen.WindDown != 0 || teen.WindDownRate != DefaultWindDownRate {
		t.Errorf("kid %v at %d, teen %v at %d", kid.WindDown, kid.WindDownRate, teen.WindDown, teen.WindDownRate)
	}
	bed, school := c.Schedules[0], c.Schedules[1]
	if bed.WindDownFor(kid) != 10*time.Minute || bed.WindDownFor(teen) != 0 || school.WindDownFor(kid) != 0 {
		t.Errorf("bedtime: kid %v teen %v; school: kid %v", bed.WindDownFor(kid), bed.WindDownFor(teen), school.WindDownFor(kid))
	}

	for _, tc := range []struct{ option, want string }{
		{"option wind_down '3h'", `f:2: section 'kid' option 'wind_down': invalid wind_down "3h" (want e.g. 10m, from 1m to 2h, or 0 for none)`},
		{"option wind_down '30s'", `invalid wind_down "30s"`},
		{"option wind_down '-5m'", `invalid wind_down "-5m"`},
		{"option wind_down_rate '1gbit'", `f:2: section 'kid' option 'wind_down_rate': invalid rate "1gbit" (want e.g. 1mbit or 512kbit, from 64kbit to 1000mbit)`},
		{"option wind_down_rate '10kbit'", `invalid rate "10kbit"`},
		{"option wind_down_rate 'nanmbit'", `invalid rate "nanmbit"`},
		{"option wind_down_rate '1e3kbit'", `invalid rate "1e3kbit"`},
		{"option wind_down_rate '1000'", `invalid rate "1000"`},
	} {
		_, _, err := Parse("f", []byte("config profile 'kid'\n\t"+tc.option+"\n"), services.Builtin())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", tc.option, err, tc.want)
		}
	}
	for _, good := range []string{"1mbit", "1.5mbit", "64kbit", "1000mbit", "2MBIT"} {
		if _, err := ParseRate(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}

	_, warns, err = Parse("f", []byte("config device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'kid'\n\nconfig profile 'kid'\n\toption wind_down '10m'\n"), services.Builtin())
	if err != nil || len(warns) != 1 || warns[0].String() != "f:6: section 'kid' option 'wind_down': wind_down does nothing: no offline schedule of profile kid winds down" {
		t.Errorf("wind_down without a window: %v %v", err, warns)
	}

	_, warns, err = Parse("f", []byte("config device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'kid'\n\nconfig profile 'kid'\n\nconfig schedule\n\toption profile 'kid'\n\toption action 'block'\n\tlist block 'example.com'\n\toption start '08:00'\n\toption stop '09:00'\n\toption wind_down '5m'\n"), services.Builtin())
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0].String(), "wind_down slows devices before an offline window") {
		t.Errorf("wind_down on a block window: %v %v", err, warns)
	}
}

// FuzzParseRate: a rate from a config is refused or is a positive number
// of bits a second that its unit bounds.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1mbit", "512kbit", "1.5mbit", "nanmbit", "1e3kbit", "0mbit", ".mbit", "1000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		low := strings.ToLower(s)
		if r == 0 || r > 1e12 || !(strings.HasSuffix(low, "kbit") || strings.HasSuffix(low, "mbit")) {
			t.Errorf("ParseRate(%q) = %d", s, r)
		}
	})
}

// The weekly report comes Sunday 18:00 unless the main section says
// another day and time; a wrong one names its line.
func TestTheWeeklyReportsDayAndTime(t *testing.T) {
	c, _, err := Parse("f", []byte("config curfew 'main'\n"), services.Builtin())
	if err != nil || c.ReportDay != time.Sunday || c.ReportTime.String() != "18:00" || !slices.Contains(c.NotifyEvents, "weekly_report") {
		t.Fatalf("defaults: %v %v %v %v", err, c.ReportDay, c.ReportTime, c.NotifyEvents)
	}
	c, _, err = Parse("f", []byte("config curfew 'main'\n\toption report_day 'Friday'\n\toption report_time '07:30'\n"), services.Builtin())
	if err != nil || c.ReportDay != time.Friday || c.ReportTime.String() != "07:30" {
		t.Fatalf("friday 07:30: %v %v %v", err, c.ReportDay, c.ReportTime)
	}
	for _, tc := range []struct{ option, want string }{
		{"option report_day 'weekend'", `f:2: section 'main' option 'report_day': invalid report day "weekend" (want one day: sun, mon, tue, wed, thu, fri or sat)`},
		{"option report_day 'someday'", `invalid report day "someday"`},
		{"option report_time '25:00'", `f:2: section 'main' option 'report_time': invalid report time "25:00" (want HH:MM)`},
		{"option report_time 'evening'", `invalid report time "evening"`},
	} {
		_, _, err := Parse("f", []byte("config curfew 'main'\n\t"+tc.option+"\n"), services.Builtin())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s", tc.option, err, tc.want)
		}
	}
}

func TestServiceLimitsAreReadWithTheirDays(t *testing.T) {
	c, warns, err := Parse("f", []byte("config profile 'p'\n\tlist service_limit 'YouTube 1h'\n\tlist service_limit 'roblox 30 weekdays'\n\tlist service_limit 'roblox 2h weekend'\n\tlist block_service 'tiktok'\n\tlist service_limit 'tiktok 10m'\n"), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profile("p")
	for _, tc := range []struct {
		svc  string
		day  time.Weekday
		want time.Duration
	}{
		{"youtube", time.Sunday, time.Hour},
		{"roblox", time.Monday, 30 * time.Minute},
		{"roblox", time.Saturday, 2 * time.Hour},
		{"netflix", time.Monday, 0},
	} {
		var got time.Duration
		for _, l := range p.ServiceLimits {
			if l.Service == tc.svc && l.Days.Has(tc.day) {
				got = l.Limit
			}
		}
		if got != tc.want {
			t.Errorf("%s on %s: %v, want %v", tc.svc, tc.day, got, tc.want)
		}
	}
	if !c.Restricted(&Profile{ID: "x", ServiceLimits: p.ServiceLimits}) {
		t.Error("a profile with only service limits counts as unrestricted")
	}
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "f:6:") || !strings.Contains(warns[0].String(), "tiktok is both blocked (block_service) and limited") {
		t.Errorf("warnings %q, want one at f:6 that tiktok is both blocked and limited (and that nothing is managed)", warns)
	}
}
