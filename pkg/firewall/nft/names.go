// The names of curfew's kernel objects that carry a device's MAC or a
// profile's id, each made in one place, with its inverse beside it where
// the backend reads a name back.

package nft

import (
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// macID is a MAC as it appears in object names: 12 hex digits.
func macID(mac net.HardwareAddr) string { return strings.ReplaceAll(mac.String(), ":", "") }

// macOfID is macID's inverse; false for anything else.
func macOfID(id string) (string, bool) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 6 || strings.ToLower(id) != id {
		return "", false
	}
	return net.HardwareAddr(b).String(), true
}

// usageName is the named counter of a device's traffic (screen time).
func usageName(mac net.HardwareAddr) string { return "usage_" + macID(mac) }

// macOfUsage is usageName's inverse.
func macOfUsage(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, "usage_")
	if !ok {
		return "", false
	}
	return macOfID(id)
}

// deviceChain is a configured device's chain, offlineSet its offline
// intervals.
func deviceChain(mac net.HardwareAddr) string { return "device_" + macID(mac) }
func offlineSet(mac net.HardwareAddr) string  { return "offline_" + macID(mac) }

// profileChain is a profile's chain of destination rules, dnsChain its
// DNS redirect.
func profileChain(id string) string { return "profile_" + id }
func dnsChain(id string) string     { return "dns_" + id }

// windDownSet is a device's wind-down intervals, slowChain the limit on
// what it downloads inside them, markChain the chain that marks the flows
// it opens (see renderWindDown).
func windDownSet(mac net.HardwareAddr) string { return "wind_down_" + macID(mac) }
func slowChain(mac net.HardwareAddr) string   { return "slow_" + macID(mac) }
func markChain(mac net.HardwareAddr) string   { return "mark_" + macID(mac) }

// serviceSet holds the IPv4 (fam 4) or IPv6 addresses that a profile's
// DNS answers gave for a service's names, serviceCounter counts what the
// profile's devices send to them, and countChain is the profile's chain
// that does so on the fast path (see renderServices). The backend keeps
// each counter's profile and service beside it, never parsing them back:
// ids may contain '_'.
func serviceSet(fam int, profile, svc string) string {
	return fmt.Sprintf("svc%d_%s_%s", fam, profile, svc)
}
func serviceCounter(profile, svc string) string { return "svccnt_" + profile + "_" + svc }
func countChain(profile string) string          { return "count_" + profile }
