package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/notify"
	"curfew/pkg/report"
)

// The weekly report comes once a week at report_time in the router's
// zone: on the Sunday summer time begins, 01:30 does not exist in London
// and the report comes at the first minute after the jump; never twice,
// not after a restart either; and a week later again.
func TestTheWeeklyReportComesOnceAtItsTimeAcrossDST(t *testing.T) {
	dir := t.TempDir()
	rec := &events{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'",
		"list lan 'br-lan'\n\tlist notify '"+srv.URL+"/hook'\n\toption report_time '01:30'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644)
	cb := &countingBackend{fakeBackend: newFakeBackend(), bytes: map[string]uint64{childMAC: 0}}
	clock := &fakeClock{now: london(t, "2026-03-28T12:00:00Z")} // a Saturday
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	child, _ := net.ParseMAC(childMAC)
	start := func() *Daemon {
		d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"), StateDir: filepath.Join(dir, "state"),
			Backend: cb, Clock: clock, Notify: n,
			Seen: func([]string) []Neighbour { return []Neighbour{{MAC: child, IPs: []netip.Addr{childIP}}} }})
		d.restore()
		d.load()
		d.reconcile(ctx)
		return d
	}
	d := start()
	d.tick(ctx) // the first start: the next report is counted from now
	for range 3 {
		cb.send(childMAC, 1<<20)
		clock.advance(time.Minute)
		d.tick(ctx)
	}
	count := func(want int) []notify.Event {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			rec.mu.Lock()
			got := len(rec.got)
			rec.mu.Unlock()
			if got >= want {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // a second one would come now
		kinds := rec.kinds()
		rec.mu.Lock()
		got := append([]notify.Event(nil), rec.got...)
		rec.mu.Unlock()
		if len(got) != want {
			t.Fatalf("at %s: %d events (%s), want %d weekly reports", clock.Now().Format(time.RFC3339), len(got), kinds, want)
		}
		return got
	}
	// Minute by minute through the night: 01:00 GMT is 02:00 BST.
	for clock.Now().Add(10 * time.Minute).Before(london(t, "2026-03-29T01:00:00Z")) {
		clock.advance(10 * time.Minute)
		d.tick(ctx)
	}
	clock.set(london(t, "2026-03-29T00:59:30Z"))
	d.tick(ctx)
	count(0)
	clock.set(london(t, "2026-03-29T01:00:30Z"))
	d.tick(ctx)
	got := count(1)[0]
	if got.Event != notify.WeeklyReport || !strings.HasPrefix(got.Text, "2026-03-23 to 2026-03-29\n") || !strings.Contains(got.Text, "\nKid: 3m online") {
		t.Errorf("the report: %s %q", got.Event, got.Text)
	}
	if r, _ := got.Report.(map[string]any); r == nil || r["from"] != "2026-03-23" || r["to"] != "2026-03-29" {
		t.Errorf("the report's JSON: %v", got.Report)
	}
	// `curfew report --week` asked now says what the parents were sent.
	res, err := d.Handle(ctx, &control.Request{V: control.Version, Method: control.MethodReport, Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if text := res.(report.Report).Text(); text != got.Text {
		t.Errorf("curfew report --week:\n%s\nthe event:\n%s", text, got.Text)
	}
	// The rest of the day, then a restart from the state dir.
	for range 24 {
		clock.advance(time.Hour)
		d.tick(ctx)
	}
	d = start()
	for range 6*24 - 1 {
		clock.advance(time.Hour)
		d.tick(ctx)
	}
	count(1)
	if now := clock.Now(); !now.Before(london(t, "2026-04-05T00:30:00Z")) {
		t.Fatalf("the clock ran past the next report: %s", now)
	}
	clock.set(london(t, "2026-04-05T00:30:00Z")) // 01:30 BST
	d.tick(ctx)
	if got := count(2)[1]; !strings.HasPrefix(got.Text, "2026-03-30 to 2026-04-05\n") {
		t.Errorf("the second week: %q", got.Text)
	}
}

// A router switched off over its report time sends the report late, once,
// of the week that ended then; after weeks off, one report, not one per
// week missed.
func TestAReportMissedWhileSwitchedOffComesOnceLate(t *testing.T) {
	dir := t.TempDir()
	rec := &events{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\tlist notify '"+srv.URL+"/hook'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	clock := &fakeClock{now: london(t, "2026-01-03T12:00:00Z")}
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	start := func() *Daemon {
		d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"), StateDir: filepath.Join(dir, "state"),
			Backend: newFakeBackend(), Clock: clock, Notify: n, Seen: func([]string) []Neighbour { return nil }})
		d.restore()
		d.load()
		d.reconcile(ctx)
		return d
	}
	d := start()
	d.tick(ctx)
	d.saveUsage() // the hourly save
	// Off from Saturday noon to three weeks later, a Tuesday.
	clock.set(london(t, "2026-01-27T09:00:00Z"))
	d = start()
	for range 10 {
		d.tick(ctx)
		clock.advance(time.Minute)
	}
	deadline := time.Now().Add(3 * time.Second)
	for rec.kinds() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 1 || !strings.HasPrefix(rec.got[0].Text, "2026-01-19 to 2026-01-25\n") {
		t.Errorf("%d events; the first: %+v", len(rec.got), rec.got)
	}
}

// What the history costs the router's flash: 10 busy devices, every
// day with its 10 blocked names and a dozen services, and prune keeping
// the details for a week only. The file is rewritten at most once an
// hour (and when the weekly report is sent), so these bytes are what
// each write costs. README states the figures.
func TestTheHistoryOfTenDevicesStaysSmallOnFlash(t *testing.T) {
	now := london(t, "2026-12-06T18:00:00Z")
	b := &usageBook{}
	for i := range keepDays + 1 {
		day := b.day(now.AddDate(0, 0, -i).Format(time.DateOnly))
		for p := range 3 {
			day.Profiles[fmt.Sprintf("child%d", p)] = 120 + i
		}
		for dev := range 10 {
			du := &control.DeviceUsage{Name: fmt.Sprintf("Child %d tablet", dev), Profile: fmt.Sprintf("child%d", dev%3),
				Minutes: 100 + dev, BytesUp: 123456789, Blocked: 1234, BypassAttempts: 12, FlowsDropped: 3,
				TopBlocked: map[string]int{}, Services: map[string]int{}}
			for k := range control.MaxTopBlocked {
				du.TopBlocked[fmt.Sprintf("cdn%02d.some-blocked-site.example", k)] = 100 + k
			}
			for _, s := range []string{"youtube", "tiktok", "roblox", "minecraft", "netflix", "discord", "spotify", "instagram", "snapchat", "whatsapp", "twitch", "reddit"} {
				du.Services[s] = 50 + dev
			}
			day.Devices[fmt.Sprintf("02:00:00:00:00:%02x", dev)] = du
		}
	}
	size := func(b *usageBook) int {
		data, _ := json.Marshal(b)
		return len(data)
	}
	before := size(b)
	b.prune(now.Format(time.DateOnly), now)
	month := size(b)
	lastWeek := &usageBook{Days: map[string]*usageDay{}}
	for i := range 7 {
		date := now.AddDate(0, 0, -i).Format(time.DateOnly)
		lastWeek.Days[date] = b.Days[date]
	}
	days := 0
	for _, d := range b.Days {
		if d.Devices["02:00:00:00:00:00"].TopBlocked != nil {
			days++
		}
	}
	t.Logf("10 devices: a week %d bytes; the file of %d days %d bytes (%d with details for every day)", size(lastWeek), len(b.Days), month, before)
	if days != keepDetailDays {
		t.Errorf("details kept for %d days, want %d", days, keepDetailDays)
	}
	if w := size(lastWeek); w > 56<<10 {
		t.Errorf("a week of 10 devices is %d bytes: over 56 kB", w)
	}
	if month > 96<<10 {
		t.Errorf("the history of 10 devices is %d bytes: over 96 kB", month)
	}
}

// A minute's DNS activity goes into the day: a configured device keeps
// the names it was refused and the services it looked up, a MAC the
// config does not list only its counts (a child's random MACs must not
// each keep names on flash).
func TestTheDaysKeepRefusedNamesOfConfiguredDevicesOnly(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\toption unknown_profile 'kid'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	const stranger = "5a:00:00:00:00:01"
	cb := &countingBackend{fakeBackend: newFakeBackend(), bytes: map[string]uint64{childMAC: 0, stranger: 0}}
	clock := &fakeClock{now: london(t, "2026-01-05T12:00:00Z")}
	child, _ := net.ParseMAC(childMAC)
	other, _ := net.ParseMAC(stranger)
	dns := dnsfilter.NewServer(dnsfilter.Options{})
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"),
		Backend: cb, Clock: clock, DNS: dns,
		Seen: func([]string) []Neighbour { return []Neighbour{{MAC: child}, {MAC: other}} }})
	ctx := context.Background()
	d.load()
	d.reconcile(ctx)
	d.reconcile(ctx)
	for _, mac := range []string{childMAC, stranger} {
		dns.Stats().Count(mac, "tiktok.com", true, false)
		dns.Stats().Count(mac, "www.youtube.com", false, false)
	}
	d.tick(ctx)
	days, err := d.usageReport("", 1)
	if err != nil || len(days) != 1 {
		t.Fatalf("%v %v", days, err)
	}
	kid, strange := days[0].Devices[childMAC], days[0].Devices[stranger]
	if kid.Blocked != 1 || kid.TopBlocked["tiktok.com"] != 1 || kid.Services["youtube"] != 1 {
		t.Errorf("the configured child's minute: %+v", kid)
	}
	if strange.Blocked != 1 || strange.TopBlocked != nil || strange.Services != nil {
		t.Errorf("the unlisted MAC's minute: %+v, want its count and no names", strange)
	}
}
