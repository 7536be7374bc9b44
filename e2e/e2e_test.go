// Package e2e runs the real curfew binary as a daemon in the namespace lab's
// router and checks what a parent would check: real TCP, UDP and DNS from
// the child's, the parent's and a guest's namespace, against the real kernel.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"curfew/pkg/lab"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "curfew-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// CURFEW_BINARY names a curfew built already: the VM lab's guests,
	// which run this test cross-compiled, have no Go toolchain.
	if binary = os.Getenv("CURFEW_BINARY"); binary == "" {
		binary = filepath.Join(dir, "curfew")
		out, err := exec.Command("go", "build", "-o", binary, "../cmd/curfew").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build curfew: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const system = "config system\n\toption hostname 'lab'\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"

var london = func() *time.Location {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		return time.UTC // only used to print HH:MM: any whole-hour zone gives the same minute boundaries
	}
	return loc
}()

// daemon is a curfew daemon running in the lab's router namespace.
type daemon struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	dir  string
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.Write(p)
}

func (d *daemon) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// waitLog waits until the log contains s.
func (d *daemon) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	if !lab.WaitFor(timeout, func() bool { return strings.Contains(d.Logs(), s) }) {
		t.Fatalf("daemon log lacks %q:\n%s", s, d.Logs())
	}
}

func start(t *testing.T, l *lab.Lab, cfg string) *daemon {
	t.Helper()
	return startIn(t, l, t.TempDir(), cfg)
}

// startIn starts a daemon whose files (config, state, socket) are in dir,
// so that a restart can find the state of the previous one.
func startIn(t *testing.T, l *lab.Lab, dir, cfg string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{dir: dir}
	if err := os.WriteFile(filepath.Join(d.dir, "curfew"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "system"), []byte(system), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", l.Router, binary, "daemon",
		"--config", filepath.Join(d.dir, "curfew"), "--system", filepath.Join(d.dir, "system"),
		"--state-dir", d.dir, "--socket", filepath.Join(d.dir, "sock"), "--trust-clock", "-v"}, extra...)
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Logs())
		}
	})
	// A bound on start-up that tells a daemon that applies from one that
	// never does, not a measure of it: the iptables backend's first apply
	// is a few dozen iptables runs, 22-40 s under the VM lab's emulated
	// big-endian CPU.
	if !lab.WaitFor(2*time.Minute, func() bool {
		return tablePresent(l) || strings.Contains(d.Logs(), "backend=iptables") && strings.Contains(d.Logs(), "Kid phone")
	}) {
		t.Fatalf("daemon did not apply its rules:\n%s", d.Logs())
	}
	return d
}

func (d *daemon) rewrite(t *testing.T, cfg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, "curfew"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
}

func tablePresent(l *lab.Lab) bool {
	_, err := l.Exec(context.Background(), l.Router, "nft", "list", "table", "inet", "curfew")
	return err == nil
}

func newLab(t *testing.T, name string) *lab.Lab {
	t.Helper()
	return lab.Start(t, name, "dig", "dnsmasq", "conntrack")
}

// reach checks reachability from ns, retrying briefly so that a first
// neighbour lookup does not count as blocked.
func reach(t *testing.T, l *lab.Lab, what, ns string, want bool, probe func() error) {
	t.Helper()
	var err error
	lab.WaitFor(2*time.Second, func() bool { err = probe(); return (err == nil) == want })
	if (err == nil) != want {
		t.Errorf("%s from %s: err=%v, want reachable=%v", what, ns, err, want)
	}
}

// online asserts the whole internet-facing picture of a host.
func online(t *testing.T, l *lab.Lab, h lab.Host, want bool) {
	t.Helper()
	reach(t, l, "TCP/IPv4", h.NS, want, func() error { return l.TCP(h.NS, lab.InternetV4) })
	reach(t, l, "TCP/IPv6", h.NS, want, func() error { return l.TCP(h.NS, lab.InternetV6) })
	reach(t, l, "UDP/IPv4", h.NS, want, func() error { return l.UDP(h.NS, lab.InternetV4) })
	reach(t, l, "UDP/IPv6", h.NS, want, func() error { return l.UDP(h.NS, lab.InternetV6) })
}

// nextMinute returns the next minute boundary at least lead away.
func nextMinute(lead time.Duration) time.Time {
	return time.Now().Add(lead).Truncate(time.Minute).Add(time.Minute)
}

// TestBedtime walks one real bedtime: before it, at its start (an open
// connection is cut), during it with the daemon killed, and at its end with
// no daemon at all.
func TestBedtime(t *testing.T) {
	l := newLab(t, "cfe1")
	ctx := context.Background()
	bed := nextMinute(15 * time.Second)
	wake := bed.Add(time.Minute)
	d := start(t, l, l.SampleConfig(bed.In(london).Format("15:04"), wake.In(london).Format("15:04"), ""))

	t.Log("before bedtime: everyone online; blocks and DNS rules in force")
	online(t, l, l.Child, true)
	online(t, l, l.Parent, true)
	reach(t, l, "blocked IPv4 prefix", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.BlockedV4) })
	reach(t, l, "blocked IPv6 prefix", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.BlockedV6) })
	reach(t, l, "the child's blocked prefix", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.BlockedV4) })
	reach(t, l, "unknown device, guest profile's block", l.Guest.NS, false, func() error { return l.TCP(l.Guest.NS, lab.BlockedV4) })
	reach(t, l, "unknown device, elsewhere", l.Guest.NS, true, func() error { return l.TCP(l.Guest.NS, lab.InternetV4) })
	reach(t, l, "DNS over TLS", l.Child.NS, false, func() error { return l.TCPPort(l.Child.NS, lab.InternetV4, lab.DoTPort) })
	if got, err := l.Dig(ctx, l.Child.NS, lab.InternetV4, false); err != nil || got != lab.RouterAnswer {
		t.Errorf("child's query to an outside resolver: %q %v, want the router's answer %s", got, err, lab.RouterAnswer)
	}

	conn, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := lab.Echo(conn, "before"); err != nil {
		t.Fatal(err)
	}

	time.Sleep(time.Until(bed))
	var stopped time.Time
	for i := 0; time.Since(bed) < 5*time.Second; i++ {
		if err := lab.Echo(conn, fmt.Sprint("line", i)); err != nil {
			stopped = time.Now()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if stopped.IsZero() {
		t.Fatal("the connection opened before bedtime still carries data 5 s after it")
	}
	lag := stopped.Sub(bed)
	t.Logf("open connection stopped %v after bedtime", lag.Round(time.Millisecond))
	if lag > 2*time.Second {
		t.Errorf("open connection stopped %v after bedtime, want within 2 s", lag)
	}

	t.Log("bedtime: the child is offline, the parent is not; the router answers the child's captive-portal probe and refuses other names")
	online(t, l, l.Child, false)
	online(t, l, l.Parent, true)
	if _, status, err := l.Query(ctx, l.Child.NS, lab.RouterV4, lab.ProbeName, "A"); err != nil || status != "REFUSED" {
		t.Errorf("child's DNS for an ordinary name at bedtime: %s %v, want REFUSED", status, err)
	}
	if ans, _, err := l.Query(ctx, l.Child.NS, lab.RouterV4, "captive.apple.com", "A"); err != nil || len(ans) != 1 || ans[0] != "A "+lab.CaptiveAnswer {
		t.Errorf("child's captive-portal probe at bedtime: %v %v", ans, err)
	}
	childMAC, _ := net.ParseMAC(l.Child.MAC)
	if err := l.DHCP(l.Child.NS, childMAC); err != nil {
		t.Errorf("child's DHCP at bedtime: %v", err)
	}
	d.waitLog(t, "Kid phone offline until", 2*time.Second)
	if out, _ := l.Exec(ctx, l.Router, "conntrack", "-L", "-s", l.Child.IPv4); strings.Contains(out, "dport="+lab.EchoPort+" ") && strings.Contains(out, "ESTABLISHED") {
		t.Errorf("child's established connection still in conntrack:\n%s", out)
	}

	t.Log("SIGKILL the daemon: the kernel keeps enforcing")
	d.cmd.Process.Kill()
	d.cmd.Wait()
	time.Sleep(500 * time.Millisecond)
	online(t, l, l.Child, false)
	if !tablePresent(l) {
		t.Fatal("table gone after SIGKILL")
	}

	time.Sleep(time.Until(wake) + 300*time.Millisecond)
	t.Log("wake-up time, no daemon running: the child is back online")
	online(t, l, l.Child, true)
	// Plain HTTP follows the kernel's intervals too, not a set only the
	// daemon refills: no redirect to a page that nobody serves.
	if code, body, err := l.Get(l.Child.NS, "http://"+lab.InternetV4+"/"); err != nil || !strings.Contains(body, lab.InternetAnswer) {
		t.Errorf("child's plain HTTP after the window, no daemon: %d %q %v, want the internet's answer", code, body, err)
	}
	// DNS while the filter is down fails closed (README, "Without the
	// daemon"): a profile with rules has its queries sent to the filter's
	// port, where nothing answers now; they fail at once, and never reach
	// a resolver that would not apply the rules. A profile without rules
	// (the parent's) never went through the filter.
	if got, err := l.Dig(ctx, l.Child.NS, lab.RouterV4, false); err == nil {
		t.Errorf("child's DNS with the filter down: answered %q, want no answer (no bypass of its rules)", got)
	}
	if got, err := l.Dig(ctx, l.Parent.NS, lab.RouterV4, false); err != nil || got != lab.RouterAnswer {
		t.Errorf("parent's DNS with the daemon down: %q %v, want the router's answer %s", got, err, lab.RouterAnswer)
	}
}

// TestDaemonKeepsItsRulesInForce covers the daemon's upkeep: a flushed
// ruleset comes back, a bad config changes nothing, a clean stop and
// `enabled '0'` remove the rules.
func TestDaemonKeepsItsRulesInForce(t *testing.T) {
	l := newLab(t, "cfe2")
	ctx := context.Background()
	always := l.SampleConfig("00:00", "24:00", "")
	d := start(t, l, always)
	// The packaging budget: an idle daemon with a small config stays under
	// 15 MB resident (amd64).
	time.Sleep(time.Second)
	if kb := lab.RSSKB(d.cmd.Process.Pid); kb == 0 || kb > 15*1024 {
		t.Errorf("idle daemon uses %d kB resident, budget 15 MB", kb)
	} else {
		t.Logf("idle daemon: %d kB resident", kb)
	}
	reach(t, l, "TCP/IPv6 in an all-day window", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })

	flushed := time.Now()
	if out, err := l.Exec(ctx, l.Router, "nft", "flush", "ruleset"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !lab.WaitFor(2*time.Second, func() bool { return tablePresent(l) }) {
		t.Fatalf("table not restored within 2 s of nft flush ruleset:\n%s", d.Logs())
	}
	t.Logf("table restored %v after nft flush ruleset", time.Since(flushed).Round(time.Millisecond))
	// fw4 (and its NAT) is gone too now, so IPv6 tells the story.
	reach(t, l, "TCP/IPv6 after the restore", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })
	reach(t, l, "TCP/IPv6 for the parent", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.InternetV6) })

	d.rewrite(t, always+"\nconfig schedule 'broken'\n\toption profile 'kid'\n\toption start '25:00'\n\toption stop '07:00'\n")
	d.waitLog(t, "option 'start': invalid time", 3*time.Second)
	d.waitLog(t, "still enforcing the last good config", time.Second)
	reach(t, l, "TCP/IPv6 after a bad reload", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })

	d.rewrite(t, l.SampleConfig("00:00", "24:00", "\toption enabled '0'\n"))
	if !lab.WaitFor(3*time.Second, func() bool { return !tablePresent(l) }) {
		t.Fatalf("table still present with enabled '0':\n%s", d.Logs())
	}
	reach(t, l, "TCP/IPv6 with curfew disabled", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })

	d.rewrite(t, always)
	if !lab.WaitFor(3*time.Second, func() bool { return tablePresent(l) }) {
		t.Fatal("table not back after re-enabling")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if tablePresent(l) {
		t.Error("table left behind after a clean stop (SIGTERM)")
	}
	reach(t, l, "TCP/IPv6 after a clean stop", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })
}

// cli runs the curfew command line against the daemon's socket.
func (d *daemon) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--socket", filepath.Join(d.dir, "sock"))...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestParentCommands drives the daemon as a parent does over SSH.
func TestParentCommands(t *testing.T) {
	l := newLab(t, "cfe3")
	// A bedtime twelve hours away: this test is about the parent's commands.
	far := time.Now().Add(12 * time.Hour).In(london)
	cfg := l.SampleConfig(far.Format("15:04"), far.Add(time.Minute).Format("15:04"), "")
	d := start(t, l, cfg)
	reach(t, l, "TCP/IPv4 before the pause", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })

	conn, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV6, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t0 := time.Now()
	out, code := d.cli(t, "pause", "kid", "--for", "1h")
	took := time.Since(t0)
	if code != 0 || !strings.Contains(out, "paused kid until") {
		t.Fatalf("pause: %d %s", code, out)
	}
	// The command returns once the kernel enforces the pause.
	if err := l.TCP(l.Child.NS, lab.InternetV4); err == nil {
		t.Error("child online right after curfew pause returned")
	}
	if err := lab.Echo(conn, "still there?"); err == nil {
		t.Error("the child's open connection survived the pause")
	}
	// How fast is the bench's to say (bench/E2E.md, side by side): a
	// time limit here fails on a loaded machine, not on slow code.
	t.Logf("curfew pause took %v, command to kernel", took.Round(time.Millisecond))
	reach(t, l, "TCP/IPv4 of the parent during the pause", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.InternetV4) })

	out, _ = d.cli(t, "explain", "Kid phone")
	// the until names its day when it falls on another one (an hour after 23:00)
	if !regexp.MustCompile(`offline until (\w{3} )?[0-9:]+ — paused by parent\n`).MatchString(out) {
		t.Errorf("explain: %s", out)
	}
	out, _ = d.cli(t, "status", "--json")
	var st struct {
		Backend      string `json:"backend"`
		ClockTrusted bool   `json:"clock_trusted"`
		Config       struct{ OK bool }
		Plan         struct {
			Devices []struct{ MAC, State string }
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Backend != "nftables" || !st.ClockTrusted || !st.Config.OK {
		t.Errorf("status --json: %v %s", err, out)
	}
	out, _ = d.cli(t, "devices")
	if !strings.Contains(out, l.Child.IPv4) || !strings.Contains(out, "Kid phone") {
		t.Errorf("devices lacks the child's address:\n%s", out)
	}

	t.Log("restart the daemon: the pause is still there")
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	d2 := startIn(t, l, d.dir, cfg)
	reach(t, l, "TCP/IPv4 after a restart during the pause", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })

	out, code = d2.cli(t, "resume", "kid")
	if code != 0 {
		t.Fatalf("resume: %d %s", code, out)
	}
	if err := l.TCP(l.Child.NS, lab.InternetV4); err != nil {
		t.Errorf("child offline right after curfew resume returned: %v", err)
	}

	t.Log("the socket refuses anyone but root")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "status", "--socket", filepath.Join(d2.dir, "sock"))
	nobody, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(nobody), "ermission denied") {
		t.Errorf("status as nobody: %v %s", err, nobody)
	}

	t.Log("garbage on the socket does not hurt the daemon")
	c, err := net.Dial("unix", filepath.Join(d2.dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("\x00\xff{not json\n"))
	reply, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(reply), "malformed request") {
		t.Errorf("garbage answer: %q", reply)
	}
	if out, code := d2.cli(t, "status"); code != 0 {
		t.Errorf("status after garbage: %d %s", code, out)
	}

	t.Log("LuCI's rpcd plugin against the running daemon")
	rpcd := func(method, args string) map[string]any {
		t.Helper()
		cmd := exec.Command(binary, "rpcd", "--socket", filepath.Join(d2.dir, "sock"), "call", method)
		cmd.Stdin = strings.NewReader(args)
		out, err := cmd.Output()
		var res map[string]any
		if err != nil || json.Unmarshal(out, &res) != nil {
			t.Fatalf("rpcd call %s: %v %s", method, err, out)
		}
		return res
	}
	if res := rpcd("status", "{}"); res["backend"] != "nftables" || res["plan"] == nil {
		t.Errorf("rpcd status = %v", res)
	}
	if res := rpcd("pause", `{"target":"nobody"}`); !strings.Contains(fmt.Sprint(res["error"]), `unknown target "nobody"`) {
		t.Errorf("rpcd pause of an unknown target = %v", res)
	}
	if res := rpcd("grant", `{"target":`); !strings.Contains(fmt.Sprint(res["error"]), "bad arguments") {
		t.Errorf("rpcd with broken JSON = %v", res)
	}
	if res := rpcd("pause", `{"target":"kid","for":"5m"}`); !strings.Contains(fmt.Sprint(res["message"]), "paused kid") {
		t.Errorf("rpcd pause = %v", res)
	}

	d2.cmd.Process.Signal(syscall.SIGTERM)
	d2.cmd.Wait()
	if out, code := d2.cli(t, "status"); code != 2 || !strings.Contains(out, "daemon is not running") {
		t.Errorf("status without a daemon: %d %s", code, out)
	}
	if res := rpcd("status", "{}"); res["error"] != "the curfew daemon is not running" {
		t.Errorf("rpcd status without a daemon = %v", res)
	}
}

// TestDNSFilter checks per-profile DNS with real queries from the lab's
// hosts: blocks for the child only, wherever the query is sent; safe search;
// the bypass canary and a DoH resolver's address; allowlist mode for
// unknown devices.
func TestDNSFilter(t *testing.T) {
	l := newLab(t, "cfe4")
	ctx := context.Background()
	cfg := fmt.Sprintf(`config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'little'
	list doh_address '%s'

config profile 'kid'
	list block 'blocked.test'
	list block_service 'tiktok'
	option safesearch '1'

config profile 'grownup'

config profile 'little'
	option allowlist '1'
	list allow 'allowed.test'

config device
	option mac '%s'
	option name 'Kid phone'
	option profile 'kid'

config device
	option mac '%s'
	option name 'Parent laptop'
	option profile 'grownup'
`, lab.FakeDoH, l.Child.MAC, l.Parent.MAC)
	// Minutes of a second: the week's report counts the lookups at once.
	d := startIn(t, l, t.TempDir(), cfg, "--minute-length", "1s")

	q := func(ns, resolver, name, qtype string) ([]string, string) {
		t.Helper()
		var ans []string
		var status string
		var err error
		lab.WaitFor(2*time.Second, func() bool {
			ans, status, err = l.Query(ctx, ns, resolver, name, qtype)
			return err == nil
		})
		if err != nil {
			t.Fatalf("%s asks %s for %s: %v", ns, resolver, name, err)
		}
		return ans, status
	}
	has := func(ans []string, want string) bool {
		for _, a := range ans {
			if a == want {
				return true
			}
		}
		return false
	}

	for _, resolver := range []string{lab.RouterV4, lab.InternetV4, lab.InternetV6} {
		if ans, _ := q(l.Child.NS, resolver, "www.blocked.test", "A"); !has(ans, "A 0.0.0.0") {
			t.Errorf("child asks %s for a subdomain of a blocked domain: %v, want 0.0.0.0", resolver, ans)
		}
	}
	if ans, _ := q(l.Child.NS, lab.RouterV4, "blocked.test", "AAAA"); !has(ans, "AAAA ::") {
		t.Errorf("child AAAA for a blocked domain: %v, want ::", ans)
	}
	if ans, _ := q(l.Child.NS, lab.RouterV4, "v16m.tiktokcdn.com", "A"); !has(ans, "A 0.0.0.0") {
		t.Errorf("child asks for a tiktok host: %v", ans)
	}
	if ans, _ := q(l.Parent.NS, lab.InternetV4, "blocked.test", "A"); has(ans, "A 0.0.0.0") {
		t.Errorf("the parent is blocked too: %v", ans)
	}
	if ans, _ := q(l.Child.NS, lab.RouterV4, "fine.test", "A"); !has(ans, "A "+lab.InternetV4) {
		t.Errorf("child asks for an unblocked name: %v", ans)
	}
	if ans, _ := q(l.Child.NS, lab.RouterV4, "www.youtube.com", "A"); !has(ans, "CNAME restrict.youtube.com.") {
		t.Errorf("child asks for a service's name: %v, want safe search's restrict.youtube.com", ans)
	}
	ans, _ := q(l.Child.NS, lab.RouterV4, "www.google.com", "A")
	if !has(ans, "CNAME forcesafesearch.google.com.") || !has(ans, "A "+lab.SafeSearchAnswer) {
		t.Errorf("safe search for the child: %v", ans)
	}
	if _, status := q(l.Child.NS, lab.RouterV4, "use-application-dns.net", "A"); status != "NXDOMAIN" {
		t.Errorf("Firefox canary for the child: %s, want NXDOMAIN", status)
	}
	reach(t, l, "a DoH resolver's address", l.Child.NS, false, func() error { return l.TCPPort(l.Child.NS, lab.FakeDoH, "443") })
	reach(t, l, "a DoH resolver's address", l.Parent.NS, true, func() error { return l.TCPPort(l.Parent.NS, lab.FakeDoH, "443") })

	t.Log("allowlist mode (the unknown device's profile)")
	reach(t, l, "an address never resolved", l.Guest.NS, false, func() error { return l.TCP(l.Guest.NS, lab.InternetV4) })
	if ans, _ := q(l.Guest.NS, lab.RouterV4, "other.test", "A"); !has(ans, "A 0.0.0.0") {
		t.Errorf("guest asks for a name not on the allowlist: %v", ans)
	}
	if ans, _ := q(l.Guest.NS, lab.RouterV4, "allowed.test", "A"); !has(ans, "A "+lab.InternetV4) {
		t.Errorf("guest asks for an allowed name: %v", ans)
	}
	reach(t, l, "the address an allowed name resolved to", l.Guest.NS, true, func() error { return l.TCP(l.Guest.NS, lab.InternetV4) })
	reach(t, l, "an address never resolved", l.Guest.NS, false, func() error { return l.TCP(l.Guest.NS, lab.BlockedV4) })

	out, code := d.cli(t, "log", "kid")
	if code != 0 || !strings.Contains(out, "blocked.test") || !strings.Contains(out, "service tiktok") {
		t.Errorf("curfew log kid:\n%s", out)
	}
	out, _ = d.cli(t, "explain", "Kid phone")
	if !strings.Contains(out, "dns: v16m.tiktokcdn.com blocked by service tiktok") || !strings.Contains(out, "attempts to bypass") {
		t.Errorf("explain lacks DNS decisions:\n%s", out)
	}
	// The week's report: the child's refused names and the service it
	// looked up, counted by the next minute (a second here; the bound
	// only tells late from never).
	lab.WaitFor(30*time.Second, func() bool {
		out, _ = d.cli(t, "report")
		return strings.Contains(out, "YouTube")
	})
	if !strings.Contains(out, "Looked up most: YouTube 1m") || !strings.Contains(out, "www.blocked.test ") || !strings.Contains(out, "v16m.tiktokcdn.com 1") {
		t.Errorf("curfew report after the child's lookups:\n%s", out)
	}
}

// TestScreenTimeAndNewMACs: a profile with a two-minute budget goes offline
// once its traffic used it up (minutes shortened to a second), an idle
// device's budget is not touched, a new MAC with a configured device's DHCP
// name is reported, and curfew assign adds it to the config.
func TestScreenTimeAndNewMACs(t *testing.T) {
	l := newLab(t, "cfe5")
	dir := t.TempDir()
	leases := filepath.Join(dir, "dhcp.leases")
	os.WriteFile(leases, []byte(fmt.Sprintf("1898000000 %s 192.0.2.10 Kids-Phone *\n1898000000 %s 192.0.2.30 Kids-Phone *\n", l.Child.MAC, l.Guest.MAC)), 0o644)
	cfg := fmt.Sprintf(`config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'idle'

config profile 'kid'
	option daily_limit '2m'

config profile 'idle'
	option daily_limit '2m'

config profile 'grownup'

config device
	option mac '%s'
	option name 'Kid phone'
	option profile 'kid'
`, l.Child.MAC)
	d := startIn(t, l, dir, cfg, "--minute-length", "1s", "--leases", leases)
	defer stream(l)()

	if !lab.WaitFor(15*time.Second, func() bool {
		out, _ := d.cli(t, "explain", "kid")
		return strings.Contains(out, "— daily limit 2m used up")
	}) {
		out, _ := d.cli(t, "explain", "kid")
		t.Fatalf("budget never ran out:\n%s", out)
	}
	reach(t, l, "TCP/IPv4 with the budget used up", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })

	out, _ := d.cli(t, "usage", "--json")
	var days []struct {
		Profiles map[string]int
		Devices  map[string]struct{ Minutes int }
	}
	if err := json.Unmarshal([]byte(out), &days); err != nil || len(days) == 0 {
		t.Fatalf("usage --json: %v %s", err, out)
	}
	if days[0].Profiles["kid"] < 2 || days[0].Profiles["idle"] != 0 {
		t.Errorf("usage today = %+v: the child used its 2 minutes, the idle guest none", days[0].Profiles)
	}
	reach(t, l, "TCP/IPv4 of the idle guest", l.Guest.NS, true, func() error { return l.TCP(l.Guest.NS, lab.InternetV4) })

	out, _ = d.cli(t, "grant", "kid", "30m")
	reach(t, l, "TCP/IPv4 after a grant", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })

	out, _ = d.cli(t, "devices")
	if !strings.Contains(out, "DHCP name 'Kids-Phone' like Kid phone's configured device") {
		t.Errorf("new MAC with the child's DHCP name not reported:\n%s", out)
	}
	out, code := d.cli(t, "assign", l.Guest.MAC, "grownup", "--name", "Guest's tablet")
	if code != 0 {
		t.Fatalf("assign: %d %s", code, out)
	}
	written, _ := os.ReadFile(filepath.Join(dir, "curfew"))
	if !strings.HasPrefix(string(written), cfg) || !strings.Contains(string(written), `option name 'Guest'\''s tablet'`) {
		t.Errorf("config after assign:\n%s", written)
	}
	out, _ = d.cli(t, "status", "--json")
	if !strings.Contains(out, `"name": "Guest's tablet"`) || !strings.Contains(out, `"profile": "grownup"`) {
		t.Errorf("status after assign:\n%s", out)
	}
}

// stream has the child send about 100 kB a second through the router,
// until the returned function is called.
func stream(l *lab.Lab) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Dial(l.Child.NS, "udp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1000)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				c.Write(buf)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// TestIptablesScreenTime: on the iptables backend (old firmware) a
// profile's daily limit is counted and enforced as on nftables: a child
// that streams uses its two minutes (minutes shortened to a second) and
// goes offline, and a grant lets it back.
func TestIptablesScreenTime(t *testing.T) {
	lab.Require(t, "iptables-legacy", "ip6tables-legacy")
	l := newLab(t, "cfe7")
	// a bedtime half a day away: only the budget takes the child offline
	bed := time.Now().UTC().Add(12 * time.Hour).Truncate(time.Hour)
	cfg := strings.Replace(l.SampleConfig(bed.Format("15:04"), bed.Add(8*time.Hour).Format("15:04"), "\toption backend 'iptables'\n"),
		"config profile 'kid'\n\toption name 'Kid'\n", "config profile 'kid'\n\toption name 'Kid'\n\toption daily_limit '2m'\n", 1)
	d := startIn(t, l, t.TempDir(), cfg, "--iptables-legacy", "--minute-length", "1s")
	reach(t, l, "TCP/IPv4 before the budget is used", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	stop := stream(l)
	// Each minute reads the counters with two iptables runs: a second
	// each under the VM lab's emulated CPU, so the bound is generous.
	used := lab.WaitFor(2*time.Minute, func() bool {
		out, _ := d.cli(t, "explain", "kid")
		return strings.Contains(out, "— daily limit 2m used up")
	})
	stop()
	if !used {
		out, _ := d.cli(t, "explain", "kid")
		t.Fatalf("the budget never ran out on the iptables backend:\n%s", out)
	}
	// the rules that follow are a few iptables runs: seconds in the VM lab
	if !lab.WaitFor(time.Minute, func() bool { return l.TCP(l.Child.NS, lab.InternetV4) != nil }) {
		t.Error("the child still connects with its budget used up")
	}
	reach(t, l, "TCP/IPv4 of the parent", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.InternetV4) })
	if out, code := d.cli(t, "grant", "kid", "30m"); code != 0 {
		t.Fatalf("grant: %d %s", code, out)
	}
	reach(t, l, "TCP/IPv4 after a grant", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
}

// TestIptablesBackend runs the daemon with `option backend 'iptables'`
// (iptables-legacy, as on fw3 firmware): the child's all-day window holds
// on IPv4 and IPv6, the parent is online, DNS is filtered, and a clean stop
// removes every rule.
func TestIptablesBackend(t *testing.T) {
	lab.Require(t, "iptables-legacy", "ip6tables-legacy")
	l := newLab(t, "cfe6")
	ctx := context.Background()
	d := startIn(t, l, t.TempDir(), l.SampleConfig("00:00", "24:00", "\toption backend 'iptables'\n"), "--iptables-legacy")
	out, _ := d.cli(t, "status", "--json")
	if !strings.Contains(out, `"backend": "iptables"`) {
		t.Fatalf("status does not say iptables:\n%s", out)
	}
	reach(t, l, "TCP/IPv4 in an all-day window", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	reach(t, l, "TCP/IPv6 in an all-day window", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })
	reach(t, l, "TCP/IPv4 of the parent", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.InternetV4) })

	// fw3 flushes the built-in chains on every reload: curfew's jumps come
	// back at the next check (every 2 s), without waiting for a resync.
	// How soon is logged (about 1 s here); the bound only tells a heal from
	// none, with room for the VM lab's emulated CPU, where one iptables
	// run takes a second (11 s measured there).
	if out, err := l.Exec(ctx, l.Router, "iptables-legacy", "-F", "FORWARD"); err != nil {
		t.Fatalf("flush FORWARD: %v %s", err, out)
	}
	flushed := time.Now()
	if err := l.TCP(l.Child.NS, lab.InternetV4); err == nil {
		t.Logf("right after the flush the child's TCP gets through: the gap being healed")
	}
	for {
		if _, err := l.Exec(ctx, l.Router, "iptables-legacy", "-C", "FORWARD", "-i", "br-lan", "-j", "CURFEW_FWD"); err == nil {
			break
		}
		if time.Since(flushed) > 2*time.Minute {
			t.Fatalf("FORWARD jump not restored within 2 minutes of a flush")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("FORWARD flush healed in %v", time.Since(flushed).Round(time.Millisecond))
	reach(t, l, "TCP/IPv4 after the FORWARD flush healed", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })

	// Offline all day: only the captive probe resolves, and the router's
	// resolver answers it although the child asked an outside one.
	if ans, _, err := l.Query(ctx, l.Child.NS, lab.InternetV4, "captive.apple.com", "A"); err != nil || len(ans) != 1 || ans[0] != "A "+lab.CaptiveAnswer {
		t.Errorf("child's query to an outside resolver: %v %v", ans, err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if save, _ := l.Exec(ctx, l.Router, "iptables-legacy-save"); strings.Contains(save, "CURFEW") {
		t.Errorf("rules left after a clean stop:\n%s", save)
	}
	reach(t, l, "TCP/IPv4 after a clean stop", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
}
