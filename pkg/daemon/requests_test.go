package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/notify"
	"curfew/pkg/page"
	"curfew/pkg/plan"
)

func (h *harness) ask(minutes int, msg string) error {
	h.t.Helper()
	return h.d.Ask(childIP, page.Form{Minutes: minutes, Message: msg})
}

func (h *harness) answer(method, id string, minutes int) (control.ActionResult, error) {
	h.t.Helper()
	res, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: method, ID: id, Minutes: minutes})
	if err != nil {
		return control.ActionResult{}, err
	}
	return res.(control.ActionResult), nil
}

func TestABedtimeRequestIsAnsweredByAParent(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, london(t, "2026-01-05T21:30:00Z"))
	v, ok := h.d.View(childIP)
	if !ok || v.Online || v.Cause != plan.CauseSchedule || v.Schedule != "bedtime" || !v.CanAsk || v.AsksLeft != 5 ||
		v.Until.Format(time.RFC3339) != "2026-01-06T07:00:00Z" {
		t.Fatalf("page at bedtime: %+v %v", v, ok)
	}
	if _, ok := h.d.View(netip.MustParseAddr("192.0.2.99")); ok {
		t.Error("an address of no device gets a page")
	}
	if err := h.d.Ask(netip.MustParseAddr("192.0.2.99"), page.Form{Minutes: 15}); !errors.Is(err, page.NotOffline) {
		t.Errorf("a request from an address of no device: %v", err)
	}
	if err := h.ask(30, "homework <b>please</b>"); err != nil {
		t.Fatal(err)
	}
	if err := h.ask(60, "again"); err != nil {
		t.Fatal(err)
	}
	rs := h.d.listRequests()
	if len(rs) != 1 || rs[0].ID != "1" || rs[0].Minutes != 30 || rs[0].Message != "homework <b>please</b>" || rs[0].Status != control.RequestOpen ||
		rs[0].Device != "Kid phone" || rs[0].Profile != "kid" || rs[0].MAC != childMAC {
		t.Fatalf("asking twice: %+v", rs)
	}
	if v, _ := h.d.View(childIP); v.Request == nil || v.Request.Status != control.RequestOpen || v.CanAsk && v.Request == nil {
		t.Errorf("the page does not show the open request: %+v", v)
	}
	res, err := h.answer(control.MethodApprove, "1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Message != "approved request 1: allowed Kid phone until 22:00" {
		t.Errorf("message %q", res.Message)
	}
	// in the kernel before the answer, like every parent's action
	if s := h.state(); s.State != plan.Online || !s.Allowed {
		t.Errorf("after approve: %s %q", s.State, s.Reason)
	}
	if _, err := h.answer(control.MethodDeny, "1", 0); err == nil || !strings.Contains(err.Error(), "approved already") {
		t.Errorf("answering twice: %v", err)
	}
	ex, err := h.d.explain("Kid phone")
	if err != nil || len(ex.Devices[0].Requests) != 1 || !strings.Contains(ex.Devices[0].Requests[0], "approved at 21:30: 30 min (allow of the device)") {
		t.Errorf("explain: %+v %v", ex.Devices, err)
	}
	h.stop()
	h2 := start(t, dir, london(t, "2026-01-05T21:40:00Z"))
	if rs := h2.d.listRequests(); len(rs) != 1 || rs[0].Status != control.RequestApproved || rs[0].Granted != 30 {
		t.Errorf("after a restart: %+v", rs)
	}
	if s := h2.state(); s.State != plan.Online {
		t.Errorf("the approval's allow did not survive a restart: %s", s.State)
	}
	h2.cycle(func() { h2.clock.set(london(t, "2026-01-05T22:00:01Z")) })
	if s := h2.state(); s.State != plan.Offline {
		t.Errorf("after the approved 30 minutes: %s", s.State)
	}
}

func TestRequestsArePerDayAndExpireWithTheirWindow(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\toption requests_per_day '2'", 1))
	h := start(t, dir, london(t, "2026-01-05T21:30:00Z"))
	for i, id := range []string{"1", "2"} {
		if err := h.ask(15, ""); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if _, err := h.answer(control.MethodDeny, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.ask(15, ""); !errors.Is(err, page.TooMany) {
		t.Errorf("third request with requests_per_day 2: %v", err)
	}
	if v, _ := h.d.View(childIP); v.CanAsk || v.AsksLeft != 0 || v.Request == nil || v.Request.Status != control.RequestDenied {
		t.Errorf("page after the last request: %+v", v)
	}
	// the next evening: asking again, and a request that waits past the
	// window's end expires
	h.cycle(func() { h.clock.set(london(t, "2026-01-06T21:30:00Z")) })
	if err := h.ask(15, ""); err != nil {
		t.Fatal(err)
	}
	h.cycle(func() { h.clock.set(london(t, "2026-01-07T07:00:01Z")) })
	if rs := h.d.listRequests(); rs[0].ID != "3" || rs[0].Status != control.RequestExpired {
		t.Errorf("after the window: %+v", rs[0])
	}
	if _, err := h.answer(control.MethodApprove, "3", 0); err == nil {
		t.Error("an expired request was approved")
	}
}

func TestAnOnlineDeviceHasNothingToAsk(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	v, ok := h.d.View(childIP)
	if !ok || !v.Online || v.CanAsk || v.Until.Format(time.RFC3339) != "2026-01-05T21:00:00Z" {
		t.Errorf("online page: %+v", v)
	}
	if err := h.ask(15, ""); !errors.Is(err, page.NotOffline) {
		t.Errorf("request while online: %v", err)
	}
}

func TestAnApprovalNeverShortensAnAllow(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T21:30:00Z"))
	if err := h.ask(15, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodAllow, Target: "Kid phone", Until: "23:30"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.answer(control.MethodApprove, "1", 0); err != nil {
		t.Fatal(err)
	}
	if s := h.state(); s.Until == nil || s.Until.Format("15:04") != "23:30" {
		t.Errorf("after approving 15 min inside an allow until 23:30: online until %v", s.Until)
	}
}

// events collects what a notifier posts.
type events struct {
	mu  sync.Mutex
	got []notify.Event
}

func (e *events) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev notify.Event
	json.NewDecoder(r.Body).Decode(&ev)
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

func (e *events) kinds() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.got {
		out = append(out, ev.Event)
	}
	return strings.Join(out, " ")
}

// A used-up budget: the parents hear of it once, the child may ask, and
// the approval is a grant of screen time; a new MAC is told once, devices
// present at start-up not at all; bypass attempts at most once an hour.
func TestBudgetRequestsAreGrantsAndEventsAreToldOnce(t *testing.T) {
	dir := t.TempDir()
	rec := &events{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cfg := strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\tlist notify '"+srv.URL+"/hook'", 1)
	write(t, dir, strings.Replace(cfg, "option name 'Kid'", "option name 'Kid'\n\toption daily_limit '2m'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	cb := &countingBackend{fakeBackend: newFakeBackend(), bytes: map[string]uint64{childMAC: 0}}
	clock := &fakeClock{now: london(t, "2026-01-05T12:00:00Z")}
	child, _ := net.ParseMAC(childMAC)
	stranger, _ := net.ParseMAC("5a:00:00:00:00:01")
	seen := []Neighbour{{MAC: child, IPs: []netip.Addr{childIP}}}
	var seenMu sync.Mutex
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"), StateDir: filepath.Join(dir, "state"),
		Backend: cb, Clock: clock, Notify: n,
		Seen: func([]string) []Neighbour {
			seenMu.Lock()
			defer seenMu.Unlock()
			return append([]Neighbour(nil), seen...)
		}})
	d.load()
	d.reconcile(ctx)
	d.tick(ctx)
	for i := 0; i < 3; i++ {
		cb.send(childMAC, 1<<20)
		clock.advance(time.Minute)
		d.tick(ctx)
		d.reconcile(ctx)
	}
	seenMu.Lock()
	seen = append(seen, Neighbour{MAC: stranger})
	seenMu.Unlock()
	d.reconcile(ctx)
	d.reconcile(ctx)
	d.mu.Lock()
	for i := 0; i < 3; i++ {
		d.noteBypass(plan.Device{MAC: childMAC, Name: "Kid phone", Profile: "kid"}, clock.Now())
	}
	d.mu.Unlock()
	if err := d.Ask(childIP, page.Form{Minutes: 15}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Handle(ctx, &control.Request{V: 1, Method: control.MethodApprove, ID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if msg := res.(control.ActionResult).Message; msg != "approved request 1: granted Kid phone 15m more screen time today" {
		t.Errorf("approving a used-up budget: %q", msg)
	}
	if s := d.status(); s.Plan.Devices[0].State != plan.Online {
		t.Errorf("after the grant: %+v", s.Plan.Devices[0])
	}
	want := "budget_used new_device bypass request"
	for deadline := time.Now().Add(3 * time.Second); rec.kinds() != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rec.kinds(); got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestAPauseWithoutEndHasNoEndOnThePage(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, strings.Replace(testConfig, "option name 'Kid'", "option name 'Kid'\n\toption daily_limit '2h'", 1))
	h := start(t, dir, london(t, "2026-01-05T12:00:00Z"))
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodPause, Target: "Kid phone"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.d.View(childIP); v.Online || v.Cause != plan.CausePause || !v.Until.IsZero() {
		t.Errorf("paused until resumed: %+v", v)
	}
}

// A device named like its profile: the approval of its request lets that
// device online, not the profile's other devices (it acts on the MAC).
func TestAnApprovalActsOnTheDeviceEvenIfItIsNamedLikeItsProfile(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(testConfig, "option name 'Kid phone'", "option name 'kid'", 1) +
		"\nconfig device\n\toption mac '02:c0:00:00:00:0b'\n\toption name 'Kid tablet'\n\toption profile 'kid'\n"
	write(t, dir, cfg)
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644)
	h := start(t, dir, london(t, "2026-01-05T21:30:00Z"))
	if err := h.ask(30, ""); err != nil {
		t.Fatal(err)
	}
	res, err := h.answer(control.MethodApprove, "1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Message != "approved request 1: allowed kid until 22:00" {
		t.Errorf("message %q", res.Message)
	}
	for _, d := range h.d.status().Plan.Devices {
		if want := map[string]string{childMAC: plan.Online, "02:c0:00:00:00:0b": plan.Offline}[d.MAC]; d.State != want {
			t.Errorf("%s (%s) is %s after approving the phone's request, want %s", d.Name, d.MAC, d.State, want)
		}
	}
}

// Devices the config does not list ask as one device: a child with a new
// random MAC for each request gets one open request and a day's worth in
// all, and the configured child can still ask.
func TestUnknownDevicesAskAsOne(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\toption unknown_profile 'kid'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644)
	child, _ := net.ParseMAC(childMAC)
	seen := []Neighbour{{MAC: child, IPs: []netip.Addr{childIP}}}
	var strangers []netip.Addr
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + i)})
		strangers = append(strangers, a)
		seen = append(seen, Neighbour{MAC: net.HardwareAddr{0x5a, 0, 0, 0, 0, byte(i)}, IPs: []netip.Addr{a}})
	}
	clock := &fakeClock{now: london(t, "2026-01-05T21:30:00Z")}
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"), StateDir: filepath.Join(dir, "state"),
		Backend: newFakeBackend(), Clock: clock, Seen: func([]string) []Neighbour { return seen }})
	ctx := context.Background()
	d.load()
	d.reconcile(ctx)
	if err := d.Ask(strangers[0], page.Form{Minutes: 15}); err != nil {
		t.Fatalf("the first unknown device's request: %v", err)
	}
	if err := d.Ask(strangers[1], page.Form{Minutes: 15}); !errors.Is(err, page.Busy) {
		t.Errorf("a second unknown device while the first's is open: %v, want Busy", err)
	}
	// answered, the next may ask, up to one device's requests a day
	for i := 1; i < 10; i++ {
		if _, err := d.Handle(ctx, &control.Request{V: 1, Method: control.MethodDeny, ID: strconv.Itoa(i)}); err != nil {
			t.Fatalf("deny %d: %v", i, err)
		}
		err := d.Ask(strangers[i], page.Form{Minutes: 15})
		if i < 5 && err != nil {
			t.Fatalf("unknown device %d, %d requests of unknown devices today: %v", i, i, err)
		}
		if i >= 5 {
			if !errors.Is(err, page.TooMany) {
				t.Errorf("unknown device %d after 5 requests of unknown devices today: %v, want TooMany", i, err)
			}
			break
		}
	}
	if err := d.Ask(childIP, page.Form{Minutes: 30}); err != nil {
		t.Errorf("the configured child after the unknown devices: %v", err)
	}
}

// A request that cannot be saved is not taken: its ID would be given again
// after a restart, and a parent answering its notification would answer
// another device's request.
func TestARequestIDIsNeverGivenTwice(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, london(t, "2026-01-05T21:30:00Z"))
	state := filepath.Join(dir, "state")
	// the state dir becomes a file: every save fails (root ignores modes)
	os.RemoveAll(state)
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.ask(30, "lost"); !errors.Is(err, page.Busy) {
		t.Errorf("a request that cannot be saved: %v, want Busy (ask again)", err)
	}
	if rs := h.d.listRequests(); len(rs) != 0 {
		t.Errorf("a request that was not saved is listed: %+v", rs)
	}
	os.Remove(state)
	if err := h.ask(30, "kept"); err != nil {
		t.Fatal(err)
	}
	first := h.d.listRequests()
	h.stop()
	h2 := start(t, dir, london(t, "2026-01-05T21:40:00Z"))
	if _, err := h2.answer(control.MethodDeny, first[0].ID, 0); err != nil {
		t.Fatal(err)
	}
	h2.clock.set(london(t, "2026-01-05T21:41:00Z"))
	if err := h2.ask(15, "again"); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, r := range h2.d.listRequests() {
		if other, dup := ids[r.ID]; dup {
			t.Errorf("ID %s given to %q and %q", r.ID, other, r.Message)
		}
		ids[r.ID] = r.Message
	}
	if len(ids) != 2 {
		t.Errorf("requests after a restart: %v", ids)
	}
}

// Winding down: the loop wakes when it begins; the ruleset slows the
// child's device at its profile's rate; the child's own topic hears it
// once (not the parents, who did not ask); the page says "bedtime in 10
// minutes"; at the window the device is offline.
func TestAWindDownIsEnforcedToldAndShown(t *testing.T) {
	dir := t.TempDir()
	child, parents := &events{}, &events{}
	cs, ps := httptest.NewServer(child), httptest.NewServer(parents)
	defer cs.Close()
	defer ps.Close()
	cfg := strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\tlist notify '"+ps.URL+"/hook'", 1)
	cfg = strings.Replace(cfg, "option name 'Kid'", "option name 'Kid'\n\toption wind_down '10m'\n\toption wind_down_rate '2mbit'\n\tlist notify '"+cs.URL+"/kid'", 1)
	write(t, dir, cfg)
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644)
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	h := startWith(t, dir, london(t, "2026-01-05T20:00:00Z"), func() bool { return true }, func(o *Options) { o.Notify = n })

	rs := h.backend.last()
	if len(rs.Devices) != 1 || rs.Devices[0].SlowRate != 2_000_000 || len(rs.Devices[0].Slow) == 0 ||
		!rs.Devices[0].Slow[0].From.Equal(london(t, "2026-01-05T20:50:00Z")) || !rs.Devices[0].Slow[0].To.Equal(london(t, "2026-01-05T21:00:00Z")) {
		t.Fatalf("the ruleset before the wind-down: %+v", rs.Devices)
	}
	h.cycle(func() { h.clock.set(london(t, "2026-01-05T20:50:01Z")) }) // the loop wakes at its start
	v, _ := h.d.View(childIP)
	if !v.Online || !v.SlowUntil.Equal(london(t, "2026-01-05T21:00:00Z")) {
		t.Errorf("the page while winding down: online %v, slowed until %v", v.Online, v.SlowUntil)
	}
	if d := h.d.status().Plan.Devices[0]; d.Reason != "winding down until 21:00: slowed before it goes offline" {
		t.Errorf("status: %q", d.Reason)
	}
	h.d.reconcile(ctx) // nothing new to tell
	for deadline := time.Now().Add(3 * time.Second); child.kinds() == "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := child.kinds(); got != "wind_down" {
		t.Errorf("the child's topic heard %q, want one wind_down", got)
	}
	if got := parents.kinds(); got != "" {
		t.Errorf("the parents heard %q, want nothing (notify_events does not list wind_down)", got)
	}
	h.cycle(func() { h.clock.set(london(t, "2026-01-05T21:00:01Z")) })
	if v, _ := h.d.View(childIP); v.Online || !v.SlowUntil.IsZero() {
		t.Errorf("the page at the window: online %v, slowed until %v", v.Online, v.SlowUntil)
	}
}
