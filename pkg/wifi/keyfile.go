package wifi

import (
	"bytes"
	"fmt"

	"curfew/pkg/config"
)

// AnyStation is the MAC a key-file line gives for a key any station may
// join with.
const AnyStation = "00:00:00:00:00:00"

// KeyFile renders hostapd's wpa_psk_file for cfg: a line
// "keyid=<profile> 00:00:00:00:00:00 <key>" for each key, profiles in the
// config's order. Keys the config refused (too short, shared) are not in
// cfg: hostapd refuses a whole file over one bad line, and the network
// with it.
func KeyFile(cfg *config.Config) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by curfew from its config; edit the keys there (wifi_key of each profile).\n")
	for _, p := range cfg.Profiles {
		for _, k := range p.WifiKeys {
			fmt.Fprintf(&b, "keyid=%s %s %s\n", p.ID, AnyStation, k.Reveal())
		}
	}
	return b.Bytes()
}
