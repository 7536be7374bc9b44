package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/firewall"
	"curfew/pkg/plan"
)

// fakeClock is a settable clock whose timers fire when it is advanced.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	// registered counts After calls, so a test can wait for the loop to
	// go back to sleep after a change.
	registered int
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	c.registered++
	return ch
}

// set moves the clock to t (forward or back) and fires due timers.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func (c *fakeClock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

// fakeBackend records what the daemon asks of the kernel.
type fakeBackend struct {
	mu      sync.Mutex
	applied []*firewall.Ruleset
	cutoffs [][]net.HardwareAddr
	removed int
}

func newFakeBackend() *fakeBackend { return &fakeBackend{} }

func (b *fakeBackend) Name() string { return "fake" }

func (b *fakeBackend) Apply(_ context.Context, rs *firewall.Ruleset) error {
	b.mu.Lock()
	b.applied = append(b.applied, rs)
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) Remove(context.Context) error {
	b.mu.Lock()
	b.removed++
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) Cutoff(_ context.Context, macs []net.HardwareAddr, sel firewall.Flows) (firewall.Cut, error) {
	if sel.Dests == nil && !sel.DNS {
		b.mu.Lock()
		b.cutoffs = append(b.cutoffs, macs)
		b.mu.Unlock()
	}
	return firewall.Cut{Flows: len(macs)}, nil
}

var _ firewall.Backend = (*fakeBackend)(nil) // type check

const childMAC = "02:c0:00:00:00:0a"

var childIP = netip.MustParseAddr("192.0.2.10")

const testConfig = `config curfew 'main'
	list lan 'br-lan'

config profile 'kid'
	option name 'Kid'

config device
	option mac '02:c0:00:00:00:0a'
	option name 'Kid phone'
	option profile 'kid'

config schedule 'bedtime'
	option profile 'kid'
	option days 'daily'
	option start '21:00'
	option stop '07:00'
`

type harness struct {
	t       testing.TB
	dir     string
	clock   *fakeClock
	backend *fakeBackend
	jumps   chan struct{}
	d       *Daemon
	cancel  context.CancelFunc
	done    chan struct{}
}

func start(t testing.TB, dir string, at time.Time) *harness {
	t.Helper()
	return startWith(t, dir, at, func() bool { return true })
}

func startWith(t testing.TB, dir string, at time.Time, trusted func() bool, more ...func(*Options)) *harness {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "curfew")); err != nil {
		write(t, dir, testConfig)
		if err := os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, dir: dir, clock: &fakeClock{now: at}, backend: newFakeBackend(), jumps: make(chan struct{}, 1), done: make(chan struct{})}
	mac, _ := net.ParseMAC(childMAC)
	opts := Options{
		ConfigPath:   filepath.Join(dir, "curfew"),
		SystemPath:   filepath.Join(dir, "system"),
		StateDir:     filepath.Join(dir, "state"),
		Backend:      h.backend,
		Seen:         func([]string) []Neighbour { return []Neighbour{{MAC: mac, IPs: []netip.Addr{childIP}}} },
		ClockJumps:   h.jumps,
		ClockTrusted: trusted,
		Clock:        h.clock,
		// Long enough that only the plan's changes wake the loop.
		ResyncEvery: 24 * time.Hour,
	}
	for _, f := range more {
		f(&opts)
	}
	h.d = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.d.Run(ctx); close(h.done) }()
	h.sleeping(0) // the first reconcile is done
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func write(t testing.TB, dir, cfg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "curfew"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cycle runs f and waits until the loop has reconciled and gone back to
// sleep.
func (h *harness) cycle(f func()) {
	h.t.Helper()
	n := h.sleeps()
	f()
	h.sleeping(n)
}

// sleeping waits until the loop has gone to sleep more than n times.
func (h *harness) sleeping(n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if h.sleeps() > n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	h.t.Fatal("the loop never went to sleep")
}

func (h *harness) sleeps() int {
	h.clock.mu.Lock()
	defer h.clock.mu.Unlock()
	return h.clock.registered
}

func (h *harness) state() plan.Device {
	h.t.Helper()
	st := h.d.status()
	for _, d := range st.Plan.Devices {
		if d.MAC == childMAC {
			return d
		}
	}
	h.t.Fatal("child not in the plan")
	return plan.Device{}
}

func london(t *testing.T, s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoopWakesAtTheNextChangeAndCutsConnections(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T20:59:00Z"))
	if s := h.state(); s.State != plan.Online {
		t.Fatalf("before bedtime: %+v", s)
	}
	h.cycle(func() { h.clock.advance(61 * time.Second) })
	if s := h.state(); s.State != plan.Offline || s.Reason != "schedule bedtime 21:00-07:00" {
		t.Errorf("at bedtime: %s %q", s.State, s.Reason)
	}
	h.backend.mu.Lock()
	defer h.backend.mu.Unlock()
	if len(h.backend.cutoffs) != 1 || h.backend.cutoffs[0][0].String() != childMAC {
		t.Errorf("cutoffs = %v, want the child's connections cut once", h.backend.cutoffs)
	}
}

func TestClockStepReevaluatesAtOnce(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	// NTP steps the clock into bedtime; no timer is due, only the step.
	h.cycle(func() {
		h.clock.mu.Lock()
		h.clock.now = london(t, "2026-01-05T22:00:00Z")
		h.clock.mu.Unlock()
		h.jumps <- struct{}{}
	})
	if s := h.state(); s.State != plan.Offline {
		t.Errorf("after the step: %s %q", s.State, s.Reason)
	}
}

func TestBadReloadKeepsTheLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, london(t, "2026-01-05T22:00:00Z"))
	write(t, dir, strings.Replace(testConfig, "'21:00'", "'25:00'", 1))
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodReload}); err == nil ||
		!strings.Contains(err.Error(), "invalid time \"25:00\"") {
		t.Errorf("reload err = %v", err)
	}
	st := h.d.status()
	if st.Config.OK || len(st.Config.Errors) != 1 || !strings.Contains(st.Config.Errors[0], "option 'start'") {
		t.Errorf("status config = %+v", st.Config)
	}
	if s := h.state(); s.State != plan.Offline {
		t.Errorf("last good config not in force: %s", s.State)
	}
	write(t, dir, testConfig)
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodReload}); err != nil {
		t.Errorf("good reload: %v", err)
	}
	if st := h.d.status(); !st.Config.OK {
		t.Errorf("status after a good reload: %+v", st.Config)
	}
}

func TestPauseTakesEffectAtOnceAndExpiresOnItsOwn(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	slept := h.sleeps()
	res, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodPause, Target: "kid", For: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	if msg := res.(control.ActionResult).Message; msg != "paused kid until 12:10" {
		t.Errorf("message = %q", msg)
	}
	// Applied before the answer: no waiting for the loop.
	if s := h.state(); s.State != plan.Offline || s.Reason != "paused by parent" {
		t.Errorf("after pause: %s %q", s.State, s.Reason)
	}
	h.sleeping(slept) // back asleep, now until the pause's end
	h.cycle(func() { h.clock.advance(10*time.Minute + time.Second) })
	if s := h.state(); s.State != plan.Online {
		t.Errorf("after the pause's end: %s %q", s.State, s.Reason)
	}
}

func TestOverridesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, london(t, "2026-01-05T12:00:00Z"))
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodPause, Target: "Kid Phone"}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	if h.backend.removed == 0 {
		t.Error("a clean stop must remove the kernel rules")
	}
	h2 := start(t, dir, london(t, "2026-01-05T13:00:00Z"))
	if s := h2.state(); s.State != plan.Offline || s.Reason != "paused by parent" {
		t.Errorf("after restart: %s %q", s.State, s.Reason)
	}
	if _, err := h2.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodResume, Target: "kid phone"}); err != nil {
		t.Fatal(err)
	}
	if s := h2.state(); s.State != plan.Online {
		t.Errorf("after resume: %s %q", s.State, s.Reason)
	}
}

func TestAllowAndPauseTheLatestWordWins(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T21:30:00Z"))
	ctx := context.Background()
	if _, err := h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodAllow, Target: "kid", Until: "22:15"}); err != nil {
		t.Fatal(err)
	}
	if s := h.state(); s.State != plan.Online {
		t.Errorf("allowed at bedtime: %s %q", s.State, s.Reason)
	}
	if _, err := h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodPause, Target: "kid", For: "1h"}); err != nil {
		t.Fatal(err)
	}
	if s := h.state(); s.State != plan.Offline {
		t.Errorf("paused after allowing: %s %q", s.State, s.Reason)
	}
	ex, err := h.d.explain("kid")
	if err != nil {
		t.Fatal(err)
	}
	want := "offline until Tue 07:00 — schedule 'bedtime' (21:00-07:00, daily); paused by parent until 22:30 would also apply"
	if got := ex.Devices[0].Text; got != want {
		t.Errorf("explain:\n got %s\nwant %s", got, want)
	}
}

func TestActionsRefuseUnknownTargetsAndBadTimes(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	ctx := context.Background()
	for _, tc := range []struct {
		req  control.Request
		want string
	}{
		{control.Request{V: 1, Method: control.MethodPause, Target: "bobby"}, `unknown target "bobby"`},
		{control.Request{V: 1, Method: control.MethodPause, Target: "kid", For: "soon"}, "--for: invalid duration"},
		{control.Request{V: 1, Method: control.MethodAllow, Target: "kid", Until: "25:00"}, "--until: invalid time"},
		{control.Request{V: 1, Method: control.MethodGrant, Target: "kid", Amount: "lots"}, `invalid amount "lots"`},
		{control.Request{V: 1, Method: control.MethodResume, Target: "kid"}, "kid is not paused"},
	} {
		if _, err := h.d.Handle(ctx, &tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.req, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.dir, "state", stateFile)); err == nil {
		t.Error("refused commands wrote the state file")
	}
}

func TestUntilMeansTheNextSuchLocalTime(t *testing.T) {
	loc := time.UTC
	now := time.Date(2026, 1, 5, 19, 0, 0, 0, loc)
	for in, want := range map[string]string{
		"18:00": "2026-01-06T18:00:00Z",
		"20:30": "2026-01-05T20:30:00Z",
		"":      "0001-01-01T00:00:00Z",
	} {
		got, err := when(now, loc, "", in)
		if err != nil || got.Format(time.RFC3339) != want {
			t.Errorf("--until %q = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestUntrustedClockUntilNTPSays(t *testing.T) {
	h := startWith(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"), func() bool { return false })
	if s := h.state(); s.State != plan.Offline || !strings.Contains(s.Reason, "clock not synchronised") {
		t.Errorf("before NTP: %s %q", s.State, s.Reason)
	}
	if st := h.d.status(); st.ClockTrusted {
		t.Error("status says the clock is trusted")
	}
	if _, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodClockSynced}); err != nil {
		t.Fatal(err)
	}
	if s := h.state(); s.State != plan.Online {
		t.Errorf("after NTP: %s %q", s.State, s.Reason)
	}
}

// countingBackend is a fakeBackend that also reports per-MAC counters.
type countingBackend struct {
	*fakeBackend
	mu    sync.Mutex
	bytes map[string]uint64
}

func (b *countingBackend) Counters(context.Context) (map[string]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range b.bytes {
		out[k] = v
	}
	return out, nil
}

func (b *countingBackend) send(mac string, n uint64) {
	b.mu.Lock()
	b.bytes[mac] += n
	b.mu.Unlock()
}

func TestScreenTimeIsSharedAndIgnoresChatter(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, testConfig+`
config device
	option mac '02:c0:00:00:00:0b'
	option name 'Kid tablet'
	option profile 'kid'
`)
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"), 0o644)
	cb := &countingBackend{fakeBackend: newFakeBackend(), bytes: map[string]uint64{childMAC: 0, "02:c0:00:00:00:0b": 0}}
	clock := &fakeClock{now: london(t, "2026-03-28T23:58:00Z")}
	a, _ := net.ParseMAC(childMAC)
	b, _ := net.ParseMAC("02:c0:00:00:00:0b")
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"),
		Backend: cb, Clock: clock, Seen: func([]string) []Neighbour { return []Neighbour{{MAC: a}, {MAC: b}} }})
	d.load()
	ctx := context.Background()
	d.reconcile(ctx)
	d.tick(ctx) // first reading: a baseline, nothing counted
	minute := func(sendA, sendB uint64) {
		cb.send(childMAC, sendA)
		cb.send("02:c0:00:00:00:0b", sendB)
		clock.advance(time.Minute)
		d.tick(ctx)
	}
	minute(10<<10, 10<<10) // each under the threshold, together over it
	minute(500, 300)       // idle chatter
	minute(40<<10, 40<<10) // both busy at once: one minute of the shared budget
	day := d.usage.Days["2026-03-28"]
	if day == nil || day.Profiles["kid"] != 1 {
		t.Fatalf("before midnight: %+v", day)
	}
	if day2 := d.usage.Days["2026-03-29"]; day2 == nil || day2.Profiles["kid"] != 1 || day2.Devices[childMAC].Minutes != 1 {
		t.Errorf("after midnight (local day of the spring-forward): %+v", day2)
	}
	if got := d.usage.used("2026-03-29")["kid"]; got != time.Minute {
		t.Errorf("used today = %v", got)
	}
}

// TestResumeMeansWhatTheParentMeant: resuming a profile ends its devices'
// own pauses too; resuming a device whose profile is paused says so, and
// how to end it, instead of silently leaving it offline.
func TestResumeMeansWhatTheParentMeant(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	ctx := context.Background()
	do := func(method, target string) (string, error) {
		res, err := h.d.Handle(ctx, &control.Request{V: 1, Method: method, Target: target})
		if err != nil {
			return "", err
		}
		return res.(control.ActionResult).Message, nil
	}
	if _, err := do(control.MethodPause, "Kid phone"); err != nil {
		t.Fatal(err)
	}
	if msg, err := do(control.MethodResume, "kid"); err != nil || msg != "resumed kid" {
		t.Errorf("resume of the profile: %q %v", msg, err)
	}
	if s := h.state(); s.State != plan.Online {
		t.Errorf("a device pause survived the profile's resume: %s %q", s.State, s.Reason)
	}

	do(control.MethodPause, "kid")
	do(control.MethodPause, childMAC)
	msg, err := do(control.MethodResume, "kid phone")
	if err != nil || msg != "resumed Kid phone; it stays paused through profile kid (curfew resume kid ends that, for all its devices)" {
		t.Errorf("resume of the device: %q %v", msg, err)
	}
	if s := h.state(); s.State != plan.Offline {
		t.Errorf("resuming the device ended its profile's pause: %s", s.State)
	}
	if _, err := do(control.MethodResume, "kid phone"); err == nil || !strings.Contains(err.Error(), "no pause of its own; it stays paused through profile kid") {
		t.Errorf("second resume of the device: %v", err)
	}
	if msg, err := do(control.MethodResume, "kid"); err != nil || msg != "resumed kid" {
		t.Errorf("resume of the profile: %q %v", msg, err)
	}
	if _, err := do(control.MethodResume, "kid"); err == nil || err.Error() != "kid is not paused" {
		t.Errorf("resume of nothing: %v", err)
	}
}

// TestExplainSaysEachFactOnce: the texts the newcomer's run found
// repeating themselves.
func TestExplainSaysEachFactOnce(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	ctx := context.Background()
	explain := func() string {
		res, err := h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodExplain, Target: "kid"})
		if err != nil {
			t.Fatal(err)
		}
		return res.(control.Explanation).Devices[0].Text
	}
	if got := explain(); got != "online until 21:00, then offline" {
		t.Errorf("plain online: %q", got)
	}
	h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodPause, Target: "kid", For: "30m"})
	h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodPause, Target: "Kid phone", For: "30m"})
	if got := explain(); got != "offline until 12:30 — paused by parent" {
		t.Errorf("paused twice: %q", got)
	}
	h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodAllow, Target: "kid", For: "1h"})
	if got := explain(); got != "online until 21:00, then offline — allowed by parent until 13:00 (overrides paused by parent until 12:30)" {
		t.Errorf("allowed: %q", got)
	}
	res, err := h.d.Handle(ctx, &control.Request{V: 1, Method: control.MethodGrant, Target: "kid", Amount: "90m"})
	if err != nil || res.(control.ActionResult).Message != "granted kid 1h30m more screen time today" {
		t.Errorf("grant: %v %v", res, err)
	}
}

func TestLogLinesSayEachFactOnce(t *testing.T) {
	loc := time.UTC
	until := time.Date(2026, 1, 6, 7, 0, 0, 0, loc)
	for _, tc := range []struct {
		dev  plan.Device
		want string
	}{
		{plan.Device{Name: "Kid phone", MAC: childMAC, State: plan.Offline, Reason: "schedule bedtime 21:00-07:00", Until: &until},
			"Kid phone offline until Tue 07:00 — schedule bedtime 21:00-07:00"},
		{plan.Device{Name: "Parent laptop", State: plan.Online, Reason: "online"}, "Parent laptop online"},
		{plan.Device{MAC: "5a:00:00:00:00:09", Unknown: true, Profile: "guest", State: plan.Online, Reason: "online"},
			"5a:00:00:00:00:09 (not in the config, profile guest) online"},
	} {
		if got := describe(tc.dev, loc); got != tc.want {
			t.Errorf("describe = %q\n    want %q", got, tc.want)
		}
	}
	// one long-lived connection and a minute of closed probes: a parent
	// counts one connection
	if got := describeCut(firewall.Cut{Flows: 81, Open: 1}, "at once"); got != "stopped 1 open connection(s) at once (and cleared 80 finished or idle flow(s))" {
		t.Errorf("describeCut = %q", got)
	}
}

// TestDaemonCommandLine: the daemon takes --json like every command, and a
// mistyped flag says what was wrong (exit 64) before anything starts.
func TestDaemonCommandLine(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Command(context.Background(), []string{"--bogus"}, "test", &out, &errb); code != 64 || !strings.Contains(errb.String(), "unknown flag: --bogus") || !strings.Contains(errb.String(), "Usage: curfew daemon") {
		t.Errorf("--bogus: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := Command(context.Background(), []string{"extra"}, "test", &out, &errb); code != 64 || !strings.Contains(errb.String(), "takes no arguments") {
		t.Errorf("extra argument: %d %q", code, errb.String())
	}
	out.Reset()
	if code := Command(context.Background(), []string{"--help"}, "test", &out, &errb); code != 0 || !strings.Contains(out.String(), "--json") {
		t.Errorf("--help: %d %q", code, out.String())
	}
	var logs bytes.Buffer
	newLogger(&logs, true, false).Info("Kid phone offline", "until", "07:00")
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line["msg"] != "Kid phone offline" || line["until"] != "07:00" {
		t.Errorf("--json log line %q: %v", logs.String(), err)
	}
}

// last is the ruleset applied last.
func (b *fakeBackend) last() *firewall.Ruleset {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applied[len(b.applied)-1]
}
