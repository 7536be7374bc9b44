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

	"curfew/pkg/control"
	"curfew/pkg/firewall"
	"curfew/pkg/notify"
	"curfew/pkg/page"
)

// serviceBackend is a countingBackend with service counters, and records
// the learned addresses and the cuts by destination.
type serviceBackend struct {
	*countingBackend
	smu      sync.Mutex
	services map[firewall.ServiceKey]uint64
	learned  []netip.Addr
	forgot   []netip.Addr
	cutTo    []netip.Prefix
}

func (b *serviceBackend) ServiceAddresses(_ context.Context, profile, service string, addrs []netip.Addr, _ time.Duration) error {
	b.smu.Lock()
	defer b.smu.Unlock()
	b.learned = append(b.learned, addrs...)
	return nil
}

func (b *serviceBackend) ForgetServiceAddresses(_ context.Context, profile, service string, addrs []netip.Addr) error {
	b.smu.Lock()
	defer b.smu.Unlock()
	b.forgot = append(b.forgot, addrs...)
	return nil
}

func (b *serviceBackend) ServiceCounters(context.Context) (map[firewall.ServiceKey]uint64, error) {
	b.smu.Lock()
	defer b.smu.Unlock()
	out := map[firewall.ServiceKey]uint64{}
	for k, v := range b.services {
		out[k] = v
	}
	return out, nil
}

func (b *serviceBackend) Cutoff(ctx context.Context, macs []net.HardwareAddr, sel firewall.Flows) (firewall.Cut, error) {
	b.smu.Lock()
	b.cutTo = append(b.cutTo, sel.Dests...)
	b.smu.Unlock()
	return b.fakeBackend.Cutoff(ctx, macs, sel)
}

// A profile's YouTube minutes: counted from the kernel's service counter
// (busy minutes only), toward the daily limit too; at the allowance the
// service is blocked for the profile — its rules say so, its learned
// addresses' flows are cut, the parents hear of it once — and the next
// local day starts at zero.
func TestServiceMinutesRunOutAndStartAgainTheNextDay(t *testing.T) {
	dir := t.TempDir()
	rec := &events{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cfg := strings.Replace(testConfig, "list lan 'br-lan'", "list lan 'br-lan'\n\tlist notify '"+srv.URL+"/hook'", 1)
	write(t, dir, strings.Replace(cfg, "option name 'Kid'", "option name 'Kid'\n\toption daily_limit '2h'\n\tlist service_limit 'youtube 3m'", 1))
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	sb := &serviceBackend{countingBackend: &countingBackend{fakeBackend: newFakeBackend(), bytes: map[string]uint64{childMAC: 0}},
		services: map[firewall.ServiceKey]uint64{{Profile: "kid", Service: "youtube"}: 0}}
	clock := &fakeClock{now: london(t, "2026-01-05T19:55:00Z")}
	child, _ := net.ParseMAC(childMAC)
	n := notify.New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), SystemPath: filepath.Join(dir, "system"),
		Backend: sb, Clock: clock, Notify: n,
		Seen: func([]string) []Neighbour { return []Neighbour{{MAC: child, IPs: []netip.Addr{childIP}}} }})
	d.load()
	d.reconcile(ctx)
	yt := firewall.ServiceKey{Profile: "kid", Service: "youtube"}
	video := netip.MustParseAddr("198.51.100.40")
	d.learnService(ctx, "kid", "youtube", []netip.Addr{video}, time.Minute)
	if len(sb.learned) != 1 {
		t.Fatalf("the kernel was handed %v, want the learned address", sb.learned)
	}
	// www.google.com answers with a front end that YouTube's names gave
	// too: it leaves YouTube's addresses, and a later YouTube answer
	// with it does not bring it back
	front := netip.MustParseAddr("198.51.100.41")
	d.learnService(ctx, "kid", "youtube", []netip.Addr{front}, time.Minute)
	d.learnService(ctx, "kid", "", []netip.Addr{front}, time.Minute)
	d.learnService(ctx, "kid", "youtube", []netip.Addr{front}, time.Minute)
	if len(sb.learned) != 2 || len(sb.forgot) != 1 || sb.forgot[0] != front {
		t.Fatalf("handed %v, taken back %v: want the front end handed once and taken back", sb.learned, sb.forgot)
	}
	d.tick(ctx) // the baseline
	minute := func(all, service uint64) {
		sb.send(childMAC, all)
		sb.smu.Lock()
		sb.services[yt] += service
		sb.smu.Unlock()
		clock.advance(time.Minute)
		d.tick(ctx)
		d.reconcile(ctx)
	}
	minute(1<<20, 1<<20) // watching
	minute(1<<20, 500)   // another site; the video app's chatter
	minute(1<<20, 1<<20)
	if s := youtube(t, d); s != "YouTube: 2m used of 3m today" {
		t.Fatalf("after two busy minutes of three: %q", s)
	}
	minute(1<<20, 1<<20)
	if s := youtube(t, d); s != "YouTube: 3m used of 3m today" {
		t.Fatalf("at the allowance: %q", s)
	}
	rs := sb.applied[len(sb.applied)-1]
	if len(rs.Profiles) == 0 || len(rs.Profiles[0].Services) != 1 || !rs.Profiles[0].Services[0].UsedUp {
		t.Fatalf("the kernel's rules do not say YouTube is used up: %+v", rs.Profiles)
	}
	if len(sb.cutTo) != 1 || sb.cutTo[0] != netip.PrefixFrom(video, 32) {
		t.Errorf("cut to %v, want the flows to the learned address", sb.cutTo)
	}
	if s := childState(d); s != "online" {
		t.Errorf("the device is %s with only YouTube used up", s)
	}
	ex, err := d.explain("kid")
	if err != nil {
		t.Fatal(err)
	}
	if left := ex.Devices[0].BudgetLeft; left != "1h56m" {
		t.Errorf("screen time left %s after 4 busy minutes of 2h: YouTube's count toward the daily limit", left)
	}
	minute(1<<20, 1<<20) // still told once
	toldOnce := func() bool { return strings.Count(rec.kinds(), notify.BudgetUsed) == 1 }
	for i := 0; i < 100 && !toldOnce(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !toldOnce() {
		t.Errorf("events %q, want one budget_used", rec.kinds())
	}
	rec.mu.Lock()
	if len(rec.got) > 0 && (rec.got[0].Service != "youtube" || !strings.Contains(rec.got[0].Text, "--service youtube")) {
		t.Errorf("the event %+v does not name the service and how to give more", rec.got[0])
	}
	rec.mu.Unlock()
	if _, err := d.Handle(ctx, &control.Request{V: 1, Method: control.MethodGrant, Target: "kid", Amount: "15m", Service: "netflix"}); err == nil {
		t.Error("a grant of a service the profile does not limit was taken")
	}
	// the child asks from the page; the parent's approval is YouTube time
	if err := d.Ask(childIP, page.Form{Minutes: 15, Service: "netflix"}); !errors.Is(err, page.NoSuchService) {
		t.Errorf("asking for a service without a limit: %v", err)
	}
	if v, _ := d.View(childIP); !v.Online || !v.CanAsk || len(v.UsedUp) != 1 || v.UsedUp[0].Title != "YouTube" {
		t.Errorf("the page offers no request for YouTube: %+v", v)
	}
	if err := d.Ask(childIP, page.Form{Minutes: 15, Service: "youtube", Message: "one more video"}); err != nil {
		t.Fatal(err)
	}
	reqs := d.listRequests()
	if len(reqs) != 1 || reqs[0].Service != "youtube" || reqs[0].Reason != "YouTube: 4m used of 3m today" {
		t.Fatalf("requests %+v", reqs)
	}
	res, err := d.Handle(ctx, &control.Request{V: 1, Method: control.MethodApprove, ID: reqs[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if msg := res.(control.ActionResult).Message; msg != "approved request 1: granted Kid phone 15m more YouTube today" {
		t.Errorf("approval: %q", msg)
	}
	if s := youtube(t, d); s != "YouTube: 4m used of 18m today" {
		t.Errorf("after the approval: %q", s)
	}
	clock.set(london(t, "2026-01-06T07:30:00Z"))
	d.reconcile(ctx)
	if s := youtube(t, d); s != "YouTube: 0m used of 3m today" {
		t.Errorf("the next day: %q", s)
	}
}

// youtube is the profile kid's YouTube line of explain.
func youtube(t *testing.T, d *Daemon) string {
	t.Helper()
	ex, err := d.explain("kid")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Devices) == 0 || len(ex.Devices[0].Services) != 1 {
		t.Fatalf("explain has no service line: %+v", ex)
	}
	return ex.Devices[0].Services[0]
}

// childState is the child's state in the daemon's plan.
func childState(d *Daemon) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dev := range d.last.Devices {
		if dev.MAC == childMAC {
			return dev.State
		}
	}
	return ""
}
