package ipt

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/fwtest"
	"curfew/pkg/lab"
)

// These are the nftables backend's kernel tests, run against iptables
// (legacy, as on fw3 firmware) in the same lab.

func setup(t *testing.T, name string) (*lab.Lab, *Backend) {
	t.Helper()
	l := lab.Start(t, name, "iptables-legacy", "ip6tables-legacy")
	b := New(Options{Legacy: true, Run: func(f func() error) error { return l.In(l.Router, f) }})
	t.Cleanup(func() { b.Remove(context.Background()) })
	return l, b
}

func ruleset(child net.HardwareAddr, offline ...firewall.Interval) *firewall.Ruleset {
	return &firewall.Ruleset{
		LAN:     []string{"br-lan"},
		DNSPort: 53,
		Profiles: []firewall.Profile{{ID: "kid", Name: "Kid", Block: []netip.Prefix{
			netip.MustParsePrefix(lab.BlockedNet4), netip.MustParsePrefix(lab.BlockedNet6)}}},
		Devices: []firewall.Device{{MAC: child, Name: "Kid phone", Profile: "kid", Offline: offline}},
	}
}

func reach(t *testing.T, what string, want bool, probe func() error) {
	t.Helper()
	var err error
	lab.WaitFor(2*time.Second, func() bool { err = probe(); return (err == nil) == want })
	if (err == nil) != want {
		t.Errorf("%s: err=%v, want reachable=%v", what, err, want)
	}
}

func TestKernelStartsAndEndsWindowsOnItsOwn(t *testing.T) {
	l, b := setup(t, "cfi1")
	child, _ := net.ParseMAC(l.Child.MAC)
	probe := func(ns string, want bool) error {
		var err error
		lab.WaitFor(2*time.Second, func() bool { err = l.TCP(ns, lab.InternetV4); return (err == nil) == want })
		if (err == nil) != want {
			return fmt.Errorf("%s: err=%v, want reachable=%v", ns, err, want)
		}
		return nil
	}
	_, end := fwtest.Window{
		// xt_time has one-second resolution: a window of whole seconds.
		Lead: 2 * time.Second, Length: 3 * time.Second, Grain: time.Second,
		Apply: func(from, to time.Time) error {
			return b.Apply(context.Background(), ruleset(child, firewall.Interval{From: from, To: to}))
		},
		Before: func() error { return probe(l.Child.NS, true) },
		Inside: func() error {
			var c fwtest.Checks
			for _, addr := range []string{lab.InternetV4, lab.InternetV6} {
				err := l.TCP(l.Child.NS, addr)
				c.Expect(err != nil && strings.Contains(err.Error(), "refused"), "child TCP to %s inside the window: %v, want refused", addr, err)
			}
			if err := probe(l.Parent.NS, true); err != nil {
				c = append(c, fmt.Errorf("parent inside the child's window: %w", err))
			}
			return c.Err()
		},
	}.Run(t)
	time.Sleep(time.Until(end) + 300*time.Millisecond)
	reach(t, "child after the window (no daemon)", true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
}

func TestBlocksDoTAndDNSForTheChildOnly(t *testing.T) {
	l, b := setup(t, "cfi2")
	ctx := context.Background()
	child, _ := net.ParseMAC(l.Child.MAC)
	if err := b.Apply(ctx, ruleset(child)); err != nil {
		t.Fatal(err)
	}
	reach(t, "child to a blocked IPv4 prefix", false, func() error { return l.TCP(l.Child.NS, lab.BlockedV4) })
	reach(t, "child to a blocked IPv6 prefix", false, func() error { return l.TCP(l.Child.NS, lab.BlockedV6) })
	reach(t, "child DoT", false, func() error { return l.TCPPort(l.Child.NS, lab.InternetV4, lab.DoTPort) })
	reach(t, "child elsewhere", true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	reach(t, "parent to the blocked prefix", true, func() error { return l.TCP(l.Parent.NS, lab.BlockedV4) })
	if got, err := l.Dig(ctx, l.Child.NS, lab.InternetV4, false); err != nil || got != lab.RouterAnswer {
		t.Errorf("child's query to an outside resolver: %q %v, want the router's answer", got, err)
	}
	if got, err := l.Dig(ctx, l.Parent.NS, lab.InternetV4, false); err != nil || got != lab.OutsideAnswer {
		t.Errorf("parent's query: %q %v, want the outside answer", got, err)
	}
}

func TestApplyIsIdempotentRestoresAndRemoves(t *testing.T) {
	l, b := setup(t, "cfi3")
	ctx := context.Background()
	child, _ := net.ParseMAC(l.Child.MAC)
	always := ruleset(child, firewall.Interval{From: time.Now().Add(-time.Minute), To: time.Now().Add(time.Hour)})
	if err := b.Apply(ctx, always); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, always); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	save := func() string {
		out, _ := l.Exec(ctx, l.Router, "iptables-legacy-save")
		return out
	}
	before := save()
	if err := b.Apply(ctx, always); err != nil {
		t.Fatal(err)
	}
	if strip(save()) != strip(before) {
		t.Error("the same ruleset again changed the rules")
	}
	// fw3 reload: the built-in chains are flushed.
	if out, err := l.Exec(ctx, l.Router, "iptables-legacy", "-F", "FORWARD"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	reach(t, "child with our jump gone", true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	if err := b.Apply(ctx, always); err != nil {
		t.Fatal(err)
	}
	reach(t, "child after apply restored the jump", false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	if err := b.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if s := save(); strings.Contains(s, "CURFEW") {
		t.Errorf("rules left after Remove:\n%s", s)
	}
	reach(t, "child after Remove", true, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
}

// strip drops iptables-save's comment and counter lines.
func strip(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestPlainHTTPOfAnOfflineDeviceGoesToThePage(t *testing.T) {
	l, b := setup(t, "cfip")
	fwtest.BedtimePage(t, l, fwtest.Window{Grain: time.Second}, func(rs *firewall.Ruleset) error { return b.Apply(context.Background(), rs) })
}

func TestAFloodOfNewFlowsIsLimitedPerDevice(t *testing.T) {
	l, b := setup(t, "cfif")
	fwtest.FlowLimit(t, l, func(rs *firewall.Ruleset) error { return b.Apply(context.Background(), rs) },
		func() (map[string]uint64, error) { return b.FlowDrops(context.Background()) })
}

func TestDroppedByReadsADevicesDropRule(t *testing.T) {
	tests := []struct {
		rule string
		mac  string
		n    uint64
		ok   bool
	}{
		{"-A CURFEW_FLOWS -m mac --mac-source 02:C0:00:00:00:0A -c 4795 158235 -j DROP", "02:c0:00:00:00:0a", 4795, true},
		{"-A CURFEW_FLOWS -m mac --mac-source 02:c0:00:00:00:0a -m limit --limit 50/sec --limit-burst 1000 -c 205 6765 -j RETURN", "", 0, false},
		{"-A CURFEW_FLOWS -c 12 400 -j DROP", "", 0, false},
		{"-A CURFEW_FLOWS -m mac --mac-source nonsense -c 1 1 -j DROP", "", 0, false},
		{"-A CURFEW_FLOWS -m mac --mac-source 02:c0:00:00:00:0a -c x 1 -j DROP", "", 0, false},
		{"-N CURFEW_FLOWS", "", 0, false},
	}
	for _, tt := range tests {
		mac, n, ok := droppedBy(tt.rule)
		if mac != tt.mac || n != tt.n || ok != tt.ok {
			t.Errorf("droppedBy(%q) = %q %d %v, want %q %d %v", tt.rule, mac, n, ok, tt.mac, tt.n, tt.ok)
		}
	}
}

func TestForgedMACsShareOneAllowanceAndLeaveTheParentsTheirs(t *testing.T) {
	l, b := setup(t, "cfim")
	fwtest.ForgedMACs(t, l, func(rs *firewall.Ruleset) error { return b.Apply(context.Background(), rs) })
}

func TestAWindDownSlowsDownloadsThenTheWindowCuts(t *testing.T) {
	l, b := setup(t, "cfiw")
	fwtest.WindDown(t, l, fwtest.Window{Grain: time.Second}, func(rs *firewall.Ruleset) error { return b.Apply(context.Background(), rs) })
}

// Screen time on old firmware: a device's bytes are counted while it is
// online, not what it tries inside an offline window, and what its chain
// counted is kept when the chain is rewritten (a pause and its end), so
// its count never falls.
func TestScreenTimeIsCountedOnlineAndSurvivesARewrite(t *testing.T) {
	l, b := setup(t, "cfis")
	ctx := context.Background()
	child, _ := net.ParseMAC(l.Child.MAC)
	now := time.Now()
	online := ruleset(child, firewall.Interval{From: now.Add(time.Hour), To: now.Add(2 * time.Hour)})
	if err := b.Apply(ctx, online); err != nil {
		t.Fatal(err)
	}
	talk := func() { fwtest.Talk(t, l) }
	count := func() uint64 { return fwtest.Count(t, b, child) }
	talk()
	first := count()
	if first < 5000 {
		t.Fatalf("counted %d bytes for 10 lines of 500 bytes", first)
	}
	// Paused: the chain is rewritten with a window that holds now.
	if err := b.Apply(ctx, ruleset(child, firewall.Interval{From: now.Add(-time.Minute), To: now.Add(time.Hour)})); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second); err == nil {
			c.Close()
			t.Fatal("the child connects inside its offline window")
		}
	}
	paused := count()
	if paused < first || paused >= first+1000 {
		t.Errorf("after the pause's rewrite and three refused connections: %d bytes, %d before (want kept, and nothing of the refused counted)", paused, first)
	}
	if err := b.Apply(ctx, online); err != nil {
		t.Fatal(err)
	}
	talk()
	if after := count(); after < paused+5000 {
		t.Errorf("after the pause ended and 10 more lines: %d bytes, %d before", after, paused)
	}
}

func TestOnlineBytesReadsADevicesProfileJump(t *testing.T) {
	for rule, want := range map[string]uint64{
		"-A CURFEW_D_0200000000a1 -c 12 3456 -j CURFEW_P_kid":                                       3456,
		"-A CURFEW_D_0200000000a1 -m time --datestart 2026-01-05T21:00:00 -c 1 60 -j CURFEW_REJECT": 0,
		"-A CURFEW_FWD -m mac --mac-source 02:00:00:00:00:a1 -c 5 500 -g CURFEW_D_0200000000a1":     0,
		"-A CURFEW_D_02000000 -c 1 2 -j CURFEW_P_kid":                                               0,
		"-A CURFEW_D_0200000000a1 -j CURFEW_P_kid":                                                  0,
	} {
		mac, n, ok := onlineBytes(rule)
		if want == 0 && ok || want > 0 && (!ok || n != want || mac != "02:00:00:00:00:a1") {
			t.Errorf("onlineBytes(%q) = %s %d %v, want %d", rule, mac, n, ok, want)
		}
	}
}

func TestServiceTimeIsCountedAndAUsedUpServiceIsCutAlone(t *testing.T) {
	l, b := setup(t, "cfiv")
	child, _ := net.ParseMAC(l.Child.MAC)
	fwtest.ServiceTime(t, l, child, func(rs *firewall.Ruleset) error { return b.Apply(context.Background(), rs) }, b)
}

func TestServiceBytesReadsACountingRule(t *testing.T) {
	for _, tc := range []struct {
		rule  string
		name  string
		bytes uint64
		ok    bool
	}{
		{"-A CURFEW_P_kid -m set --match-set curfew_s4_kid_youtube dst -c 12 3456", "curfew_s4_kid_youtube", 3456, true},
		{"-A CURFEW_P_kid -m set --match-set curfew_s4_kid_youtube dst -c 12 3456 -j CURFEW_REJECT", "", 0, false},
		{"-A CURFEW_P_kid -m set --match-set curfew_b4_kid dst -c 1 2 -j CURFEW_REJECT", "", 0, false},
		{"-A CURFEW_D_020000000001 -c 5 500 -j CURFEW_P_kid", "", 0, false},
		{"-A CURFEW_P_kid -m set --match-set curfew_s4_kid_youtube dst", "", 0, false},
	} {
		name, n, ok := serviceBytes(tc.rule)
		if name != tc.name || n != tc.bytes || ok != tc.ok {
			t.Errorf("%q: %q %d %v, want %q %d %v", tc.rule, name, n, ok, tc.name, tc.bytes, tc.ok)
		}
	}
}
