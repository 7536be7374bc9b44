package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/firewall"
	"curfew/pkg/notify"
)

// refusingBackend refuses every Apply while refuse is set, as a kernel
// without a feature of the table does.
type refusingBackend struct {
	*fakeBackend
	mu     sync.Mutex
	refuse bool
}

func (b *refusingBackend) Apply(ctx context.Context, rs *firewall.Ruleset) error {
	b.mu.Lock()
	refuse := b.refuse
	b.mu.Unlock()
	if refuse {
		return errors.New("replace table inet curfew: netlink receive: invalid argument")
	}
	return b.fakeBackend.Apply(ctx, rs)
}

// A table the kernel refuses means nothing is enforced: status says so
// (and exits 1), the parents are told once, the daemon tries again with
// back-off, and when the kernel takes the rules all is well again.
func TestARefusedTableIsLoudAndTriedAgain(t *testing.T) {
	dir := t.TempDir()
	rec := &events{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	write(t, dir, strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\tlist notify '"+srv.URL+"/hook'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	b := &refusingBackend{fakeBackend: newFakeBackend(), refuse: true}
	at := london(t, "2026-01-05T12:00:00Z")
	clock := &fakeClock{now: at}
	child, _ := net.ParseMAC(childMAC)
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"),
		Backend: b, Clock: clock, Notify: n,
		Seen: func([]string) []Neighbour { return []Neighbour{{MAC: child, IPs: []netip.Addr{childIP}}} }})
	d.load()

	for i, wait := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		d.reconcile(ctx)
		st := d.status()
		e := st.Enforcement
		if e.OK || !strings.Contains(e.Error, "invalid argument") || !e.Since.Equal(at) || !st.Failing() {
			t.Fatalf("refusal %d: enforcement %+v, failing %v", i+1, e, st.Failing())
		}
		if want := clock.Now().Add(wait); !e.NextTry.Equal(want) {
			t.Errorf("refusal %d: next try %v, want %v (back-off)", i+1, e.NextTry, want)
		}
		if next := d.nextChange(); next == nil || !next.Equal(e.NextTry) {
			t.Errorf("refusal %d: the loop wakes at %v, want the next try %v", i+1, next, e.NextTry)
		}
		clock.set(e.NextTry)
	}
	b.mu.Lock()
	b.refuse = false
	b.mu.Unlock()
	d.reconcile(ctx)
	if st := d.status(); !st.Enforcement.OK || st.Enforcement.Error != "" || st.Failing() {
		t.Errorf("once the kernel took the rules: %+v", st.Enforcement)
	}
	for deadline := time.Now().Add(3 * time.Second); rec.kinds() == "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second event, if one were sent
	if got := rec.kinds(); got != notify.EnforcementFailed {
		t.Errorf("events %q, want one %s for three refusals", got, notify.EnforcementFailed)
	}
}

// namedBackend is a fake backend with a name of its own.
type namedBackend struct {
	*fakeBackend
	name string
}

func (b namedBackend) Name() string { return b.name }

// backend 'auto': when the kernel refuses nftables' very first table, the
// daemon goes on with iptables' rules and says so; once nftables' rules
// were taken, a later refusal is only loud.
func TestAutoFallsBackWhenTheFirstTableIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name          string
		refuseAtFirst bool
		wantBackend   string
	}{
		{"refused at the first apply: iptables", true, "iptables"},
		{"taken at the first apply: nftables stays", false, "fake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, testConfig)
			os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
			b := &refusingBackend{fakeBackend: newFakeBackend(), refuse: tc.refuseAtFirst}
			ipt := namedBackend{newFakeBackend(), "iptables"}
			clock := &fakeClock{now: london(t, "2026-01-05T12:00:00Z")}
			d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"),
				Backend: b, Fallback: func() firewall.Backend { return ipt }, Clock: clock,
				Seen: func([]string) []Neighbour { return nil }})
			d.load()
			ctx := context.Background()
			d.reconcile(ctx)
			b.mu.Lock()
			b.refuse = true // later refusals do not switch
			b.mu.Unlock()
			clock.advance(time.Minute)
			d.reconcile(ctx)
			st := d.status()
			if st.Backend != tc.wantBackend {
				t.Fatalf("backend %q, want %q", st.Backend, tc.wantBackend)
			}
			note := strings.Join(st.Notes, "\n")
			if tc.refuseAtFirst {
				if !st.Enforcement.OK || !strings.Contains(note, "backend 'auto': the kernel refused the fake backend's rules") {
					t.Errorf("after falling back: %+v, notes %q", st.Enforcement, note)
				}
				if len(ipt.applied) != 2 {
					t.Errorf("iptables applied %d times, want 2", len(ipt.applied))
				}
			} else if st.Enforcement.OK || note != "" {
				t.Errorf("a later refusal: %+v, notes %q; want it loud and no fallback", st.Enforcement, note)
			}
		})
	}
}

// With flow offloading on in the firewall config (LuCI's "Software flow
// offloading"), status says what it costs; with it off or no such file,
// nothing.
func TestStatusSaysWhatFlowOffloadingCosts(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, testConfig)
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	for _, tc := range []struct {
		firewall string
		want     string
	}{
		{"config defaults\n\toption flow_offloading '1'\n\toption input 'REJECT'\n", "flow offloading is on (" + filepath.Join(dir, "firewall") + "): offloaded connections skip curfew's per-packet rules, so their traffic is not counted as screen time"},
		{"config defaults\n\toption flow_offloading '1'\n\toption flow_offloading_hw '1'\n", "flow offloading is on"},
		{"config defaults\n\toption flow_offloading '0'\n", ""},
		{"config zone\n\toption flow_offloading '1'\n", ""},
		{"", ""},
	} {
		fw := filepath.Join(dir, "firewall")
		os.Remove(fw)
		if tc.firewall != "" {
			os.WriteFile(fw, []byte(tc.firewall), 0o644)
		}
		d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"), FirewallPath: fw,
			Backend: newFakeBackend(), Clock: &fakeClock{now: london(t, "2026-01-05T12:00:00Z")},
			Seen: func([]string) []Neighbour { return nil }})
		d.load()
		d.reconcile(context.Background())
		notes := strings.Join(d.status().Notes, "\n")
		if tc.want == "" && notes != "" || !strings.Contains(notes, tc.want) {
			t.Errorf("firewall %q: notes %q, want %q", tc.firewall, notes, tc.want)
		}
	}
}
