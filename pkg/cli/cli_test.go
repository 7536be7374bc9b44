package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &Env{Stdout: &out, Stderr: &errb,
		Now: func() time.Time { return time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC) }})
	return code, out.String(), errb.String()
}

const example = "../../examples/curfew.conf"
const system = "../../examples/system.conf"

func TestCheckListsEveryProblemWithFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "curfew")
	bad := "config profile 'kid'\n\toption daily_limit 'lots'\n\nconfig device\n\toption mac 'nope'\n\toption profile 'kid'\n\nconfig schedule 'bed'\n\toption profile 'kid'\n\toption start '21:00'\n\toption stop '21:00'\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "check", "--config", path)
	if code != ExitFailure {
		t.Errorf("exit %d, want %d", code, ExitFailure)
	}
	for _, want := range []string{path + ":2: section 'kid' option 'daily_limit'", path + ":5: section @device (line 4) option 'mac'", path + ":11: section 'bed' option 'stop'", "3 error(s)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	code, out, _ := run(t, "check", "--config", path, "--json")
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != ExitFailure || res.OK || len(res.Errors) != 3 {
		t.Errorf("json check = %d %+v %v", code, res, err)
	}
}

func TestCheckAcceptsTheExample(t *testing.T) {
	if code, out, stderr := run(t, "check", "--config", example); code != ExitOK || !strings.Contains(out, "ok") {
		t.Errorf("exit %d: %s %s", code, out, stderr)
	}
}

func TestPlanJSONHasTheSpecShape(t *testing.T) {
	code, out, stderr := run(t, "plan", "--config", example, "--system", system, "--at", "2026-03-29T06:30:00+01:00", "--seen", "5A:00:00:00:00:09", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var p struct {
		At      string `json:"at"`
		Devices []struct {
			MAC, Name, Profile, State, Reason string
			Until                             *string
			Blocked                           []string
		} `json:"devices"`
		NextChange *string `json:"next_change"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.At != "2026-03-29T06:30:00+01:00" || p.NextChange == nil || *p.NextChange != "2026-03-29T08:00:00+01:00" {
		t.Errorf("at %s next %v", p.At, p.NextChange)
	}
	d := p.Devices[0]
	if d.MAC != "aa:bb:cc:dd:ee:01" || d.State != "offline" || d.Reason != "schedule weekend_bedtime 22:30-08:00" || d.Until == nil || *d.Until != "2026-03-29T08:00:00+01:00" {
		t.Errorf("device = %+v", d)
	}
	last := p.Devices[len(p.Devices)-1]
	if last.MAC != "5a:00:00:00:00:09" || last.Profile != "guest" {
		t.Errorf("unknown device = %+v", last)
	}
}

func TestPlanTableAndErrors(t *testing.T) {
	code, out, _ := run(t, "plan", "--config", example, "--system", system)
	if code != ExitOK || !strings.Contains(out, "Alice iPhone") || !strings.Contains(out, "offline") {
		t.Errorf("plan table exit %d:\n%s", code, out)
	}
	if code, _, stderr := run(t, "plan", "--config", example, "--at", "tonight"); code != ExitUsage || !strings.Contains(stderr, "RFC 3339") {
		t.Errorf("bad --at: exit %d %s", code, stderr)
	}
	if code, _, _ := run(t, "frobnicate"); code != ExitUsage {
		t.Errorf("unknown command exit %d", code)
	}
	if code, out, _ := run(t, "version"); code != ExitOK || !strings.HasPrefix(out, "curfew ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := run(t, "services"); code != ExitOK || !strings.Contains(out, "roblox") {
		t.Errorf("services: %d %q", code, out)
	}
}

func TestCheckWarnsWhereWifiKeysCannotIdentify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "curfew")
	os.WriteFile(path, []byte("config profile 'kid'\n\tlist wifi_key 'kid-secret-01'\n\tlist wifi_key 'short'\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "wireless"), []byte("config wifi-iface 'home'\n\toption mode 'ap'\n\toption encryption 'sae-mixed'\n\toption wpa_psk_file '/etc/curfew/wifi.psk'\n"), 0o644)
	code, out, stderr := run(t, "check", "--config", path)
	if code != ExitOK {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	for _, want := range []string{
		"warning: " + path + ":3: section 'kid' option 'wifi_key': a Wi-Fi key of 5 characters",
		"warning: " + filepath.Join(dir, "wireless") + ":3: section 'home' option 'encryption': encryption \"sae-mixed\" uses SAE",
		"warning: " + path + ":1: it holds Wi-Fi keys and others can read it (mode 0644)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(out+stderr, "kid-secret-01") || strings.Contains(out+stderr, "short") && !strings.Contains(stderr, "5 characters") {
		t.Errorf("check shows a key:\n%s%s", out, stderr)
	}
}
