package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/control"
)

// dropCounting is a backend whose kernel counts dropped connections by MAC.
type dropCounting struct {
	*fakeBackend
	mu    sync.Mutex
	drops map[string]uint64
}

func (b *dropCounting) FlowDrops(context.Context) (map[string]uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.drops), nil
}

func (b *dropCounting) set(mac string, n uint64) {
	b.mu.Lock()
	if n == 0 {
		delete(b.drops, mac)
	} else {
		b.drops[mac] = n
	}
	b.mu.Unlock()
}

// TestDroppedConnectionsAreCountedLoggedAndExplained: what the kernel
// dropped for flow_limit goes into the device's day minute by minute (a
// count that the kernel started again counts from zero), is logged once
// an hour per device, and explain tells the parent.
func TestDroppedConnectionsAreCountedLoggedAndExplained(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, testConfig)
	var logged bytes.Buffer
	b := &dropCounting{fakeBackend: newFakeBackend(), drops: map[string]uint64{}}
	clock := &fakeClock{now: london(t, "2026-01-05T12:00:00Z")}
	d := New(Options{ConfigPath: filepath.Join(dir, "curfew"), Backend: b, Clock: clock,
		Log: slog.New(slog.NewTextHandler(&logged, nil))})
	d.load()
	ctx := context.Background()
	d.reconcile(ctx)
	minute := func(n uint64) {
		b.set(childMAC, n)
		clock.advance(time.Minute)
		d.tick(ctx)
	}
	minute(300) // the kernel's count: 300 so far
	minute(800) // 500 more
	minute(800) // none more
	minute(0)   // the element expired
	minute(40)  // and started again
	today := d.usage.Days["2026-01-05"]
	if today == nil || today.Devices[childMAC] == nil || today.Devices[childMAC].FlowsDropped != 840 {
		t.Fatalf("today's usage: %+v", today)
	}
	if got := today.Devices[childMAC].Name; got != "Kid phone" {
		t.Errorf("the count is under the name %q", got)
	}
	if n := strings.Count(logged.String(), "faster than flow_limit"); n != 1 {
		t.Errorf("logged %d times within the hour, want once:\n%s", n, logged.String())
	}
	clock.advance(time.Hour)
	minute(100)
	if n := strings.Count(logged.String(), "faster than flow_limit"); n != 2 {
		t.Errorf("logged %d times after an hour, want twice", n)
	}
	res, err := d.Handle(ctx, &control.Request{V: 1, Method: control.MethodExplain, Target: "Kid phone"})
	if err != nil {
		t.Fatal(err)
	}
	ex := res.(control.Explanation)
	if len(ex.Devices) != 1 || ex.Devices[0].FlowsDropped != 900 || ex.Devices[0].FlowLimit != 50 {
		t.Errorf("explain: %+v", ex.Devices)
	}
}
