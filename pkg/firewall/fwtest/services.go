package fwtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"curfew/pkg/firewall"
	"curfew/pkg/lab"
)

// ServiceTime checks time per service in the kernel. The lab's "blocked"
// server stands for YouTube: its addresses are what the DNS filter
// learned for the service's names. What the child sends there, over
// TCP and UDP (QUIC's way), IPv4 and IPv6, counts for the service, and
// what it sends to the other server does not. Used up, the child's open
// connection to the service ends at its next packet, new ones fail, UDP
// gets nothing through, and the other server still answers. A grant
// (counted again, after a full replace of the rules) opens it again with
// the addresses still known. The guest (a MAC the config does not list)
// has the child's profile and is counted as well. An address that
// another site turns out to share leaves the service's.
func ServiceTime(t *testing.T, l *lab.Lab, child net.HardwareAddr, apply func(*firewall.Ruleset) error, sc firewall.ServiceCounter) {
	t.Helper()
	ctx := context.Background()
	rs := func(usedUp bool) *firewall.Ruleset {
		return &firewall.Ruleset{
			LAN: []string{"br-lan"}, DNSPort: 53,
			Profiles: []firewall.Profile{{ID: "kid", Name: "Kid", Services: []firewall.Service{{Name: "youtube", UsedUp: usedUp}}}},
			Devices:  []firewall.Device{{MAC: child, Name: "Kid phone", Profile: "kid"}},
			// the guest, a MAC the config does not list, gets the
			// child's profile: counted too
			Unknown: &firewall.Unknown{Profile: "kid"},
		}
	}
	if err := apply(rs(false)); err != nil {
		t.Fatal(err)
	}
	yt := []netip.Addr{netip.MustParseAddr(lab.BlockedV4), netip.MustParseAddr(lab.BlockedV6)}
	if err := sc.ServiceAddresses(ctx, "kid", "youtube", yt, time.Minute); err != nil {
		t.Fatal(err)
	}
	key := firewall.ServiceKey{Profile: "kid", Service: "youtube"}
	count := func() uint64 {
		t.Helper()
		got, err := sc.ServiceCounters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got[key]
	}
	// open connections to the service over both families, talked on
	open := map[string]net.Conn{}
	for _, addr := range []string{lab.BlockedV4, lab.BlockedV6} {
		c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(addr, lab.EchoPort), time.Second)
		if err != nil {
			t.Fatalf("the child reaches the service at %s before its time is used up: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		open[addr] = c
	}
	before := count()
	for addr, c := range open {
		for range 10 {
			if err := lab.Echo(c, strings.Repeat("y", 500)); err != nil {
				t.Fatalf("talk to the service at %s: %v", addr, err)
			}
		}
		after := count()
		if after < before+5000 {
			t.Fatalf("the service counted %d bytes after 5,000 sent to %s, %d before", after, addr, before)
		}
		before = after
	}
	// one UDP flow of several datagrams, as QUIC's: its first packet
	// starts the flow, the next ones are the established flow's
	u, err := l.Dial(l.Child.NS, "udp", net.JoinHostPort(lab.BlockedV4, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range 5 {
		if err := udpEcho(u, strings.Repeat("q", 1000)); err != nil {
			t.Fatalf("UDP to the service: %v", err)
		}
	}
	if after := count(); after <= before {
		t.Fatalf("UDP to the service (QUIC's way) was not counted: %d bytes, %d before", after, before)
	} else {
		before = after
	}
	// an unknown device of the profile counts too
	g, err := l.Dial(l.Guest.NS, "tcp", net.JoinHostPort(lab.BlockedV4, lab.EchoPort), time.Second)
	if err != nil {
		t.Fatalf("the guest reaches the service: %v", err)
	}
	for range 10 {
		if err := lab.Echo(g, strings.Repeat("g", 500)); err != nil {
			t.Fatalf("the guest talks to the service: %v", err)
		}
	}
	g.Close()
	if after := count(); after < before+5000 {
		t.Fatalf("the service counted %d bytes after the guest sent it 5,000, %d before: unknown devices of the profile escape", after, before)
	} else {
		before = after
	}
	Talk(t, l) // 5,000 bytes to the other server
	if after := count(); after-before >= 5000 {
		t.Fatalf("traffic to another site counted for the service: %d bytes, %d before", after, before)
	}

	// used up: open connections end, new ones fail, the rest stays
	if err := apply(rs(true)); err != nil {
		t.Fatal(err)
	}
	for addr, c := range open {
		if err := lab.Echo(c, "after"); err == nil {
			t.Errorf("the child's open connection to the service at %s still works once its time is used up", addr)
		}
	}
	for _, addr := range []string{lab.BlockedV4, lab.BlockedV6} {
		if err := l.TCP(l.Child.NS, addr); err == nil {
			t.Errorf("the child opened a new connection to the service at %s with its time used up", addr)
		}
	}
	if err := l.UDP(l.Child.NS, lab.BlockedV4); err == nil {
		t.Error("UDP to the service got through with its time used up")
	}
	for _, addr := range []string{lab.InternetV4, lab.InternetV6} {
		if err := l.TCP(l.Child.NS, addr); err != nil {
			t.Errorf("another site at %s failed while only the service is used up: %v", addr, err)
		}
	}

	// a grant: counted again, the learned addresses kept
	if err := apply(rs(false)); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{lab.BlockedV4, lab.BlockedV6} {
		if err := l.TCP(l.Child.NS, addr); err != nil {
			t.Errorf("the service at %s is still refused after a grant: %v", addr, err)
		}
	}
	if got := count(); got == 0 {
		t.Error("after a grant, the service's traffic is no longer counted")
	}

	// another site resolves to the service's IPv6 address (a front end
	// both use): it leaves the service's, and stays reachable when the
	// time is used up again
	if err := sc.ForgetServiceAddresses(ctx, "kid", "youtube", yt[1:]); err != nil {
		t.Fatal(err)
	}
	if err := apply(rs(true)); err != nil {
		t.Fatal(err)
	}
	if err := l.TCP(l.Child.NS, lab.BlockedV4); err == nil {
		t.Error("the service's own address is reachable with its time used up")
	}
	if err := l.TCP(l.Child.NS, lab.BlockedV6); err != nil {
		t.Errorf("an address another site shares was refused with the service: %v", err)
	}
}

// udpEcho sends a datagram on a connected UDP socket and waits a second
// for it to come back.
func udpEcho(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg)+1)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != msg {
		return fmt.Errorf("udp echo returned %d bytes, sent %d", n, len(msg))
	}
	return nil
}
