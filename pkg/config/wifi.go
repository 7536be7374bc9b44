package config

import (
	"encoding/hex"
	"fmt"
	"strings"

	"curfew/pkg/uci"
)

// WifiKey is one Wi-Fi password of a profile: a device that joins the
// network with it belongs to the profile, whatever its MAC. It is a
// secret a child must not learn from a sibling's screen, a log or a
// support question, so it prints as "(hidden)" everywhere — fmt, JSON,
// text — and only Reveal, for the key file hostapd reads, gives it out.
type WifiKey struct{ phrase string }

// hidden is what a key prints as.
const hidden = "(hidden)"

// Reveal returns the passphrase (8 to 63 printable ASCII characters) or
// the 64 hex digits of a raw PSK.
func (k WifiKey) Reveal() string { return k.phrase }

func (k WifiKey) String() string   { return hidden }
func (k WifiKey) GoString() string { return hidden }

// MarshalText keeps the key out of JSON and every other encoding.
func (k WifiKey) MarshalText() ([]byte, error) { return []byte(hidden), nil }

// MaxKeyID is the longest key id hostapd takes (KEYID_LEN is 32 with the
// NUL): a longer one makes it refuse the whole key file, and with it the
// Wi-Fi network.
const MaxKeyID = 31

// DefaultWifiKeyFile is where the daemon writes the key file hostapd
// reads (option wpa_psk_file of a wifi-iface). It is on flash, not in
// /var/run: hostapd reads it when Wi-Fi comes up at boot, before curfew
// runs, and a missing file stops the network.
const DefaultWifiKeyFile = "/etc/curfew/wifi.psk"

// DefaultHostapdDir is where hostapd's control sockets are on OpenWrt.
const DefaultHostapdDir = "/var/run/hostapd"

// checkWifiKey says why a key cannot be used, without quoting it.
func checkWifiKey(k string) string {
	if len(k) == 64 {
		if _, err := hex.DecodeString(k); err == nil {
			return ""
		}
	}
	if len(k) < 8 || len(k) > 63 {
		return fmt.Sprintf("a Wi-Fi key of %d characters: WPA2 takes 8 to 63 (or 64 hex digits); it is left out of the key file", len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return fmt.Sprintf("a Wi-Fi key with a character other than printable ASCII (at position %d): devices cannot all type it; it is left out of the key file", i+1)
		}
	}
	return ""
}

// wifiKeys reads a profile's "list wifi_key". A key that cannot work is
// a warning, not an error (the rest of the config, and the other keys,
// still apply), and never quoted: the diagnostics reach logs and LuCI.
func (v *validator) wifiKeys(s *uci.Section, p *Profile) {
	opts := values(s, "wifi_key")
	if len(opts) > 0 && len(p.ID) > MaxKeyID {
		v.errorf(s, nil, "a profile with Wi-Fi keys needs a name of at most %d characters (hostapd's key id); this one has %d", MaxKeyID, len(p.ID))
		return
	}
	seen := map[string]int{}
	for _, o := range opts {
		if why := checkWifiKey(o.Value); why != "" {
			v.warnf(s, o, "%s", why)
			continue
		}
		if first, dup := seen[o.Value]; dup {
			v.warnf(s, o, "the same Wi-Fi key as at line %d", first)
			continue
		}
		seen[o.Value] = o.Line
		p.WifiKeys = append(p.WifiKeys, WifiKey{o.Value})
	}
}

// mainWifi reads where the key file goes and where hostapd listens.
func (v *validator) mainWifi(c *Config, s *uci.Section) {
	if o, ok := s.Get("wifi_key_file"); ok {
		if !strings.HasPrefix(o.Value, "/") || strings.ContainsAny(o.Value, " \t") || strings.HasSuffix(o.Value, "/") {
			v.errorf(s, o, "invalid file %q (want an absolute path without spaces)", o.Value)
		} else {
			c.WifiKeyFile = o.Value
		}
	}
	if o, ok := s.Get("hostapd_dir"); ok {
		if !strings.HasPrefix(o.Value, "/") {
			v.errorf(s, o, "invalid folder %q (want an absolute path)", o.Value)
		} else {
			c.HostapdDir = o.Value
		}
	}
}

// crossCheckWifi finds a key two profiles share: hostapd takes the first
// line that matches, so a device joining with it would count as the
// first profile's. The later one is left out, with a warning that names
// both profiles, never the key.
func (v *validator) crossCheckWifi(c *Config, byLine map[int]*uci.Section) {
	owner := map[string]*Profile{}
	for _, p := range c.Profiles {
		kept := p.WifiKeys[:0]
		for _, k := range p.WifiKeys {
			if first, dup := owner[k.phrase]; dup {
				v.warnf(byLine[p.Line], nil, "a Wi-Fi key of profile %q is also one of profile %q: it would identify only %q, so %q's copy is left out", p.ID, first.ID, first.ID, p.ID)
				continue
			}
			owner[k.phrase] = p
			kept = append(kept, k)
		}
		p.WifiKeys = kept
	}
}

// HasWifiKeys reports whether any profile has a Wi-Fi key, that is
// whether the daemon writes a key file and watches hostapd.
func (c *Config) HasWifiKeys() bool {
	for _, p := range c.Profiles {
		if len(p.WifiKeys) > 0 {
			return true
		}
	}
	return false
}
