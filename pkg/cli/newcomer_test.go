package cli

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/cli -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./pkg/cli -update, then review the diff):\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// TestUsageErrorsSayWhatWasWrong: every mistyped command line exits 64
// with what was wrong and the command's usage — none silently.
func TestUsageErrorsSayWhatWasWrong(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "no.sock")
	var all strings.Builder
	for _, args := range [][]string{
		{"check", "--bogus"},
		{"check", "--config"},
		{"check", "a.conf", "b.conf"},
		{"grant", "alice", "-5m"},
		{"grant", "alice", "lots", "--socket", nowhere},
		{"grant", "alice"},
		{"pause", "alice", "--for", "banana", "--socket", nowhere},
		{"pause", "alice", "--until", "25:00", "--socket", nowhere},
		{"allow", "alice", "--socket", nowhere},
		{"assign", "notamac", "alice", "--socket", nowhere},
		{"assign", "ff:ff:ff:ff:ff:ff", "alice", "--socket", nowhere},
		{"usage", "--days", "-3"},
		{"usage", "--days", "200000", "--socket", nowhere},
		{"report", "--week", "--days", "3"},
		{"report", "--days", "0"},
		{"report", "--days", "31", "--socket", nowhere},
		{"status", "extra"},
		{"explain"},
		{"plan", "--system", "/nonexistent/system"},
		{"plan", "--seen", "01:00:5e:00:00:01"},
	} {
		code, out, stderr := run(t, args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
		if out != "" {
			t.Errorf("%v: printed to stdout: %q", args, out)
		}
		if !strings.HasPrefix(stderr, "curfew ") || !strings.Contains(stderr, "Usage: curfew ") {
			t.Errorf("%v: stderr lacks the message and the usage:\n%s", args, stderr)
		}
		first, _, _ := strings.Cut(stderr, "\n")
		all.WriteString(strings.ReplaceAll(strings.Join(args, " ")+"\n  "+first, nowhere, "SOCKET") + "\n")
	}
	golden(t, "usage-errors.txt", all.String())
}

func TestCheckTakesThePathAsArgument(t *testing.T) {
	if code, out, stderr := run(t, "check", example, "--system", system); code != ExitOK || out != example+": ok; schedules follow the router's time zone: zonename Europe/London\n" {
		t.Errorf("check FILE: %d %q %q", code, out, stderr)
	}
	// what older releases and many scripts write
	utc := filepath.Join(t.TempDir(), "system")
	os.WriteFile(utc, []byte("config system\n\toption timezone 'UTC'\n"), 0o644)
	if code, out, stderr := run(t, "check", example, "--system", utc); code != ExitOK || !strings.HasSuffix(out, "time zone: timezone UTC (UTC+0)\n") || stderr != "" {
		t.Errorf("timezone 'UTC': %d %q %q", code, out, stderr)
	}
	empty := filepath.Join(t.TempDir(), "curfew")
	os.WriteFile(empty, nil, 0o644)
	code, out, stderr := run(t, "check", empty)
	if code != ExitOK || !strings.Contains(stderr, "nothing is managed") {
		t.Errorf("empty file: %d %q %q", code, out, stderr)
	}
}

// TestHelpSaysWhatACommandDoes: --help and `help COMMAND` give the usage
// line with the positional arguments, a description and the flags.
func TestHelpSaysWhatACommandDoes(t *testing.T) {
	var all strings.Builder
	for _, c := range commands() {
		if c.name == "daemon" {
			continue // its flags are the daemon's own (pkg/daemon)
		}
		code, out, stderr := run(t, c.name, "--help")
		if code != ExitOK || stderr != "" {
			t.Errorf("%s --help: %d %q", c.name, code, stderr)
		}
		if !strings.HasPrefix(out, "Usage: curfew "+c.name) || !strings.Contains(out, "--json") {
			t.Errorf("%s --help:\n%s", c.name, out)
		}
		all.WriteString(out + "\n")
	}
	golden(t, "help.txt", all.String())
	if code, out, _ := run(t, "help", "grant"); code != ExitOK || !strings.HasPrefix(out, "Usage: curfew grant TARGET DURATION [flags]\n\nAdd DURATION") {
		t.Errorf("help grant: %d\n%s", code, out)
	}
}

// fakeDaemon answers the control socket with canned results.
func fakeDaemon(t *testing.T, answers map[string]any) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "curfew.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		control.Serve(ctx, ln, func(_ context.Context, req *control.Request) (any, error) {
			if a, ok := answers[req.Method]; ok {
				return a, nil
			}
			return nil, errors.New("not in this test")
		}, nil)
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return sock
}

// TestTimesAreInTheRouterZone: the host's zone (UTC on a router without
// zoneinfo, anything on a laptop) never shows; every time is the router's,
// with its abbreviation, as plan shows them.
func TestTimesAreInTheRouterZone(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skip("no zoneinfo for the host zone of this test")
	}
	defer func(l *time.Location) { time.Local = l }(time.Local)
	time.Local = tokyo

	system := filepath.Join(t.TempDir(), "system")
	os.WriteFile(system, []byte("config system\n\toption zonename 'America/New_York'\n\toption timezone 'EST5EDT,M3.2.0,M11.1.0'\n"), 0o644)
	at := time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC) // 17:00 EST
	until := time.Date(2026, 1, 5, 23, 0, 0, 0, time.UTC)
	seen := until
	sock := fakeDaemon(t, map[string]any{
		control.MethodStatus: control.Status{Version: "test", Backend: "nftables", ClockTrusted: true, Zone: "zonename America/New_York",
			Config:    control.ConfigStatus{File: "/etc/config/curfew", OK: true, LoadedAt: at},
			Plan:      &plan.Plan{At: at, Devices: []plan.Device{{MAC: "aa:bb:cc:dd:ee:01", Name: "Alice iPhone", Profile: "alice", State: plan.Offline, Reason: "paused by parent", Until: &until}}},
			Overrides: []plan.Override{{Kind: plan.Pause, Target: "alice", From: at, Until: until}, {Kind: plan.Grant, Target: "bob", Amount: 30 * time.Minute}},
			Notes:     []string{}},
		control.MethodDevices: []control.Device{{MAC: "aa:bb:cc:dd:ee:01", Name: "Alice iPhone", Profile: "alice", Configured: true, LastSeen: &seen, State: "offline"}},
		control.MethodLog:     []control.LogEntry{{Time: until, MAC: "aa:bb:cc:dd:ee:01", Device: "Alice iPhone", Name: "example.com", Type: "A", Verdict: "allowed"}},
	})
	var all strings.Builder
	for _, cmd := range []string{"status", "devices", "log"} {
		code, out, stderr := run(t, cmd, "--socket", sock, "--system", system)
		if code != ExitOK {
			t.Fatalf("%s: %d %s", cmd, code, stderr)
		}
		if strings.Contains(out, "23:00") || strings.Contains(out, "JST") || strings.Contains(out, "07:00") || strings.Contains(out, "08:00") {
			t.Errorf("%s shows a time outside the router's zone:\n%s", cmd, out)
		}
		if !strings.Contains(out, "18:00") || !strings.Contains(out, "EST") {
			t.Errorf("%s lacks 18:00 EST:\n%s", cmd, out)
		}
		all.WriteString("$ curfew " + cmd + "\n" + out)
	}
	golden(t, "router-zone.txt", all.String())
}

// status shows times in the zone the daemon reports, the one its header
// names, even when the CLI is given another system config.
func TestStatusShowsTimesInTheDaemonsZone(t *testing.T) {
	system := filepath.Join(t.TempDir(), "system")
	os.WriteFile(system, []byte("config system\n\toption zonename 'Asia/Tokyo'\n"), 0o644)
	at := time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC) // 17:00 EST, 07:00 JST
	sock := fakeDaemon(t, map[string]any{
		control.MethodStatus: control.Status{Version: "test", Backend: "nftables", ClockTrusted: true, Zone: "zonename America/New_York",
			Zonename: "America/New_York", Timezone: "EST5EDT,M3.2.0,M11.1.0",
			Config: control.ConfigStatus{File: "/etc/config/curfew", OK: true, LoadedAt: at}, Notes: []string{}},
	})
	code, out, stderr := run(t, "status", "--socket", sock, "--system", system)
	if code != ExitOK || !strings.Contains(out, "(loaded 2026-01-05 17:00:00 EST)") || strings.Contains(out, "JST") {
		t.Errorf("status with the daemon in New York and --system in Tokyo: %d %s\n%s", code, stderr, out)
	}
}

// A daemon whose rules the kernel refused enforces nothing: status says
// so before anything else and exits 1, also with --json.
func TestStatusSaysWhenNothingIsEnforced(t *testing.T) {
	system := filepath.Join(t.TempDir(), "system")
	os.WriteFile(system, []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	since := time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC)
	sock := fakeDaemon(t, map[string]any{
		control.MethodStatus: control.Status{Version: "test", Backend: "nftables", ClockTrusted: true, Zone: "timezone UTC0",
			Config: control.ConfigStatus{File: "/etc/config/curfew", OK: true, LoadedAt: since}, Notes: []string{},
			Enforcement: control.Enforcement{Error: "replace table inet curfew: netlink receive: invalid argument",
				Since: since, NextTry: since.Add(4 * time.Second)}},
	})
	code, out, stderr := run(t, "status", "--socket", sock, "--system", system)
	if code != ExitFailure {
		t.Errorf("status exit %d, want %d: %s", code, ExitFailure, stderr)
	}
	if want := "NOTHING IS ENFORCED: the kernel refused curfew's rules (since 2026-01-05 22:00:00 UTC; next try 22:00:04):\n  replace table inet curfew: netlink receive: invalid argument"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	if code, out, _ := run(t, "status", "--json", "--socket", sock); code != ExitFailure || !strings.Contains(out, `"enforcement": {`) {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}
}
