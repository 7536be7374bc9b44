package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/wifi"
)

// configureWifi writes the key file hostapd reads (when a profile has a
// key, or the file is there from before: a key removed must leave it) and
// has hostapd read it again when it changed. The file is 0600: the keys
// are secrets, and hostapd runs as root.
func (d *Daemon) configureWifi(c *config.Config) {
	d.wifi.Configure(c.HostapdDir, c.HasWifiKeys())
	wireless := wifi.WirelessBeside(d.opts.ConfigPath)
	src, err := os.ReadFile(wireless)
	if err != nil {
		src = nil
	}
	diags := wifi.CheckWireless(c, wireless, src)
	if fi, err := os.Stat(d.opts.ConfigPath); err == nil {
		diags = append(diags, wifi.CheckConfigMode(c, d.opts.ConfigPath, fi.Mode())...)
	}
	for _, w := range diags {
		d.log.Warn("wifi: " + w.String())
	}
	path := c.WifiKeyFile
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !c.HasWifiKeys() {
		return
	}
	data := wifi.KeyFile(c)
	if err == nil && bytes.Equal(old, data) {
		return
	}
	if err := atomicWrite(filepath.Dir(path), filepath.Base(path), data); err != nil {
		d.log.Error("wifi: key file not written; hostapd keeps the keys it has", "file", path, "err", err)
		return
	}
	os.Chmod(path, 0o600)
	keys := 0
	for _, p := range c.Profiles {
		keys += len(p.WifiKeys)
	}
	d.log.Info("wifi: key file written", "file", path, "keys", keys)
	d.wifi.Reload()
}

// wifiChanged is the watcher's news: a station came or went. The time of
// the first news not yet applied is kept, to say how long the kernel took.
func (d *Daemon) wifiChanged(at time.Time) {
	d.mu.Lock()
	if d.wifiPending.IsZero() {
		d.wifiPending = at
	}
	d.mu.Unlock()
	d.kick()
}

// withWifiKeys returns cfg with each station that joined with a profile's
// key in that profile: a configured MAC takes the key's profile (a child
// who copies a parent's MAC but joins with her own key is still the
// child), and an unknown MAC gets a device entry of its own. A key id of
// a profile that no longer has keys binds nothing.
func (d *Daemon) withWifiKeys(cfg *config.Config) *config.Config {
	return keyedDevices(cfg, d.wifi.Bindings())
}

// keyedDevices is withWifiKeys on the bindings given: the watcher's, or
// a test's.
func keyedDevices(cfg *config.Config, bound map[string]wifi.Binding) *config.Config {
	if len(bound) == 0 {
		return cfg
	}
	keyed := map[string]string{}
	for mac, b := range bound {
		if p := cfg.Profile(b.Profile); p != nil && len(p.WifiKeys) > 0 {
			keyed[mac] = p.ID
		}
	}
	if len(keyed) == 0 {
		return cfg
	}
	c := *cfg
	c.Devices = make([]*config.Device, 0, len(cfg.Devices)+len(keyed))
	for _, dev := range cfg.Devices {
		if id, ok := keyed[dev.MAC.String()]; ok {
			moved := *dev
			moved.Profile, moved.WifiKey = id, id
			dev = &moved
			delete(keyed, dev.MAC.String())
		}
		c.Devices = append(c.Devices, dev)
	}
	// In MAC order, the same at every plan: the kernel's table follows
	// the devices' order, and another order would rewrite it whole.
	for _, mac := range slices.Sorted(maps.Keys(keyed)) {
		id := keyed[mac]
		dev := &config.Device{Name: fmt.Sprintf("%s (%s's Wi-Fi key)", mac, id), Profile: id, WifiKey: id}
		dev.MAC, _ = config.ParseMAC(mac)
		c.Devices = append(c.Devices, dev)
	}
	return &c
}

// wifiApplied logs how long after hostapd's news the kernel held the
// stations' profiles, once rules planned after that news are in force
// (planned is when their plan began).
func (d *Daemon) wifiApplied(planned time.Time) {
	d.mu.Lock()
	at := d.wifiPending
	if at.IsZero() || planned.Before(at) {
		d.mu.Unlock()
		return
	}
	d.wifiPending = time.Time{}
	d.mu.Unlock()
	d.log.Info("wifi: stations' profiles in the kernel", "after_ms", time.Since(at).Milliseconds())
}
