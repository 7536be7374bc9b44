package e2e

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/lab"
)

// TestTimePerService: a child's YouTube (the lab's video server, which
// the DNS filter's upstream answers for www.youtube.com) has 10 minutes a
// day (minutes shortened to a second). What the child streams from it
// counts as YouTube and as screen time alike; at the allowance the open
// connection ends within 2 s, new ones fail, the name stops resolving to
// it, and another site keeps working; a grant of 15 minutes of YouTube
// opens it again — over IPv6 this time — and the cut comes again when
// they run out.
func TestTimePerService(t *testing.T) {
	timePerService(t, newLab(t, "cfy1"), "")
}

// TestIptablesTimePerService is TestTimePerService on the iptables
// backend (old firmware).
func TestIptablesTimePerService(t *testing.T) {
	lab.Require(t, "iptables-legacy", "ip6tables-legacy")
	timePerService(t, newLab(t, "cfy2"), "\toption backend 'iptables'\n", "--iptables-legacy")
}

func timePerService(t *testing.T, l *lab.Lab, main string, extra ...string) {
	ctx := context.Background()
	// a bedtime half a day away: only the allowance matters here
	bed := time.Now().UTC().Add(12 * time.Hour).Truncate(time.Hour)
	cfg := strings.Replace(l.SampleConfig(bed.Format("15:04"), bed.Add(8*time.Hour).Format("15:04"), main),
		"config profile 'kid'\n\toption name 'Kid'\n",
		"config profile 'kid'\n\toption name 'Kid'\n\toption daily_limit '1h'\n\tlist service_limit 'youtube 10m'\n", 1)
	d := startIn(t, l, t.TempDir(), cfg, append(extra, "--minute-length", "1s")...)
	resolves := func(qtype, want string) bool {
		ans, _, err := l.Query(ctx, l.Child.NS, lab.RouterV4, "www.youtube.com", qtype)
		return err == nil && len(ans) > 0 && strings.HasSuffix(ans[len(ans)-1], " "+want)
	}
	if !resolves("A", lab.VideoV4) || !resolves("AAAA", lab.VideoV6) {
		t.Fatal("www.youtube.com does not resolve to the lab's video server before its time is used")
	}

	s := startEchoStream(t, l, lab.VideoV4)
	started := time.Now()
	usedAt := waitExplain(t, d, "YouTube: 10m used of 10m today", 2*time.Minute)
	// minutes are a second here, each tick also reading the counters:
	// a little over 10 s of streaming
	t.Logf("10 minutes of YouTube used up after %v of streaming", usedAt.Sub(started).Round(100*time.Millisecond))
	s.checkCut(t, usedAt, "IPv4")
	ex := explainKid(t, d)
	screen := time.Hour - parseLeft(t, ex.BudgetLeft)
	t.Logf("10 minutes of YouTube counted, %v of screen time", screen)
	if screen < 10*time.Minute || screen > 12*time.Minute {
		t.Errorf("10 minutes of YouTube, %v of screen time: a minute on the service must count toward the daily limit too", screen)
	}
	reach(t, l, "TCP/IPv4 to YouTube, used up", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.VideoV4) })
	reach(t, l, "TCP/IPv6 to YouTube, used up", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.VideoV6) })
	if resolves("A", lab.VideoV4) {
		t.Error("www.youtube.com still resolves to the video server with its time used up")
	}
	reach(t, l, "TCP/IPv4 to another site", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	reach(t, l, "TCP/IPv6 to another site", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })

	if out, code := d.cli(t, "grant", "Kid phone", "15m", "--service", "youtube"); code != 0 || !strings.Contains(out, "15m more YouTube") {
		t.Fatalf("grant --service: %d %s", code, out)
	}
	if !lab.WaitFor(10*time.Second, func() bool { return resolves("AAAA", lab.VideoV6) }) {
		t.Fatal("www.youtube.com does not resolve again after a grant")
	}
	s = startEchoStream(t, l, lab.VideoV6)
	usedAt = waitExplain(t, d, "YouTube: 25m used of 25m today", 2*time.Minute)
	s.checkCut(t, usedAt, "IPv6")
	reach(t, l, "TCP/IPv6 to YouTube, the grant used up", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.VideoV6) })
	reach(t, l, "TCP/IPv6 to another site", l.Child.NS, true, func() error { return l.TCP(l.Child.NS, lab.InternetV6) })
	reach(t, l, "TCP/IPv4 of the parent to YouTube", l.Parent.NS, true, func() error { return l.TCP(l.Parent.NS, lab.VideoV4) })
}

// echoStream is the child's open connection to a server, talked on every
// 10 ms (100 kB a second each way) until it fails.
type echoStream struct {
	mu     sync.Mutex
	failed time.Time
	err    error
}

func startEchoStream(t *testing.T, l *lab.Lab, addr string) *echoStream {
	t.Helper()
	c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(addr, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatalf("the child's connection to %s: %v", addr, err)
	}
	s := &echoStream{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.Close()
		line := strings.Repeat("v", 1000)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := lab.Echo(c, line); err != nil {
				s.mu.Lock()
				s.failed, s.err = time.Now(), err
				s.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return s
}

// checkCut checks that the stream ended no later than 2 s after its
// service's time was seen used up (and not long before: it was cut for
// that, not by something else).
func (s *echoStream) checkCut(t *testing.T, usedAt time.Time, family string) {
	t.Helper()
	lab.WaitFor(3*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.failed.IsZero() })
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failed.IsZero():
		t.Errorf("the open %s connection to YouTube still works 3 s after its time was used up", family)
	case s.failed.Sub(usedAt) > 2*time.Second:
		t.Errorf("the open %s connection to YouTube ended %v after its time was used up, want within 2 s", family, s.failed.Sub(usedAt))
	case usedAt.Sub(s.failed) > 5*time.Second:
		t.Errorf("the open %s connection to YouTube ended %v before its time was used up: %v", family, usedAt.Sub(s.failed), s.err)
	default:
		t.Logf("the open %s connection ended %v after the time was seen used up: %v", family, s.failed.Sub(usedAt).Round(time.Millisecond), s.err)
	}
}

// waitExplain polls explain until its text has want, and returns when.
func waitExplain(t *testing.T, d *daemon, want string, timeout time.Duration) time.Time {
	t.Helper()
	var text string
	if !lab.WaitFor(timeout, func() bool {
		text = explainKid(t, d).Text
		return strings.Contains(text, want)
	}) {
		t.Fatalf("explain never said %q; last: %s", want, text)
	}
	return time.Now()
}

func explainKid(t *testing.T, d *daemon) control.Explained {
	t.Helper()
	out, code := d.cli(t, "explain", "Kid phone", "--json")
	var ex control.Explanation
	if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || len(ex.Devices) != 1 {
		t.Fatalf("explain: %d %s", code, out)
	}
	return ex.Devices[0]
}

func parseLeft(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("budget left %q: %v", s, err)
	}
	return d
}
