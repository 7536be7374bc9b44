// Package bind makes listeners that take packets from one network
// interface only. curfew's listeners (the DNS filter, the bedtime page)
// serve the LAN's devices and must not answer on the WAN side, whatever
// the firewall in front of them says; SO_BINDTODEVICE is the kernel's own
// test, per packet, also for a wildcard address and for addresses that
// appear later.
package bind

import (
	"net"
	"syscall"
)

// To returns a ListenConfig whose sockets are bound to interface ifc.
func To(ifc string) net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, ifc)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// Index is interface ifc's index now, 0 when there is none. A socket
// bound to an interface stays bound to its index: when the interface is
// created anew (OpenWrt's network restart recreates br-lan), its
// listeners must be opened again.
func Index(ifc string) int {
	i, err := net.InterfaceByName(ifc)
	if err != nil {
		return 0
	}
	return i.Index
}
