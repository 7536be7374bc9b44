// Package fwtest holds the scenarios that every firewall backend must pass
// in the lab, written once: each backend's tests run them against the
// real kernel with their own Apply.
package fwtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"curfew/pkg/firewall"
	"curfew/pkg/lab"
)

// PagePort is where the scenarios' stand-in for the bedtime page listens
// in the router namespace.
const PagePort = 18099

// pageAnswer is the stand-in page's body.
const pageAnswer = "the bedtime page"

// BedtimePage checks the redirect to the bedtime page: the child (a
// configured device) gets the internet's answer on port 80 until its
// window starts and the page from then on — the kernel switching on its
// own, over IPv4 and IPv6; the guest (an unknown device, offline now)
// gets the page; the parent (no window) never does; the router's own
// address is never redirected; other ports are dropped as before, not
// redirected.
//
// edges says how the backend's kernel places a window's edges (its Grain
// and Lag; the rest of it is the scenario's).
func BedtimePage(t *testing.T, l *lab.Lab, edges Window, apply func(*firewall.Ruleset) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := l.ServeHTTP(ctx, l.Router, fmt.Sprintf("[::]:%d", PagePort), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, pageAnswer)
	})); err != nil {
		t.Fatal(err)
	}
	child, _ := net.ParseMAC(l.Child.MAC)
	parent, _ := net.ParseMAC(l.Parent.MAC)
	now := time.Now()
	body := func(ns, host string) string {
		_, b, err := l.Get(ns, "http://"+net.JoinHostPort(host, "80")+"/")
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(b)
	}
	want := func(c *Checks, who, ns, host, answer string) {
		got := body(ns, host)
		c.Expect(got == answer, "%s, http://%s/: %q, want %q", who, host, got, answer)
	}
	Window{
		Lead: 2 * time.Second, Length: time.Hour, Grain: edges.Grain, Lag: edges.Lag,
		Apply: func(from, to time.Time) error {
			return apply(&firewall.Ruleset{
				LAN: []string{"br-lan"}, DNSPort: 53, PagePort: PagePort,
				Profiles: []firewall.Profile{{ID: "kid"}, {ID: "parents", Open: true}},
				Devices: []firewall.Device{
					{MAC: child, Name: "Kid phone", Profile: "kid", Offline: []firewall.Interval{{From: from, To: to}}},
					{MAC: parent, Name: "Parent laptop", Profile: "parents"},
				},
				Unknown: &firewall.Unknown{Profile: "kid", Offline: []firewall.Interval{{From: now.Add(-time.Hour), To: now.Add(2 * time.Hour)}}},
			})
		},
		Before: func() error {
			var c Checks
			want(&c, "child before its window", l.Child.NS, lab.InternetV4, lab.InternetAnswer)
			return c.Err()
		},
		Inside: func() error {
			var c Checks
			want(&c, "child inside its window", l.Child.NS, lab.InternetV4, pageAnswer)
			want(&c, "child inside its window, IPv6", l.Child.NS, lab.InternetV6, pageAnswer)
			want(&c, "child inside its window, Apple's probe address", l.Child.NS, lab.CaptiveAnswer, pageAnswer)
			return c.Err()
		},
	}.Run(t)
	var c Checks
	want(&c, "guest (unknown, offline)", l.Guest.NS, lab.InternetV4, pageAnswer)
	want(&c, "guest over IPv6", l.Guest.NS, lab.InternetV6, pageAnswer)
	want(&c, "parent", l.Parent.NS, lab.InternetV4, lab.InternetAnswer)
	want(&c, "parent, IPv6", l.Parent.NS, lab.InternetV6, lab.InternetAnswer)
	got := body(l.Child.NS, lab.RouterV4)
	c.Expect(got != pageAnswer, "child, http://%s/ (the router itself): redirected to the page", lab.RouterV4)
	c.Expect(l.TCP(l.Child.NS, lab.InternetV4) != nil, "child inside its window reaches the echo port: only plain HTTP may go to the page, the rest stays blocked")
	if err := c.Err(); err != nil {
		t.Error(err)
	}
}

// FlowLimit checks the per-device limit on new connections. The child
// opens UDP flows as fast as it can for up to two seconds, each datagram to a new
// destination port, as a forged-source flood makes a new flow of every
// packet: with the limit on, the router's connection table gains at most
// the child's burst and a second's rate (and some slack), while the
// parent opens its own connections all along; with the limit off, the
// same flood adds thousands, which is what the limit is for. The
// backend's count of dropped connections by MAC (drops) accounts for
// what did not get through; the parent has none.
func FlowLimit(t *testing.T, l *lab.Lab, apply func(*firewall.Ruleset) error, drops func() (map[string]uint64, error)) {
	t.Helper()
	const rate, burst = 50, 200
	child, _ := net.ParseMAC(l.Child.MAC)
	rs := &firewall.Ruleset{
		LAN: []string{"br-lan"}, DNSPort: 53,
		Profiles: []firewall.Profile{{ID: "kid"}},
		Devices:  []firewall.Device{{MAC: child, Name: "Kid phone", Profile: "kid"}},
	}
	if err := apply(rs); err != nil {
		t.Fatal(err)
	}
	sent, unlimited, _, took := flood(t, l)
	t.Logf("limit off: %d datagrams to new ports in %v made %d flows", sent, took.Round(time.Millisecond), unlimited)
	if sent < 4*burst || unlimited < sent*9/10 {
		t.Fatalf("without a limit %d datagrams made %d flows: the scenario does not flood", sent, unlimited)
	}

	rs.FlowLimit, rs.FlowBurst = rate, burst
	if err := apply(rs); err != nil {
		t.Fatal(err)
	}
	sent, limited, parentFailed, took := flood(t, l)
	t.Logf("limit %d/s burst %d: %d datagrams to new ports in %v made %d flows; the parent's connections failed %d of 10", rate, burst, sent, took.Round(time.Millisecond), limited, parentFailed)
	// the burst, and the rate for as long as the flood ran and a second more
	if most := burst + rate*int(took/time.Second+1) + 20; limited > most {
		t.Errorf("with the limit, the child's flood made %d flows, want at most %d", limited, most)
	}
	if limited < burst/2 {
		t.Errorf("with the limit, only %d of the child's new flows went through, want its burst of %d", limited, burst)
	}
	if parentFailed > 0 {
		t.Errorf("the parent's new connections failed %d of 10 times during the child's flood", parentFailed)
	}
	counted, err := drops()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dropped by MAC: %v", counted)
	if got, want := counted[l.Child.MAC], uint64(sent-limited); got+20 < want || got > want {
		t.Errorf("the backend counted %d of the child's connections dropped, want about %d", got, want)
	}
	if n := counted[l.Parent.MAC]; n != 0 {
		t.Errorf("the backend counted %d of the parent's connections dropped, want none", n)
	}
	if err := l.TCP(l.Child.NS, lab.InternetV4); err != nil {
		// a second later the child's bucket has refilled by its rate
		time.Sleep(time.Second)
		if err := l.TCP(l.Child.NS, lab.InternetV4); err != nil {
			t.Errorf("the child's own connection after the flood: %v", err)
		}
	}
}

// floodFor is how long flood sends; a slow machine (an emulated CPU)
// sends fewer datagrams in that time, and FlowLimit's bounds follow how
// long it took, not a fixed second.
const floodFor = 2 * time.Second

// flood has the child send datagrams to new ports of the internet host
// (each a new flow; at most 5,000) while the parent opens 10 connections,
// and counts the child's flows in the router's connection table.
func flood(t *testing.T, l *lab.Lab) (sent, flows, parentFailed int, took time.Duration) {
	t.Helper()
	if out, err := l.Exec(context.Background(), l.Router, "conntrack", "-F"); err != nil {
		t.Fatalf("conntrack -F: %v: %s", err, out)
	}
	done := make(chan error, 1)
	go func() {
		done <- l.In(l.Child.NS, func() error {
			c, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return err
			}
			defer c.Close()
			dst := &net.UDPAddr{IP: net.ParseIP(lab.InternetV4)}
			payload := []byte("flood")
			began := time.Now()
			defer func() { took = time.Since(began) }()
			for time.Since(began) < floodFor && sent < 5000 {
				dst.Port = 20000 + sent
				if _, err := c.WriteToUDP(payload, dst); err == nil {
					sent++
				}
				if sent%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		})
	}()
	for range 10 {
		if err := l.TCP(l.Parent.NS, lab.InternetV4); err != nil {
			parentFailed++
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out, err := l.Exec(context.Background(), l.Router, "conntrack", "-L", "-p", "udp", "--orig-src", l.Child.IPv4)
	if err != nil {
		t.Fatalf("conntrack -L: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "udp ") {
			flows++
		}
	}
	return sent, flows, parentFailed, took
}

// ForgedMACs checks the limit against a child that forges its MAC as well
// (possible on a wired port): datagrams to new ports,
// each from one of 6,000 forged source MACs (more than a backend keeps
// allowances for), while the parent's phone — configured, and idle until
// then, so that it holds no allowance yet — opens connections and
// resolves names, ten times. Each of the parent's must succeed at once
// (within 0.5 s, before a lost SYN's retransmission), and the
// forged MACs together get no more flows than one device's allowance:
// its burst, and its rate for as long as the flood ran.
func ForgedMACs(t *testing.T, l *lab.Lab, apply func(*firewall.Ruleset) error) {
	t.Helper()
	const rate, burst, macs = 50, 200, 6000
	ctx := context.Background()
	child, _ := net.ParseMAC(l.Child.MAC)
	parent, _ := net.ParseMAC(l.Parent.MAC)
	if err := apply(&firewall.Ruleset{
		LAN: []string{"br-lan"}, DNSPort: 53, FlowLimit: rate, FlowBurst: burst,
		Profiles: []firewall.Profile{{ID: "kid"}, {ID: "grownup"}},
		Devices: []firewall.Device{{MAC: child, Name: "Kid phone", Profile: "kid"},
			{MAC: parent, Name: "Parent phone", Profile: "grownup"}},
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(ctx, l.Router, "conntrack", "-F"); err != nil {
		t.Fatalf("conntrack -F: %v: %s", err, out)
	}
	type flood struct {
		sent int
		took time.Duration
		err  error
	}
	flooded, stop := make(chan flood, 1), make(chan struct{})
	go func() {
		begin := time.Now()
		sent, err := l.ForgedMACFlood(macs, stop)
		flooded <- flood{sent, time.Since(begin), err}
	}()
	// the parent, half a second into the flood (the sets are full by
	// then), while it goes on
	time.Sleep(500 * time.Millisecond)
	const asked = 10
	failed := l.ParentTries(ctx, asked)
	close(stop)
	f := <-flooded
	if f.err != nil {
		t.Fatal(f.err)
	}
	list, err := l.Exec(ctx, l.Router, "conntrack", "-L", "-p", "udp", "--orig-src", l.Child.IPv4)
	if err != nil {
		t.Fatalf("conntrack -L: %v: %s", err, list)
	}
	flows := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, "udp ") {
			flows++
		}
	}
	t.Logf("%d frames from %d forged MACs in %v made %d flows (one allowance: burst %d, %d a second); the parent's %d connections and %d lookups during the flood: %d failed",
		f.sent, macs, f.took.Round(time.Millisecond), flows, burst, rate, asked, asked, len(failed))
	if f.sent < macs {
		t.Fatalf("only %d frames sent in %v: not a flood", f.sent, f.took)
	}
	if most := burst + rate*int(f.took/time.Second+1) + 20; flows > most {
		t.Errorf("forged MACs made %d flows, want at most %d (one device's allowance)", flows, most)
	}
	if flows < burst/2 {
		t.Errorf("forged MACs made only %d flows: the frames did not reach the router", flows)
	}
	for _, e := range failed {
		t.Errorf("the parent's phone during the flood: %s", e)
	}
}

// Talk has the child send ten lines of 500 bytes to the lab's echo server
// over one TCP connection and read them back: 5,000 bytes of its own
// that a screen-time counter must see.
func Talk(t *testing.T, l *lab.Lab) {
	t.Helper()
	c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 10 {
		if err := lab.Echo(c, strings.Repeat("x", 500)); err != nil {
			t.Fatal(err)
		}
	}
}

// Count returns the child's screen-time count in the backend's counters.
func Count(t *testing.T, c firewall.Counters, child net.HardwareAddr) uint64 {
	t.Helper()
	got, err := c.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got[child.String()]
}
