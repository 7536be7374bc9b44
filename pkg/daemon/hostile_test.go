package daemon

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/devices"
	"curfew/pkg/dnsfilter"
	"curfew/pkg/plan"
	"curfew/pkg/services"
)

func TestOverridesEndWithinAYear(t *testing.T) {
	now := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ forArg, until string }{
		{"", "2300-01-01T00:00:00Z"},
		{"", "2263-01-01T00:00:00Z"},
		{"9000h", ""},
	} {
		if _, err := when(now, time.UTC, tc.forArg, tc.until); err == nil || !strings.Contains(err.Error(), "at most a year") {
			t.Errorf("when(--for %q --until %q) = %v, want a refusal", tc.forArg, tc.until, err)
		}
	}
	if got, err := when(now, time.UTC, "", "2027-06-01T00:00:00Z"); err != nil || got.Year() != 2027 {
		t.Errorf("half a year ahead: %v %v", got, err)
	}
}

func TestCorruptOverridesFallBackToThePreviousCopy(t *testing.T) {
	dir := t.TempDir()
	first := []plan.Override{{Kind: plan.Pause, Target: "kid", From: time.Unix(1e9, 0).UTC()}}
	if err := saveState(dir, stateDoc{Overrides: first}); err != nil {
		t.Fatal(err)
	}
	second := append(first, plan.Override{Kind: plan.Grant, Target: "kid", Amount: time.Hour, Day: "2026-11-27"})
	if err := saveState(dir, stateDoc{Overrides: second}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{\"version\":1,\"overr"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := loadState(dir)
	got := doc.Overrides
	if err == nil || !strings.Contains(err.Error(), "restored the copy before the last change") {
		t.Errorf("no notice of the corrupt file: %v", err)
	}
	if len(got) != 1 || got[0].Kind != plan.Pause {
		t.Errorf("restored %+v, want the pause of the previous copy", got)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile+".corrupt")); err != nil {
		t.Errorf("the corrupt file is not kept for the parent: %v", err)
	}

	lone := t.TempDir()
	os.WriteFile(filepath.Join(lone, stateFile), []byte("garbage"), 0o600)
	if _, err := loadState(lone); err == nil || !strings.Contains(err.Error(), "were lost") {
		t.Errorf("no earlier copy: %v", err)
	}
}

func TestAssignedNamesAreReadBackAsWritten(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Alice's iPad", "Alice's iPad"},
		{"evil\x00name\n\toption profile 'grownup'", "evilnameoption profile 'grownup'"},
		{"\x1b[31mred\x1b[0m", "[31mred[0m"},
		{strings.Repeat("é", 40), strings.Repeat("é", 32)},
		{"ok \"quoted\" \\ back", "ok \"quoted\" \\ back"},
	} {
		name := cleanName(tc.in)
		if name != tc.want {
			t.Errorf("cleanName(%q) = %q, want %q", tc.in, name, tc.want)
		}
		cfg := "config profile 'kid'\n\nconfig device\n\toption mac '02:00:00:00:00:01'\n\toption name " + quote(name) + "\n\toption profile 'kid'\n"
		c, _, err := config.Parse("curfew", []byte(cfg), services.Builtin())
		if err != nil {
			t.Errorf("%q written as %s does not parse: %v", name, quote(name), err)
			continue
		}
		if len(c.Devices) != 1 || c.Devices[0].Name != name || c.Devices[0].Profile != "kid" {
			t.Errorf("%q read back as %+v", name, c.Devices)
		}
	}
}

// Assign without a name takes the device's DHCP host name, unless another
// device has that name already (names are unique): then its MAC.
func TestAssignTakesTheDHCPNameOnlyIfItIsFree(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, london(t, "2026-01-05T12:00:00Z"))
	for _, tc := range []struct{ mac, hostname, want string }{
		{"02:c0:00:00:00:1a", "kid-Phone", `as "kid-Phone"`},
		{"02:c0:00:00:00:1b", "KID PHONE", `as "02:c0:00:00:00:1b"`}, // "Kid phone" is configured
		{"02:c0:00:00:00:1c", "KID-PHONE", `as "02:c0:00:00:00:1c"`}, // the first one's
	} {
		// as the lease file would say (a reconcile reads it again)
		h.d.mu.Lock()
		h.d.leases = map[string]devices.Lease{tc.mac: {MAC: tc.mac, Hostname: tc.hostname}}
		h.d.mu.Unlock()
		res, err := h.d.Handle(context.Background(), &control.Request{V: 1, Method: control.MethodAssign, Target: tc.mac, Profile: "kid"})
		if err != nil {
			t.Fatalf("%s: %v", tc.mac, err)
		}
		if msg := res.(control.ActionResult).Message; !strings.Contains(msg, tc.want) {
			t.Errorf("%s named %q by DHCP: %q, want %s", tc.mac, tc.hostname, msg, tc.want)
		}
	}
}

// DNS lookups answer from the published identities without the daemon's
// lock: a reconcile or a parent's command holding it never delays a
// query.
func TestDNSLookupsDoNotWaitForTheDaemonsLock(t *testing.T) {
	h := start(t, t.TempDir(), london(t, "2026-01-05T12:00:00Z"))
	h.d.mu.Lock()
	done := make(chan dnsfilter.Device, 1)
	go func() {
		dev, _ := h.d.identify(childIP)
		done <- dev
	}()
	select {
	case dev := <-done:
		if dev.MAC != childMAC || dev.Name != "Kid phone" {
			t.Errorf("identify(%s) = %+v", childIP, dev)
		}
	case <-time.After(5 * time.Second):
		t.Error("a DNS lookup waited for the daemon's lock")
	}
	h.d.mu.Unlock()
}

// BenchmarkNoteSeenOf2048MACs: a read of the neighbour table with a
// child's 2,048 random MACs, twice the devices remembered.
func BenchmarkNoteSeenOf2048MACs(b *testing.B) {
	d := New(Options{})
	var ns []Neighbour
	for i := range 2048 {
		ns = append(ns, Neighbour{MAC: net.HardwareAddr{0x5a, 0, 0, 0, byte(i >> 8), byte(i)},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}})
	}
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		d.noteSeen(ns, now.Add(time.Duration(i)*time.Second))
	}
}
