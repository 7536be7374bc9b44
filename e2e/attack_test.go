package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"curfew/pkg/config"
	"curfew/pkg/lab"
)

// attackConfig: the child in a profile with a block, a parent without
// rules, and unknown devices (the guest) in an allowlist profile. Filter
// ports: kid 5453, grownup 5454 (no rules: no filter), little 5455.
// flowLimit is the flow_limit option.
func attackConfig(l *lab.Lab, flowLimit int) string {
	return fmt.Sprintf(`config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'little'
	option flow_limit '%d'

config profile 'kid'
	list block 'blocked.test'

config profile 'grownup'

config profile 'little'
	option allowlist '1'
	list allow 'allowed.test'
	list allow '%s'
	list block '%s'

config device
	option mac '%s'
	option name 'Kid phone'
	option profile 'kid'

config device
	option mac '%s'
	option name 'Parent laptop'
	option profile 'grownup'
`, flowLimit, lab.BlockedName, lab.BlockedNet4, l.Child.MAC, l.Parent.MAC)
}

// dnsQuery builds a query without EDNS.
func dnsQuery(t testing.TB, name string, qtype dnsmessage.Type) []byte {
	t.Helper()
	n, err := dnsmessage.NewName(name)
	if err != nil {
		t.Fatal(err)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x7777, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: n, Type: qtype, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exchange sends msg from namespace ns over UDP or TCP and returns the raw
// answer, or an error when none came within the timeout.
func exchange(l *lab.Lab, ns, network, addr string, msg []byte, timeout time.Duration) ([]byte, error) {
	c, err := l.Dial(ns, network, addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	return roundTrip(c, network, msg)
}

func roundTrip(c net.Conn, network string, msg []byte) ([]byte, error) {
	if network == "tcp" {
		msg = append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	if network == "tcp" {
		if _, err := readFull(c, buf[:2]); err != nil {
			return nil, err
		}
		n := int(buf[0])<<8 | int(buf[1])
		_, err := readFull(c, buf[:n])
		return buf[:n], err
	}
	n, err := c.Read(buf)
	return buf[:n], err
}

func readFull(c net.Conn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, err := c.Read(b[got:])
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// verdict sums up an answer: "NOERROR A 1.2.3.4", "REFUSED", …
func verdict(t testing.TB, resp []byte) string {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("unparsable answer: %v", err)
	}
	out := strings.TrimPrefix(m.RCode.String(), "RCode")
	for _, a := range m.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			out += " A " + netip.AddrFrom4(r.A).String()
		case *dnsmessage.AAAAResource:
			out += " AAAA " + netip.AddrFrom16(r.AAAA).String()
		}
	}
	return out
}

// TestChildAttacks attacks curfew from the child's namespace, one hole of
// issue 17 at a time. Each check failed against the code before the fix.
func TestChildAttacks(t *testing.T) {
	l := newLab(t, "cfa1")
	ctx := context.Background()
	router53 := net.JoinHostPort(lab.RouterV4, "53")

	// A DNS flow that the child opens before curfew starts: one UDP
	// socket, one source port, to an outside resolver.
	stale, err := l.Dial(l.Child.NS, "udp", net.JoinHostPort(lab.InternetV4, "53"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	stale.SetDeadline(time.Now().Add(2 * time.Second))
	resp, err := roundTrip(stale, "udp", dnsQuery(t, lab.ProbeName+".", dnsmessage.TypeA))
	if err != nil || verdict(t, resp) != "Success A "+lab.OutsideAnswer {
		t.Fatalf("before curfew, the outside resolver answers: %v %v", resp, err)
	}

	// The kernel's limit on new connections is off here: the daemon's
	// own defences must hold without it, and it would cut the child's
	// floods short (TestAFloodOfNewFlowsLeavesTheHouseOnline has it on).
	d := start(t, l, attackConfig(l, 0))

	t.Run("a DNS flow opened before the redirect is redirected too", func(t *testing.T) {
		var got string
		lab.WaitFor(3*time.Second, func() bool {
			stale.SetDeadline(time.Now().Add(time.Second))
			resp, err := roundTrip(stale, "udp", dnsQuery(t, lab.ProbeName+".", dnsmessage.TypeA))
			if err == nil {
				got = verdict(t, resp)
			}
			return got == "Success A "+lab.RouterAnswer
		})
		if got != "Success A "+lab.RouterAnswer {
			t.Errorf("the child's old DNS flow got %q, want the router's answer (through the filter)", got)
		}
	})

	t.Run("another profile's filter port does not answer the child", func(t *testing.T) {
		q := dnsQuery(t, "other.test.", dnsmessage.TypeA)
		if resp, err := exchange(l, l.Child.NS, "udp", router53, q, 2*time.Second); err != nil {
			t.Fatalf("the redirect itself must work: %v", err)
		} else if v := verdict(t, resp); v != "Success A "+lab.InternetV4 {
			t.Fatalf("child through the redirect: %s", v)
		}
		for _, port := range []string{"5455", "5453"} {
			for _, target := range []struct{ network, addr string }{
				{"udp", net.JoinHostPort(lab.RouterV4, port)},
				{"udp", net.JoinHostPort(lab.RouterV6, port)},
				{"tcp", net.JoinHostPort(lab.RouterV4, port)},
				{"tcp", net.JoinHostPort(lab.RouterV6, port)},
			} {
				if resp, err := exchange(l, l.Child.NS, target.network, target.addr, q, 500*time.Millisecond); err == nil {
					t.Errorf("child asked %s %s directly and got %s", target.network, target.addr, verdict(t, resp))
				}
			}
		}
	})

	t.Run("names the filter cannot read are refused, never forwarded", func(t *testing.T) {
		resp, err := exchange(l, l.Guest.NS, "udp", router53, dnsQuery(t, "x y.other.test.", dnsmessage.TypeA), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if v := verdict(t, resp); v != "Refused" {
			t.Errorf("allowlisted guest asks for a name with a space: %s, want Refused", v)
		}
		reach(t, l, "an address only an unreadable name resolved to", l.Guest.NS, false, func() error { return l.TCP(l.Guest.NS, lab.InternetV4) })
		for _, name := range []string{"-x.blocked.test.", "x-.blocked.test.", "WWW.Blocked.Test.", "_x.blocked.test."} {
			resp, err := exchange(l, l.Child.NS, "udp", router53, dnsQuery(t, name, dnsmessage.TypeA), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if v := verdict(t, resp); v != "Success A 0.0.0.0" {
				t.Errorf("child asks for %s: %s, want the block answer", name, v)
			}
		}
	})

	t.Run("an allowed name that resolves into a blocked prefix stays blocked", func(t *testing.T) {
		resp, err := exchange(l, l.Guest.NS, "udp", router53, dnsQuery(t, lab.BlockedName+".", dnsmessage.TypeA), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if v := verdict(t, resp); v != "Success A "+lab.BlockedV4 {
			t.Fatalf("guest resolves an allowed name: %s", v)
		}
		reach(t, l, "a blocked address an allowed name resolved to", l.Guest.NS, false, func() error { return l.TCP(l.Guest.NS, lab.BlockedV4) })
	})

	t.Run("a UDP answer is no larger than the query allows", func(t *testing.T) {
		resp, err := exchange(l, l.Child.NS, "udp", router53, dnsQuery(t, lab.BigName+".", dnsmessage.TypeTXT), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var h dnsmessage.Header
		var p dnsmessage.Parser
		if h, err = p.Start(resp); err != nil {
			t.Fatal(err)
		}
		if len(resp) > 512 || !h.Truncated {
			t.Errorf("a query without EDNS got %d bytes (truncated %v); want at most 512 and the TC bit", len(resp), h.Truncated)
		}
		resp, err = exchange(l, l.Child.NS, "tcp", router53, dnsQuery(t, lab.BigName+".", dnsmessage.TypeTXT), 2*time.Second)
		if err != nil || len(resp) < 750 {
			t.Errorf("over TCP the whole answer: %d bytes, %v", len(resp), err)
		}
	})

	t.Run("an offline device resolves only local names and captive probes", func(t *testing.T) {
		if out, code := d.cli(t, "pause", "kid"); code != 0 {
			t.Fatalf("pause: %s", out)
		}
		defer d.cli(t, "resume", "kid")
		for name, want := range map[string]string{
			"tunnel.fine.test.":  "Refused",
			"captive.apple.com.": "Success A " + lab.CaptiveAnswer,
		} {
			for _, network := range []string{"udp", "tcp"} {
				resp, err := exchange(l, l.Child.NS, network, router53, dnsQuery(t, name, dnsmessage.TypeA), 2*time.Second)
				if err != nil {
					t.Fatalf("%s over %s: %v", name, network, err)
				}
				if v := verdict(t, resp); v != want {
					t.Errorf("paused child asks for %s over %s: %s, want %s", name, network, v, want)
				}
			}
		}
		if out, _ := d.cli(t, "log", "kid"); !strings.Contains(out, "device offline") {
			t.Errorf("the log does not say why:\n%s", out)
		}
	})

	t.Run("thousands of idle TCP connections leave the control socket and UDP DNS working", func(t *testing.T) {
		pid := d.cmd.Process.Pid
		lim := unix.Rlimit{Cur: 1024, Max: 1024} // OpenWrt's default
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			t.Fatal(err)
		}
		// 50 more IPv6 addresses for the child, 40 connections from each.
		var srcs []string
		for i := range 50 {
			a := fmt.Sprintf("2001:db8:1::%x", 0x1000+i)
			if _, err := l.Exec(ctx, l.Child.NS, "ip", "-6", "addr", "add", a+"/64", "dev", "eth0", "nodad"); err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, a)
		}
		var mu sync.Mutex
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		var wg sync.WaitGroup
		for _, src := range srcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.In(l.Child.NS, func() error {
					dialer := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
					for range 40 {
						c, err := dialer.Dial("tcp", net.JoinHostPort(lab.RouterV6, "53"))
						if err != nil {
							continue
						}
						mu.Lock()
						conns = append(conns, c)
						mu.Unlock()
					}
					return nil
				})
			}()
		}
		wg.Wait()
		t.Logf("%d TCP connections to the DNS filter opened", len(conns))
		began := time.Now()
		if out, code := d.cli(t, "status"); code != 0 {
			t.Errorf("status under attack: exit %d: %s", code, out)
		}
		t.Logf("status answered in %v", time.Since(began))
		began = time.Now()
		resp, err := exchange(l, l.Child.NS, "udp", router53, dnsQuery(t, "fine.test.", dnsmessage.TypeA), 2*time.Second)
		if err != nil {
			t.Errorf("UDP DNS under attack: %v", err)
		} else {
			t.Logf("child's UDP query answered in %v (%s)", time.Since(began), verdict(t, resp))
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		t.Logf("daemon: %d descriptors open, RSS %d kB", len(fds), lab.RSSKB(pid))
		if len(fds) > 400 {
			t.Errorf("the daemon holds %d descriptors for idle connections", len(fds))
		}
	})

	t.Run("UDP floods from forged IPv6 sources do not stall DNS", func(t *testing.T) {
		pid := d.cmd.Process.Pid
		q := dnsQuery(t, "fine.test.", dnsmessage.TypeA)
		v4before, v6before := udpReceiveDrops(t, l)
		stop := make(chan struct{})
		done := make(chan error, 1)
		var sent int
		go func() {
			var err error
			sent, err = forgedFlood(l, q, stop)
			done <- err
		}()
		time.Sleep(2 * time.Second)
		var worst time.Duration
		failed := 0
		for range 10 {
			began := time.Now()
			if _, err := exchange(l, l.Child.NS, "udp", router53, q, time.Second); err != nil {
				failed++
			}
			worst = max(worst, time.Since(began))
			time.Sleep(100 * time.Millisecond)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		v4after, v6after := udpReceiveDrops(t, l)
		t.Logf("the router's kernel dropped %d IPv4 and %d IPv6 datagrams for full receive queues", v4after-v4before, v6after-v6before)
		t.Logf("%d forged queries; the child's own queries: %d of 10 unanswered, slowest %v; daemon RSS %d kB", sent, failed, worst, lab.RSSKB(pid))
		if failed > 1 {
			t.Errorf("%d of 10 queries from the child's real address went unanswered during the flood", failed)
		}
	})
}

// forgedFlood sends DNS query q to the router from the child, each
// datagram from another forged IPv6 source of the child's /64 (free to
// take within it, and a new flow each), until stop is closed. It says how
// many it sent.
func forgedFlood(l *lab.Lab, q []byte, stop chan struct{}) (int, error) {
	sent := 0
	err := l.In(l.Child.NS, func() error {
		dst := &unix.SockaddrInet6{Port: 53, Addr: netip.MustParseAddr(lab.RouterV6).As16()}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return nil
			default:
			}
			// A new socket per forged source: bind needs one.
			s, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			unix.SetsockoptInt(s, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			src := netip.MustParseAddr(fmt.Sprintf("2001:db8:1::f:%x:%x", i>>16&0xffff, i&0xffff)).As16()
			if err := unix.Bind(s, &unix.SockaddrInet6{Port: 40000, Addr: src}); err == nil {
				if unix.Sendto(s, q, 0, dst) == nil {
					sent++
				}
			}
			unix.Close(s)
		}
	})
	return sent, err
}

// TestAFloodOfNewFlowsLeavesTheHouseOnline: a child flooding the router
// with queries from forged sources makes a new connection-table entry of
// each; OpenWrt's table holds 16,384, and a full one refuses every
// device's new connections. With flow_limit at its default, the child's
// entries stay within its allowance and the parent's new connections
// and queries keep working all along.
func TestAFloodOfNewFlowsLeavesTheHouseOnline(t *testing.T) {
	l := newLab(t, "cfa2")
	ctx := context.Background()
	cfg := attackConfig(l, config.DefaultFlowLimit)
	d := startIn(t, l, t.TempDir(), cfg, "--minute-length", "1s")
	count := func() int {
		out, err := l.Exec(ctx, l.Router, "conntrack", "-C")
		n, perr := strconv.Atoi(strings.TrimSpace(out))
		if err != nil || perr != nil {
			t.Fatalf("conntrack -C: %v: %s", err, out)
		}
		return n
	}
	before := count()
	q := dnsQuery(t, "fine.test.", dnsmessage.TypeA)
	stop := make(chan struct{})
	done := make(chan error, 1)
	var sent int
	go func() {
		var err error
		sent, err = forgedFlood(l, q, stop)
		done <- err
	}()
	time.Sleep(time.Second)
	tcpFailed, dnsFailed := 0, 0
	for range 10 {
		if err := l.TCP(l.Parent.NS, lab.InternetV4); err != nil {
			tcpFailed++
		}
		if _, err := exchange(l, l.Parent.NS, "udp", net.JoinHostPort(lab.RouterV4, "53"), q, time.Second); err != nil {
			dnsFailed++
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	during := count()
	burst := config.DefaultFlowLimit * config.FlowBurst
	t.Logf("%d forged queries in about 2.5 s: connection table %d -> %d entries (the child's allowance: %d a second, %d at once); the parent's connections failed %d of 10, its queries %d of 10; daemon RSS %d kB",
		sent, before, during, config.DefaultFlowLimit, burst, tcpFailed, dnsFailed, lab.RSSKB(d.cmd.Process.Pid))
	if sent < 5*burst {
		t.Fatalf("only %d forged queries sent: no flood to limit", sent)
	}
	if most := before + burst + 5*config.DefaultFlowLimit + 100; during > most {
		t.Errorf("the child's flood took the connection table to %d entries, want at most %d", during, most)
	}
	if tcpFailed > 0 || dnsFailed > 0 {
		t.Errorf("during the child's flood the parent's connections failed %d of 10 times, its queries %d of 10", tcpFailed, dnsFailed)
	}
	// The daemon reads the kernel's counts every "minute" (a second here).
	var out string
	if !lab.WaitFor(5*time.Second, func() bool {
		out, _ = d.cli(t, "explain", "Kid phone")
		return strings.Contains(out, "new connections dropped today")
	}) {
		t.Errorf("explain does not tell of the dropped connections:\n%s", out)
	}
	t.Logf("explain: %s", out)
}

// udpReceiveDrops reads the router namespace's counters of UDP datagrams
// dropped because a socket's receive queue was full.
func udpReceiveDrops(t *testing.T, l *lab.Lab) (v4, v6 int) {
	out, err := l.Exec(context.Background(), l.Router, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		t.Fatalf("reading the router's UDP counters: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "Udp:" && names == nil:
			names = f[1:]
		case len(f) > 1 && f[0] == "Udp:":
			for i, n := range names {
				if n == "RcvbufErrors" && i+1 < len(f) {
					v4, _ = strconv.Atoi(f[i+1])
				}
			}
		case len(f) == 2 && f[0] == "Udp6RcvbufErrors":
			v6, _ = strconv.Atoi(f[1])
		}
	}
	return v4, v6
}

// TestARPRebindingAndANewAddress: at bedtime the child makes the router's
// neighbour entry for its address name the parent's MAC (forged ARP
// replies), lets the daemon read the table, and sets the entry right
// again. Its DNS stays refused — the kernel decides who is offline by MAC,
// not the daemon by address — and the bedtime page names the child, not
// the parent. And a device's brand-new address, for which the router has
// no neighbour entry yet (a phone's next IPv6 privacy address), gets its
// first DNS answer instead of being taken for a forged source.
func TestARPRebindingAndANewAddress(t *testing.T) {
	l := newLab(t, "cfa3")
	ctx := context.Background()
	d := start(t, l, l.SampleConfig("00:00", "24:00", ""))
	child, _ := net.ParseMAC(l.Child.MAC)
	parent, _ := net.ParseMAC(l.Parent.MAC)
	out, err := l.Exec(ctx, l.Router, "cat", "/sys/class/net/br-lan/address")
	router, perr := net.ParseMAC(strings.TrimSpace(out))
	if err != nil || perr != nil {
		t.Fatalf("the router's MAC: %v %v: %s", err, perr, out)
	}
	entry := func() string {
		out, _ := l.Exec(ctx, l.Router, "ip", "neigh", "show", l.Child.IPv4, "dev", "br-lan")
		return strings.TrimSpace(out)
	}
	// claim tells the router, from the child's port, that the child's
	// IPv4 address is at mac: an ARP reply nobody asked for. The kernel
	// takes a new address for an entry at most once a second (locktime).
	claim := func(mac net.HardwareAddr) {
		t.Helper()
		time.Sleep(1100 * time.Millisecond)
		if err := l.In(l.Child.NS, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(to.Addr[:], router)
			return unix.Sendto(fd, arpReply(router, child, mac, l.Child.IPv4, lab.RouterV4), 0, to)
		}); err != nil {
			t.Fatal(err)
		}
		if !lab.WaitFor(2*time.Second, func() bool { return strings.Contains(entry(), mac.String()) }) {
			t.Fatalf("the router's entry for %s did not take %s: %s", l.Child.IPv4, mac, entry())
		}
	}
	// the router has an entry for the child's address (it answered it)
	if _, status, err := l.Query(ctx, l.Child.NS, lab.RouterV4, lab.ProbeName, "A"); err != nil || status != "REFUSED" {
		t.Fatalf("the child's DNS at bedtime: %s %v, want REFUSED", status, err)
	}
	claim(parent)
	if out, code := d.cli(t, "reload"); code != 0 {
		t.Fatalf("reload: %s", out)
	}
	claim(child)

	if ans, status, err := l.Query(ctx, l.Child.NS, lab.RouterV4, lab.ProbeName, "A"); err != nil || status != "REFUSED" {
		t.Errorf("the child's DNS at bedtime after rebinding its address to the parent's MAC and back: %s %v %v, want REFUSED", status, ans, err)
	}
	if code, body, err := l.Get(l.Child.NS, "http://"+lab.InternetV4+"/generate_204"); err != nil || !strings.Contains(body, "Kid phone is offline.") {
		t.Errorf("the bedtime page after the rebinding: %d %v, want it to name the child:\n%s", code, err, body)
	}

	// The guest (an unknown device, online, its profile filtered) takes
	// a new IPv6 address and asks at once. It knows the router's MAC
	// from its first address, so it sends no neighbour solicitation: the
	// router has no entry for the new address.
	if _, err := l.Dig(ctx, l.Guest.NS, lab.RouterV6, false); err != nil {
		t.Fatal(err)
	}
	fresh := "2001:db8:1::7e57"
	if out, err := l.Exec(ctx, l.Guest.NS, "ip", "-6", "addr", "add", fresh+"/64", "dev", "eth0", "nodad"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	l.Exec(ctx, l.Router, "ip", "-6", "neigh", "del", fresh, "dev", "br-lan")
	out, err = l.Exec(ctx, l.Guest.NS, "dig", "+short", "+time=1", "+tries=1", "-b", fresh, "@"+lab.RouterV6, lab.ProbeName, "A")
	if got := strings.TrimSpace(out); err != nil || got != lab.RouterAnswer {
		t.Errorf("the guest's first query from a new address: %q %v, want the router's answer %s", got, err, lab.RouterAnswer)
	}
}

// arpReply is an Ethernet frame with an ARP reply from src saying that
// ip is at mac, sent to the router (to, at routerIP).
func arpReply(to, src, mac net.HardwareAddr, ip, routerIP string) []byte {
	f := append(append(append([]byte{}, to...), src...), 0x08, 0x06)
	f = append(f, 0, 1, 0x08, 0, 6, 4, 0, 2) // Ethernet, IPv4, reply
	sender, target := netip.MustParseAddr(ip).As4(), netip.MustParseAddr(routerIP).As4()
	f = append(append(f, mac...), sender[:]...)
	return append(append(f, to...), target[:]...)
}

// TestForgedMACsLeaveTheIdleParentOnline: the child floods new flows from
// 6,000 forged source MACs (a wired port allows it), more than the kernel
// keeps allowances for, while the parent's laptop — idle until then, so it
// holds no allowance yet — opens connections and resolves names. With the
// daemon's default flow_limit, each of the parent's succeeds at once, and
// the forged MACs together get one device's allowance.
func TestForgedMACsLeaveTheIdleParentOnline(t *testing.T) {
	l := newLab(t, "cfa4")
	ctx := context.Background()
	later := time.Now().In(london).Add(6 * time.Hour)
	start(t, l, l.SampleConfig(later.Format("15:04"), later.Add(time.Hour).Format("15:04"), ""))
	if out, err := l.Exec(ctx, l.Router, "conntrack", "-F"); err != nil {
		t.Fatalf("conntrack -F: %v: %s", err, out)
	}
	stop, done := make(chan struct{}), make(chan error, 1)
	var sent int
	begin := time.Now()
	go func() {
		var err error
		sent, err = l.ForgedMACFlood(6000, stop)
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	failed := l.ParentTries(ctx, 10)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	out, err := l.Exec(ctx, l.Router, "conntrack", "-L", "-p", "udp", "--orig-src", l.Child.IPv4, "--orig-dst", lab.InternetV4)
	if err != nil {
		t.Fatalf("conntrack -L: %v: %s", err, out)
	}
	flows := strings.Count(out, "udp ")
	rate, burst := config.DefaultFlowLimit, config.DefaultFlowLimit*config.FlowBurst
	t.Logf("%d frames from 6,000 forged MACs in %v made %d flows (one allowance: %d at once, %d a second); the parent: %d of 20 failed",
		sent, took.Round(time.Millisecond), flows, burst, rate, len(failed))
	if sent < 6000 {
		t.Fatalf("only %d frames sent: no flood", sent)
	}
	if most := burst + rate*int(took/time.Second+1) + 20; flows > most {
		t.Errorf("forged MACs made %d flows, want at most %d (one device's allowance)", flows, most)
	}
	for _, e := range failed {
		t.Errorf("the parent's laptop during the flood: %s", e)
	}
}
