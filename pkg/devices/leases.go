// Package devices reads what the router knows about the devices on its
// LAN: DHCP leases from dnsmasq's lease file and from odhcpd (through
// `ubus call dhcp ipv4leases`), so that a device shows with its DHCP host
// name and client id, and a new random MAC can be recognised by them.
package devices

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Lease is one DHCP lease.
type Lease struct {
	// MAC is empty for DHCPv6 leases (they name a DUID, not a MAC).
	MAC      string
	Addr     netip.Addr
	Hostname string
	ClientID string
	// Expiry is zero for infinite leases.
	Expiry time.Time
}

// ParseDnsmasq reads dnsmasq's lease file (/tmp/dhcp.leases on OpenWrt):
//
//	<expiry> <mac> <ipv4> <host|*> <clientid|*>
//	duid <server duid>
//	<expiry> <iaid> <ipv6> <host|*> <duid|*>
//
// A malformed line is skipped and counted, never fatal: the file is
// rewritten by dnsmasq while we read it.
func ParseDnsmasq(fsys fs.FS, name string) ([]Lease, int, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return parseDnsmasq(f)
}

func parseDnsmasq(r io.Reader) ([]Lease, int, error) {
	var out []Lease
	bad := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "duid" {
			continue
		}
		if len(f) < 4 {
			bad++
			continue
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp < 0 {
			bad++
			continue
		}
		addr, err := netip.ParseAddr(f[2])
		if err != nil {
			bad++
			continue
		}
		l := Lease{Addr: addr.Unmap()}
		if exp > 0 {
			l.Expiry = time.Unix(exp, 0)
		}
		if f[3] != "*" {
			l.Hostname = HostName(f[3])
		}
		if len(f) >= 5 && f[4] != "*" {
			l.ClientID = f[4]
		}
		if addr.Is4() {
			mac, err := net.ParseMAC(f[1])
			if err != nil || len(mac) != 6 {
				bad++
				continue
			}
			l.MAC = mac.String()
		}
		out = append(out, l)
	}
	return out, bad, sc.Err()
}

// ParseOdhcpd reads the JSON of `ubus call dhcp ipv4leases` (odhcpd):
// {"device": {"br-lan": {"leases": [{"mac": "aabbccddeeff", "hostname": …,
// "address": …, "valid": seconds}]}}}.
func ParseOdhcpd(data []byte, now time.Time) ([]Lease, error) {
	var doc struct {
		Device map[string]struct {
			Leases []struct {
				MAC      string   `json:"mac"`
				Hostname string   `json:"hostname"`
				Address  string   `json:"address"`
				Valid    int64    `json:"valid"`
				Flags    []string `json:"flags"`
			} `json:"leases"`
		} `json:"device"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("odhcpd leases: %w", err)
	}
	var out []Lease
	for _, dev := range doc.Device {
		for _, l := range dev.Leases {
			mac, err := parseBareMAC(l.MAC)
			if err != nil {
				continue
			}
			addr, err := netip.ParseAddr(l.Address)
			if err != nil {
				continue
			}
			lease := Lease{MAC: mac, Addr: addr.Unmap(), Hostname: HostName(l.Hostname)}
			if slices.Contains(l.Flags, "broken-hostname") {
				lease.Hostname = ""
			}
			if l.Valid > 0 {
				lease.Expiry = now.Add(time.Duration(l.Valid) * time.Second)
			}
			out = append(out, lease)
		}
	}
	return out, nil
}

// HostName returns s if it may be a DHCP host name, else "". The name is
// whatever the device sent: odhcpd stores it as sent and only flags it
// "broken-hostname", and it goes on to LuCI's lists and, through
// "Assign", into the config as the device's name. Like dnsmasq, which
// ignores an illegal name, a name is kept whole or not at all: labels of
// letters, digits, '-' and '_' (which Windows sends), split by single
// dots, at most 63 bytes each and 253 in all.
func HostName(s string) string {
	if s == "" || len(s) > 253 {
		return ""
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return ""
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return ""
			}
		}
	}
	return s
}

// parseBareMAC accepts odhcpd's "aabbccddeeff" as well as colon forms.
func parseBareMAC(s string) (string, error) {
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return "", fmt.Errorf("invalid MAC %q", s)
	}
	return mac.String(), nil
}
