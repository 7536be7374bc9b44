package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"curfew/pkg/services"
)

func TestWifiKeySituations(t *testing.T) {
	const hexPSK = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name     string
		profiles string
		keys     map[string]int // profile -> keys kept
		warn     string         // a warning that must be there ("" none)
		err      string
	}{
		{"a child's key", "config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n",
			map[string]int{"alice": 1}, "", ""},
		{"two keys of one child (a phone, a console)", "config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n\tlist wifi_key 'alice-console-2'\n",
			map[string]int{"alice": 2}, "", ""},
		{"a raw PSK of 64 hex digits", "config profile 'alice'\n\tlist wifi_key '" + hexPSK + "'\n",
			map[string]int{"alice": 1}, "", ""},
		{"a key shorter than WPA2 takes", "config profile 'alice'\n\tlist wifi_key 'short7!'\n\tlist wifi_key 'alice-secret-1'\n",
			map[string]int{"alice": 1}, "f:2: section 'alice' option 'wifi_key': a Wi-Fi key of 7 characters: WPA2 takes 8 to 63", ""},
		{"a key longer than WPA2 takes", "config profile 'alice'\n\tlist wifi_key '" + strings.Repeat("x", 64) + "'\n",
			map[string]int{"alice": 0}, "a Wi-Fi key of 64 characters", ""},
		{"a key with a character a phone cannot type", "config profile 'alice'\n\tlist wifi_key 'alice-s\u00e9cret'\n",
			map[string]int{"alice": 0}, "other than printable ASCII (at position 8)", ""},
		{"one key written twice in a profile", "config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n\tlist wifi_key 'alice-secret-1'\n",
			map[string]int{"alice": 1}, "f:3: section 'alice' option 'wifi_key': the same Wi-Fi key as at line 2", ""},
		{"two children given one key", "config profile 'alice'\n\tlist wifi_key 'shared-secret'\nconfig profile 'bob'\n\tlist wifi_key 'shared-secret'\n\tlist wifi_key 'bob-secret-12'\n",
			map[string]int{"alice": 1, "bob": 1}, `a Wi-Fi key of profile "bob" is also one of profile "alice"`, ""},
		{"a profile name too long for a key id", "config profile '" + strings.Repeat("a", 32) + "'\n\tlist wifi_key 'alice-secret-1'\n",
			nil, "", "needs a name of at most 31 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.profiles + "config device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'alice'\n"
			c, warns, err := Parse("f", []byte(src), services.Builtin())
			var all []string
			for _, w := range warns {
				all = append(all, w.String())
			}
			if err != nil {
				all = append(all, err.Error())
			}
			text := strings.Join(all, "\n")
			for _, secret := range []string{"alice-secret", "short7!", "shared-secret", "bob-secret", hexPSK, "xxxxxxxx", "s\u00e9cret"} {
				if strings.Contains(text, secret) {
					t.Fatalf("a diagnostic shows a key:\n%s", text)
				}
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.warn == "" && len(warns) > 0 {
				t.Fatalf("warnings: %s", text)
			}
			if !strings.Contains(text, tt.warn) {
				t.Fatalf("warnings:\n%s\nwant %q", text, tt.warn)
			}
			for id, n := range tt.keys {
				if got := len(c.Profile(id).WifiKeys); got != n {
					t.Errorf("profile %s keeps %d keys, want %d", id, got, n)
				}
			}
		})
	}
}

func TestAWifiKeyPrintsHiddenEverywhere(t *testing.T) {
	c, _, err := Parse("f", []byte("config profile 'alice'\n\tlist wifi_key 'alice-secret-1'\n"), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(js), fmt.Sprintf("%v %+v %#v %s", c.Profiles[0], c.Profiles[0], c.Profiles[0], c.Profiles[0].WifiKeys)} {
		if strings.Contains(out, "alice-secret-1") || !strings.Contains(out, "(hidden)") {
			t.Fatalf("printed: %s", out)
		}
	}
	if c.Profiles[0].WifiKeys[0].Reveal() != "alice-secret-1" {
		t.Fatal("Reveal lost the key")
	}
	if c.WifiKeyFile != DefaultWifiKeyFile || c.HostapdDir != DefaultHostapdDir || !c.HasWifiKeys() {
		t.Fatalf("defaults: %q %q %v", c.WifiKeyFile, c.HostapdDir, c.HasWifiKeys())
	}
}

func TestWifiPlacesAreChecked(t *testing.T) {
	for _, tt := range []struct{ opt, want string }{
		{"option wifi_key_file 'wifi.psk'", "option 'wifi_key_file': invalid file \"wifi.psk\" (want an absolute path without spaces)"},
		{"option hostapd_dir 'run/hostapd'", "option 'hostapd_dir': invalid folder \"run/hostapd\""},
	} {
		_, _, err := Parse("f", []byte("config curfew\n\t"+tt.opt+"\n"), services.Builtin())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.opt, err, tt.want)
		}
	}
}
