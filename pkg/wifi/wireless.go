package wifi

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"curfew/pkg/config"
	"curfew/pkg/uci"
)

// CheckWireless reads OpenWrt's wireless config (src, read from path; nil
// when there is none) and warns where curfew's keys cannot say whose a
// device is: no network takes the key file; a network that takes it uses
// SAE (WPA3, one password per station) or mixed WPA2/WPA3 (a phone that
// can do SAE does), or is on 6 GHz (SAE only); or a network's own
// password is also a child's key. The warnings never quote a key.
func CheckWireless(cfg *config.Config, path string, src []byte) []config.Diag {
	if !cfg.HasWifiKeys() {
		return nil
	}
	hint := fmt.Sprintf("set option wpa_psk_file '%s' on the wifi-iface of each network the keys are for (README: A Wi-Fi key for each child)", cfg.WifiKeyFile)
	if src == nil {
		return []config.Diag{{File: path, Line: 1, Msg: "profiles have Wi-Fi keys but this router has no wireless config; " + hint}}
	}
	f, err := uci.Parse(path, src)
	if err != nil {
		return []config.Diag{{File: path, Line: 1, Msg: fmt.Sprintf("not read, so the Wi-Fi keys are not checked: %v", err)}}
	}
	radios := map[string]*uci.Section{}
	for _, s := range f.Sections {
		if s.Type == "wifi-device" && s.Name != "" {
			radios[s.Name] = s
		}
	}
	owner := map[string]string{}
	for _, p := range cfg.Profiles {
		for _, k := range p.WifiKeys {
			owner[k.Reveal()] = p.ID
		}
	}
	var out []config.Diag
	warn := func(s *uci.Section, o *uci.Option, format string, args ...any) {
		d := config.Diag{File: path, Line: s.Line, Section: label(s), Msg: fmt.Sprintf(format, args...)}
		if o != nil {
			d.Line, d.Option = o.Line, o.Name
		}
		out = append(out, d)
	}
	taking := 0
	for _, s := range f.Sections {
		if s.Type != "wifi-iface" || value(s, "disabled") == "1" || value(s, "wpa_psk_file") != cfg.WifiKeyFile {
			continue
		}
		if mode := value(s, "mode"); mode != "" && mode != "ap" {
			continue
		}
		taking++
		enc, _ := s.Get("encryption")
		switch e := value(s, "encryption"); {
		case strings.Contains(e, "sae"):
			warn(s, enc, "encryption %q uses SAE (WPA3): it has one password per station address, so a device that joins with SAE cannot be told by its key; use encryption 'psk2' on this network", e)
		case !strings.HasPrefix(e, "psk"):
			warn(s, enc, "encryption %q does not take WPA2 passwords, so curfew's keys do not apply; use encryption 'psk2'", e)
		}
		if r := radios[value(s, "device")]; r != nil && value(r, "band") == "6g" {
			warn(s, nil, "on radio '%s', a 6 GHz radio: 6 GHz allows only SAE (WPA3), whose one password per station cannot say whose a device is; give the keys to a 2.4 or 5 GHz network", r.Name)
		}
		if o, ok := s.Get("key"); ok {
			if id, shared := owner[o.Value]; shared {
				warn(s, o, "this network's own password is also a Wi-Fi key of profile %q: every device that joins with it counts as %s's; give the network another password (the one for guests)", id, id)
			}
		}
	}
	if taking == 0 {
		out = append(out, config.Diag{File: path, Line: 1, Msg: "no Wi-Fi network takes curfew's keys; " + hint})
	}
	return out
}

// CheckConfigMode warns when the config holds Wi-Fi keys and others than
// root may read it (mode is the file's): a key there is a child's way out
// for anyone who reads it. OpenWrt's package installs it 0600, and libuci
// keeps a file's mode when it writes it.
func CheckConfigMode(cfg *config.Config, path string, mode fs.FileMode) []config.Diag {
	if !cfg.HasWifiKeys() || mode.Perm()&0o077 == 0 {
		return nil
	}
	return []config.Diag{{File: path, Line: 1, Msg: fmt.Sprintf("it holds Wi-Fi keys and others can read it (mode %04o): chmod 600 %s", mode.Perm(), path)}}
}

// WirelessBeside is OpenWrt's wireless config for a curfew config: the
// file "wireless" in the same folder (/etc/config/wireless).
func WirelessBeside(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), "wireless")
}

func value(s *uci.Section, name string) string {
	if o, ok := s.Get(name); ok {
		return o.Value
	}
	return ""
}

func label(s *uci.Section) string {
	if s.Name != "" {
		return "'" + s.Name + "'"
	}
	return fmt.Sprintf("@%s (line %d)", s.Type, s.Line)
}
