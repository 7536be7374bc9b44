package wifi

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/services"
)

func TestHostapdEventsAreRead(t *testing.T) {
	tests := []struct {
		name, msg string
		want      Event
		ok        bool
	}{
		{"a station joined with a child's key", "<3>AP-STA-CONNECTED 02:00:00:00:01:00 keyid=alice", Event{Connected, "02:00:00:00:01:00", "alice"}, true},
		{"with OpenWrt's auth_alg and 25.12's vlanid", "<3>AP-STA-CONNECTED 02:AA:00:00:01:00 keyid=bob vlanid=3 auth_alg=open", Event{Connected, "02:aa:00:00:01:00", "bob"}, true},
		{"a station joined with the network's own password", "<3>AP-STA-CONNECTED 02:00:00:00:01:00", Event{Connected, "02:00:00:00:01:00", ""}, true},
		{"a station left", "<3>AP-STA-DISCONNECTED 02:00:00:00:01:00", Event{Disconnected, "02:00:00:00:01:00", ""}, true},
		{"a key id curfew never writes", "<3>AP-STA-CONNECTED 02:00:00:00:01:00 keyid=../../x", Event{Connected, "02:00:00:00:01:00", ""}, true},
		{"another event", "<3>CTRL-EVENT-EAP-STARTED 02:00:00:00:01:00", Event{}, false},
		{"no MAC", "<3>AP-STA-CONNECTED", Event{}, false},
		{"a MAC of 8 bytes", "<3>AP-STA-CONNECTED 02:00:00:00:01:00:00:00 keyid=alice", Event{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseEvent([]byte(tt.msg))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("ParseEvent(%q) = %+v, %v; want %+v, %v", tt.msg, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestAStationAnswerIsRead(t *testing.T) {
	mac, id, ok := ParseStation([]byte("02:00:00:00:01:00\nflags=[AUTH][ASSOC][AUTHORIZED]\naid=1\nkeyid=alice\nconnected_time=3\n"))
	if !ok || mac != "02:00:00:00:01:00" || id != "alice" {
		t.Fatalf("got %q %q %v", mac, id, ok)
	}
	if _, _, ok := ParseStation(nil); ok {
		t.Fatal("the empty answer after the last station is a station")
	}
	if mac, id, ok := ParseStation([]byte("02:00:00:00:02:00\naid=2\n")); !ok || mac != "02:00:00:00:02:00" || id != "" {
		t.Fatalf("a station with the network's password: %q %q %v", mac, id, ok)
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte("<3>AP-STA-CONNECTED 02:00:00:00:01:00 keyid=alice"))
	f.Add([]byte("<3>AP-STA-DISCONNECTED 02:00:00:00:01:00"))
	f.Add([]byte("02:00:00:00:01:00\nkeyid=alice\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, ev := range []Event{first(ParseEvent(msg)), stationEvent(msg)} {
			if ev.KeyID != "" && !validKeyID(ev.KeyID) {
				t.Fatalf("key id %q taken from %q", ev.KeyID, msg)
			}
			if ev.MAC != "" && len(ev.MAC) != len("02:00:00:00:01:00") {
				t.Fatalf("MAC %q taken from %q", ev.MAC, msg)
			}
		}
	})
}

func first(ev Event, _ bool) Event { return ev }

func stationEvent(msg []byte) Event {
	mac, id, _ := ParseStation(msg)
	return Event{MAC: mac, KeyID: id}
}

func TestBindingsFollowTheStations(t *testing.T) {
	w := NewWatcher(slog.New(slog.NewTextHandler(io.Discard, nil)), func(time.Time) {})
	at := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	steps := []struct {
		name    string
		iface   string
		ev      Event
		changed bool
		want    string // the MAC's profile after ("" none)
	}{
		{"a child's phone joins with her key", "wlan0", Event{Connected, "02:00:00:00:01:00", "alice"}, true, "alice"},
		{"hostapd says it again", "wlan0", Event{Connected, "02:00:00:00:01:00", "alice"}, false, "alice"},
		{"it roams to the 5 GHz network", "wlan1", Event{Connected, "02:00:00:00:01:00", "alice"}, true, "alice"},
		{"and leaves the 2.4 GHz one after", "wlan0", Event{Disconnected, "02:00:00:00:01:00", ""}, false, "alice"},
		{"it leaves the 5 GHz network too", "wlan1", Event{Disconnected, "02:00:00:00:01:00", ""}, true, ""},
		{"it joins with her key again", "wlan1", Event{Connected, "02:00:00:00:01:00", "alice"}, true, "alice"},
		{"then with the network's own password", "wlan1", Event{Connected, "02:00:00:00:01:00", ""}, true, ""},
	}
	for _, s := range steps {
		if got := w.apply(s.iface, s.ev, at); got != s.changed {
			t.Fatalf("%s: changed %v, want %v", s.name, got, s.changed)
		}
		if got := w.Bindings()[s.ev.MAC].Profile; got != s.want {
			t.Fatalf("%s: bound to %q, want %q", s.name, got, s.want)
		}
	}
	w.apply("wlan0", Event{Connected, "02:00:00:00:02:00", "bob"}, at)
	w.apply("wlan1", Event{Connected, "02:00:00:00:03:00", "bob"}, at)
	if !w.unbindSocket("wlan0") || len(w.Bindings()) != 1 {
		t.Fatalf("a hostapd gone kept its stations: %v", w.Bindings())
	}
}

func TestTheKeyFileHasALinePerKey(t *testing.T) {
	cfg, _, err := config.Parse("f", []byte("config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n\tlist wifi_key 'alice-console-2'\nconfig profile 'dad'\nconfig profile 'bob'\n\tlist wifi_key 'bob-secret-12'\n"), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	got := string(KeyFile(cfg))
	want := "# Written by curfew from its config; edit the keys there (wifi_key of each profile).\n" +
		"keyid=alice 00:00:00:00:00:00 alice-secret-1\nkeyid=alice 00:00:00:00:00:00 alice-console-2\nkeyid=bob 00:00:00:00:00:00 bob-secret-12\n"
	if got != want {
		t.Fatalf("key file:\n%s\nwant:\n%s", got, want)
	}
}

func TestWirelessConfigIsCheckedForKeysThatCannotIdentify(t *testing.T) {
	const curfew = "config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n"
	radios := "config wifi-device 'radio0'\n\toption band '2g'\nconfig wifi-device 'radio2'\n\toption band '6g'\n"
	iface := func(name, radio, enc, extra string) string {
		return "config wifi-iface '" + name + "'\n\toption device '" + radio + "'\n\toption mode 'ap'\n\toption encryption '" + enc +
			"'\n\toption wpa_psk_file '/etc/curfew/wifi.psk'\n" + extra
	}
	tests := []struct {
		name, wireless string
		want           []string // each a warning's text, in order
	}{
		{"a WPA2 network takes the keys", radios + iface("home", "radio0", "psk2", "\toption key 'guest-pass-1'\n"), nil},
		{"a router without Wi-Fi", "", []string{"this router has no wireless config"}},
		{"no network takes the key file", radios + "config wifi-iface 'home'\n\toption device 'radio0'\n\toption encryption 'psk2'\n",
			[]string{"wireless:1: no Wi-Fi network takes curfew's keys; set option wpa_psk_file '/etc/curfew/wifi.psk'"}},
		{"WPA3 only", radios + iface("home", "radio0", "sae", ""), []string{"wireless:8: section 'home' option 'encryption': encryption \"sae\" uses SAE"}},
		{"WPA2/WPA3 mixed", radios + iface("home", "radio0", "sae-mixed", ""), []string{"encryption \"sae-mixed\" uses SAE"}},
		{"an open network", radios + iface("home", "radio0", "none", ""), []string{"encryption \"none\" does not take WPA2 passwords"}},
		{"a 6 GHz network", radios + iface("six", "radio2", "psk2", ""), []string{"section 'six': on radio 'radio2', a 6 GHz radio"}},
		{"the network's own password is a child's key", radios + iface("home", "radio0", "psk2", "\toption key 'alice-secret-1'\n"),
			[]string{"section 'home' option 'key': this network's own password is also a Wi-Fi key of profile \"alice\""}},
		{"a disabled network does not count", radios + iface("home", "radio0", "psk2", "\toption disabled '1'\n"), []string{"no Wi-Fi network takes curfew's keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.Parse("curfew", []byte(curfew), services.Builtin())
			if err != nil {
				t.Fatal(err)
			}
			var src []byte
			if tt.wireless != "" {
				src = []byte(tt.wireless)
			}
			diags := CheckWireless(cfg, "wireless", src)
			if len(diags) != len(tt.want) {
				t.Fatalf("warnings %v, want %d", diags, len(tt.want))
			}
			for i, d := range diags {
				if s := d.String(); !strings.Contains(s, tt.want[i]) || strings.Contains(s, "alice-secret") {
					t.Errorf("warning %q, want %q (and no key)", s, tt.want[i])
				}
			}
		})
	}
}

func TestAConfigWithKeysOthersCanReadIsWarnedAbout(t *testing.T) {
	cfg, _, err := config.Parse("curfew", []byte("config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n"), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if d := CheckConfigMode(cfg, "/etc/config/curfew", 0o600); d != nil {
		t.Errorf("0600: %v", d)
	}
	d := CheckConfigMode(cfg, "/etc/config/curfew", 0o644)
	if len(d) != 1 || !strings.Contains(d[0].String(), "others can read it (mode 0644): chmod 600 /etc/config/curfew") {
		t.Errorf("0644: %v", d)
	}
	none, _, _ := config.Parse("curfew", []byte("config profile 'alice'\n"), services.Builtin())
	if d := CheckConfigMode(none, "/etc/config/curfew", 0o644); d != nil {
		t.Errorf("no keys, 0644: %v", d)
	}
}
