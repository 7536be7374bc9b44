package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"curfew/pkg/config"
	"curfew/pkg/control"
	"curfew/pkg/devices"
	"curfew/pkg/services"
)

// readLeases refreshes what DHCP says about each MAC and learns the host
// names of configured devices (so that a new random MAC asking for the same
// name can be recognised).
func (d *Daemon) readLeases(cfg *config.Config) {
	if d.opts.LeasesFile == "" {
		return
	}
	leases, bad, err := devices.ParseDnsmasq(os.DirFS(filepath.Dir(d.opts.LeasesFile)), filepath.Base(d.opts.LeasesFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Debug("leases not read", "file", d.opts.LeasesFile, "err", err)
		return
	}
	// Routers that hand out addresses with odhcpd instead of dnsmasq
	// answer on ubus.
	if _, lookErr := exec.LookPath("ubus"); lookErr == nil {
		if out, err := exec.Command("ubus", "call", "dhcp", "ipv4leases").Output(); err == nil {
			if more, err := devices.ParseOdhcpd(out, d.opts.Clock.Now()); err == nil {
				leases = append(leases, more...)
			}
		}
	}
	if bad > 0 {
		d.log.Debug("malformed lease lines skipped", "file", d.opts.LeasesFile, "lines", bad)
	}
	byMAC := map[string]devices.Lease{}
	for _, l := range leases {
		if l.MAC != "" {
			byMAC[l.MAC] = l
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leases = byMAC
	for _, dev := range cfg.Devices {
		if l, ok := byMAC[dev.MAC.String()]; ok && l.Hostname != "" {
			d.knownHosts[strings.ToLower(l.Hostname)] = dev
		}
		if dev.Hostname != "" {
			d.knownHosts[strings.ToLower(dev.Hostname)] = dev
		}
	}
}

// likeConfigured returns the configured device whose DHCP host name an
// unknown MAC uses, if any.
func (d *Daemon) likeConfigured(mac string) (*config.Device, string) {
	l, ok := d.leases[mac]
	if !ok || l.Hostname == "" {
		return nil, ""
	}
	dev := d.knownHosts[strings.ToLower(l.Hostname)]
	if dev == nil || dev.MAC.String() == mac {
		return nil, ""
	}
	return dev, l.Hostname
}

// withHostnameMatches returns cfg with a device entry for every unknown
// MAC that asks DHCP for the host name of a device with match_hostname.
func (d *Daemon) withHostnameMatches(cfg *config.Config, seen []net.HardwareAddr) *config.Config {
	if !slices.ContainsFunc(cfg.Devices, func(dev *config.Device) bool { return dev.MatchHostname }) {
		return cfg // nothing to match: no map of thousands of MACs for each plan
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	configured := map[string]bool{}
	for _, dev := range cfg.Devices {
		configured[dev.MAC.String()] = true
	}
	var extra []*config.Device
	for _, mac := range seen {
		if configured[mac.String()] {
			continue
		}
		dev, host := d.likeConfigured(mac.String())
		if dev == nil || !dev.MatchHostname {
			continue
		}
		extra = append(extra, &config.Device{MAC: mac, Name: fmt.Sprintf("%s (new MAC, DHCP name %s)", dev.Name, host), Profile: dev.Profile})
	}
	if len(extra) == 0 {
		return cfg
	}
	c := *cfg
	c.Devices = append(append([]*config.Device(nil), cfg.Devices...), extra...)
	return &c
}

// notes are the remarks status and devices show about unknown MACs.
func (d *Daemon) notes() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	if d.last == nil {
		return out
	}
	for _, pd := range d.last.Devices {
		if !pd.Unknown {
			continue
		}
		if dev, host := d.likeConfigured(pd.MAC); dev != nil {
			out[pd.MAC] = fmt.Sprintf("new MAC %s; DHCP name '%s' like %s's configured device (curfew assign %s %s)",
				pd.MAC, host, dev.Name, pd.MAC, dev.Profile)
		}
	}
	return out
}

// assign adds a device section to the config file — appended, so the
// file's other content, comments and order stay as they are — after
// checking that the result is valid, then reloads.
func (d *Daemon) assign(ctx context.Context, req *control.Request) (any, error) {
	mac, err := config.ParseMAC(strings.TrimSpace(req.Target))
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	if cfg == nil {
		return nil, errors.New("no config loaded yet")
	}
	if cfg.Profile(req.Profile) == nil {
		return nil, fmt.Errorf("unknown profile %q", req.Profile)
	}
	for _, dev := range cfg.Devices {
		if dev.MAC.String() == mac.String() {
			return nil, fmt.Errorf("%s is already configured as %q", mac, dev.Name)
		}
	}
	name := req.Name
	if name != "" && cleanName(name) != name {
		return nil, fmt.Errorf("invalid device name %q: control characters or more than %d bytes", name, maxNameLen)
	}
	if name == "" {
		// The device chose its DHCP host name: only its printable part
		// goes into the config file.
		d.mu.Lock()
		l, ok := d.leases[mac.String()]
		d.mu.Unlock()
		if name = cleanName(l.Hostname); !ok || name == "" || slices.ContainsFunc(cfg.Devices, func(dev *config.Device) bool {
			return strings.EqualFold(dev.Name, name) // names are unique: the MAC it is
		}) {
			name = mac.String()
		}
	}
	path := d.opts.ConfigPath
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	section := fmt.Sprintf("\nconfig device\n\toption mac '%s'\n\toption name %s\n\toption profile '%s'\n", mac, quote(name), req.Profile)
	updated := append(append([]byte{}, old...), section...)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		updated = append(append(append([]byte{}, old...), '\n'), section...)
	}
	if _, _, err := config.Parse(path, updated, services.Builtin()); err != nil {
		return nil, fmt.Errorf("the config would not be valid with this device: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := atomicWrite(filepath.Dir(path), filepath.Base(path), updated); err != nil {
		return nil, err
	}
	os.Chmod(path, info.Mode().Perm())
	d.log.Info(fmt.Sprintf("parent: assigned %s (%s) to profile %s", mac, name, req.Profile))
	d.load()
	d.reconcileNow(ctx)
	return control.ActionResult{Message: fmt.Sprintf("assigned %s to %s as %q", mac, req.Profile, name)}, nil
}

// maxNameLen bounds a device name written to the config.
const maxNameLen = 64

// cleanName keeps the printable characters of s (valid UTF-8, no control
// characters: a NUL or a newline in /etc/config/curfew would make libuci
// and every other reader see another file than curfew wrote), trimmed and
// cut to maxNameLen bytes on a character boundary.
func cleanName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "") {
		if unicode.IsPrint(r) || r == ' ' {
			if b.Len()+utf8.RuneLen(r) > maxNameLen {
				break
			}
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// quote writes a UCI value as `uci export` does: single quotes, a single
// quote inside written as '\”.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
