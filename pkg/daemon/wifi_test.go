package daemon

import (
	"net"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/plan"
	"curfew/pkg/services"
	"curfew/pkg/wifi"
)

func TestTheKeyADeviceJoinedWithOutranksItsMAC(t *testing.T) {
	src := `config profile 'alice'
	list wifi_key 'alice-secret-1'
config profile 'dad'
	list wifi_key 'dad-secret-123'
config profile 'bob'
config device
	option mac '02:00:00:00:0d:01'
	option name 'dad-phone'
	option profile 'dad'
config device
	option mac '02:00:00:00:0a:01'
	option name 'alice-phone'
	option profile 'alice'
config schedule 'bed'
	option profile 'alice'
	option start '21:00'
	option stop '07:00'
`
	cfg, _, err := config.Parse("f", []byte(src), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]wifi.Binding{
		// alice copied dad's MAC but joined with her own key
		"02:00:00:00:0d:01": {MAC: "02:00:00:00:0d:01", Profile: "alice", Socket: "/var/run/hostapd/wlan0"},
		// alice's phone with a new random MAC
		"12:34:56:78:9a:bc": {MAC: "12:34:56:78:9a:bc", Profile: "alice", Socket: "/var/run/hostapd/wlan0"},
		// a key id of a profile without keys (bob's were removed)
		"02:00:00:00:0b:01": {MAC: "02:00:00:00:0b:01", Profile: "bob", Socket: "/var/run/hostapd/wlan0"},
		// dad's tablet, with dad's key
		"22:00:00:00:0d:02": {MAC: "22:00:00:00:0d:02", Profile: "dad", Socket: "/var/run/hostapd/wlan1"},
	}
	keyed := keyedDevices(cfg, bound)
	at := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	p := plan.Compute(plan.Input{Config: keyed, Loc: time.UTC, At: at, ClockTrusted: true,
		Seen: macs(t, "02:00:00:00:0d:01", "12:34:56:78:9a:bc", "02:00:00:00:0b:01", "22:00:00:00:0d:02")})
	want := map[string]struct{ profile, key, state string }{
		"02:00:00:00:0d:01": {"alice", "alice", plan.Offline},
		"12:34:56:78:9a:bc": {"alice", "alice", plan.Offline},
		"02:00:00:00:0a:01": {"alice", "", plan.Offline},
		"02:00:00:00:0b:01": {"", "", plan.Online},
		"22:00:00:00:0d:02": {"dad", "dad", plan.Online},
	}
	for _, d := range p.Devices {
		w, ok := want[d.MAC]
		if !ok {
			t.Errorf("a device %s (%s) no one bound", d.MAC, d.Name)
			continue
		}
		if d.Profile != w.profile || d.WifiKey != w.key || d.State != w.state {
			t.Errorf("%s (%s): profile %q key %q %s, want %q %q %s", d.MAC, d.Name, d.Profile, d.WifiKey, d.State, w.profile, w.key, w.state)
		}
		delete(want, d.MAC)
	}
	if len(want) > 0 {
		t.Errorf("not in the plan: %v", want)
	}
	for i := 0; i < 20; i++ {
		again := keyedDevices(cfg, bound)
		for j := range keyed.Devices {
			if again.Devices[j].MAC.String() != keyed.Devices[j].MAC.String() {
				t.Fatalf("the devices came in another order at plan %d: the kernel's table would be rewritten whole", i)
			}
		}
	}
	if cfg.Devices[0].Profile != "dad" {
		t.Error("the loaded config was changed: a station leaving must give the MAC back to its own profile")
	}
}

func macs(t *testing.T, s ...string) []net.HardwareAddr {
	var out []net.HardwareAddr
	for _, m := range s {
		hw, err := net.ParseMAC(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hw)
	}
	return out
}
