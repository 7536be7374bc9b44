package openwrt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/plan"
	"curfew/pkg/services"
)

// TestLuCIWritesCurfewReads makes the edits LuCI's forms make — through
// the real `uci` (rpcd's uci object runs the same libuci calls on Save &
// Apply) — on the shipped config, and checks that curfew reads exactly
// that: a named profile, an anonymous device, a schedule whose days and
// profiles are lists (MultiValue, DynamicList), a cleared option.
func TestLuCIWritesCurfewReads(t *testing.T) {
	bin := filepath.Join(tools(t), "bin", "uci")
	confDir, saveDir := t.TempDir(), t.TempDir()
	shipped, err := os.ReadFile("curfew/files/curfew.config")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(confDir, "curfew"), shipped, 0o600)
	uci := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-c", confDir, "-t", saveDir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("uci %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	uci("set", "curfew.main.enabled=1")
	uci("set", "curfew.kid=profile")
	uci("set", "curfew.kid.name=Kid's profile")
	uci("set", "curfew.kid.daily_limit=2h")
	uci("add_list", "curfew.kid.block=tiktok.com")
	uci("add_list", "curfew.kid.block=203.0.113.0/24")
	uci("add_list", "curfew.kid.block_service=roblox")
	dev := uci("add", "curfew", "device")
	uci("set", "curfew."+dev+".name=Kid phone")
	uci("set", "curfew."+dev+".mac=02:c0:00:00:00:0a")
	uci("set", "curfew."+dev+".profile=kid")
	uci("set", "curfew.bedtime=schedule")
	uci("add_list", "curfew.bedtime.profile=kid")
	uci("add_list", "curfew.bedtime.profile=guest")
	for _, d := range []string{"sun", "mon", "tue", "wed", "thu"} {
		uci("add_list", "curfew.bedtime.days="+d)
	}
	uci("set", "curfew.bedtime.start=21:00")
	uci("set", "curfew.bedtime.stop=07:00")
	uci("commit", "curfew")
	// a second Save & Apply: the limit cleared, a site removed
	uci("delete", "curfew.kid.daily_limit")
	uci("del_list", "curfew.kid.block=203.0.113.0/24")
	uci("commit", "curfew")

	path := filepath.Join(confDir, "curfew")
	c, warns, err := config.Load(path, services.Builtin())
	if err != nil {
		written, _ := os.ReadFile(path)
		t.Fatalf("curfew refuses what LuCI wrote: %v\n%s", err, written)
	}
	for _, w := range warns {
		t.Logf("warning: %s", w)
	}
	kid := c.Profile("kid")
	if kid == nil || kid.Name != "Kid's profile" || kid.DailyLimit != 0 || len(kid.Block) != 1 || kid.Block[0].String() != "tiktok.com" ||
		len(kid.BlockService) != 1 || kid.BlockService[0] != "roblox" {
		t.Errorf("profile kid = %+v", kid)
	}
	if len(c.Devices) != 1 || c.Devices[0].Name != "Kid phone" || c.Devices[0].MAC.String() != "02:c0:00:00:00:0a" || c.Devices[0].Profile != "kid" {
		t.Errorf("devices = %+v", c.Devices)
	}
	if len(c.Schedules) != 1 || strings.Join(c.Schedules[0].Profiles, " ") != "kid guest" || c.Schedules[0].Window.Days.String() != "mon tue wed thu sun" {
		t.Fatalf("schedule = %+v, days %s", *c.Schedules[0], c.Schedules[0].Window.Days)
	}
	// and the plan follows: Monday 22:00 is bedtime, Friday 22:00 is not
	for at, want := range map[string]string{"2026-01-05T22:00:00Z": plan.Offline, "2026-01-09T22:00:00Z": plan.Online} {
		when, _ := time.Parse(time.RFC3339, at)
		p := plan.Compute(plan.Input{Config: c, Loc: time.UTC, At: when, ClockTrusted: true})
		if len(p.Devices) != 1 || p.Devices[0].State != want {
			t.Errorf("%s: plan = %+v, want %s", at, p.Devices, want)
		}
	}
}
