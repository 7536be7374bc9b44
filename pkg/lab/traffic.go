package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EchoPort is where the internet namespace echoes TCP lines and UDP
// datagrams back.
const EchoPort = "8080"

// DoTPort is DNS over TLS; the internet namespace echoes on it too, so that
// a refused connection can only come from curfew.
const DoTPort = "853"

// StreamPort is where the internet namespace sends data, as fast as the
// connection takes it, to whoever connects (see Stream).
const StreamPort = "8081"

// FakeDoH is an internet-side address that plays a public DNS-over-HTTPS
// resolver (echoing on port 443), for configs that list it as doh_address.
const FakeDoH = "198.51.100.44"

// Serve starts TCP and UDP echo servers on every internet-side address.
// They stop when ctx ends.
func (l *Lab) Serve(ctx context.Context) error {
	for _, addr := range []string{
		net.JoinHostPort(InternetV4, EchoPort), net.JoinHostPort(InternetV6, EchoPort),
		net.JoinHostPort(BlockedV4, EchoPort), net.JoinHostPort(BlockedV6, EchoPort),
		net.JoinHostPort(VideoV4, EchoPort), net.JoinHostPort(VideoV6, EchoPort),
		net.JoinHostPort(InternetV4, DoTPort), net.JoinHostPort(InternetV6, DoTPort),
		net.JoinHostPort(FakeDoH, "443"),
	} {
		var ln net.Listener
		var pc net.PacketConn
		err := l.In(l.Internet, func() error {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				return err
			}
			pc, err = net.ListenPacket("udp", addr)
			return err
		})
		if err != nil {
			return fmt.Errorf("serve %s: %w", addr, err)
		}
		go func() { <-ctx.Done(); ln.Close(); pc.Close() }()
		go acceptLoop(ln)
		go udpEcho(pc)
	}
	for _, addr := range []string{InternetV4, InternetV6, CaptiveAnswer} {
		if err := l.ServeHTTP(ctx, l.Internet, net.JoinHostPort(addr, "80"), http.HandlerFunc(probeAnswer)); err != nil {
			return err
		}
	}
	for _, addr := range []string{InternetV4, InternetV6, VideoV4, VideoV6} {
		var ln net.Listener
		err := l.In(l.Internet, func() error {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort(addr, StreamPort))
			return err
		})
		if err != nil {
			return fmt.Errorf("serve the stream on %s: %w", addr, err)
		}
		go func() { <-ctx.Done(); ln.Close() }()
		go sendLoop(ln)
	}
	return nil
}

// sendLoop sends zeros to each connection until it fails.
func sendLoop(ln net.Listener) {
	chunk := make([]byte, 32<<10)
	serveEach(ln, func(c net.Conn) {
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
}

// Stream is a download from the internet's StreamPort, read as fast as
// it arrives.
type Stream struct {
	c     net.Conn
	bytes atomic.Int64
}

// Stream opens a download from addr's StreamPort in namespace ns. Its
// receive buffer is small (8 KB asked, the kernel doubles it), so that
// what Rates counts is what arrived then: a reader held back by a busy
// machine cannot find seconds of data waiting in the socket.
func (l *Lab) Stream(ns, addr string) (*Stream, error) {
	var c net.Conn
	err := l.In(ns, func() error {
		d := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10) })
			return errors.Join(err, serr)
		}}
		var err error
		c, err = d.Dial("tcp", net.JoinHostPort(addr, StreamPort))
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &Stream{c: c}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			s.bytes.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	return s, nil
}

// Bytes is how much the stream has brought so far.
func (s *Stream) Bytes() int64 { return s.bytes.Load() }

// Close ends the download.
func (s *Stream) Close() { s.c.Close() }

// Rates measures, over d, the rate of each stream in bits per second.
func Rates(d time.Duration, streams ...*Stream) []float64 {
	before := make([]int64, len(streams))
	for i, s := range streams {
		before[i] = s.Bytes()
	}
	began := time.Now()
	time.Sleep(d)
	took := time.Since(began).Seconds()
	out := make([]float64, len(streams))
	for i, s := range streams {
		out[i] = float64(s.Bytes()-before[i]) * 8 / took
	}
	return out
}

// probeAnswer answers as the hosts behind the connectivity checks of
// phones and laptops do when the internet is there: Android's
// /generate_204 with 204, Apple's /hotspot-detect.html with "Success";
// anything else with InternetAnswer.
func probeAnswer(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/generate_204":
		w.WriteHeader(http.StatusNoContent)
	case "/hotspot-detect.html":
		fmt.Fprint(w, "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>")
	default:
		fmt.Fprintln(w, InternetAnswer)
	}
}

// InternetAnswer is the body of the internet's plain-HTTP servers.
const InternetAnswer = "the internet"

// ServeHTTP serves h on addr inside namespace ns until ctx ends.
func (l *Lab) ServeHTTP(ctx context.Context, ns, addr string, h http.Handler) error {
	var ln net.Listener
	if err := l.In(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return fmt.Errorf("serve http %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go srv.Serve(ln)
	return nil
}

// Get fetches url from inside namespace ns (no redirects followed, no
// proxy) and returns the status and up to 64 KiB of the body.
func (l *Lab) Get(ns, url string) (int, string, error) {
	return l.Do(ns, http.MethodGet, url, "")
}

// Do sends a request from inside namespace ns; body, when given, is a
// form.
func (l *Lab) Do(ns, method, url, form string) (int, string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return l.Dial(ns, network, addr, 2*time.Second)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 3 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, "", err
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(data), err
}

// acceptLoop echoes each connection.
func acceptLoop(ln net.Listener) { serveEach(ln, func(c net.Conn) { io.Copy(c, c) }) }

// serveEach hands each connection ln accepts to serve, closing it after,
// until ln is closed.
func serveEach(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// Dial opens a connection from inside namespace ns.
func (l *Lab) Dial(ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.In(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// TCP reports whether host ns can open a TCP connection to addr's echo
// server and get a line back within a second.
func (l *Lab) TCP(ns, addr string) error { return l.TCPPort(ns, addr, EchoPort) }

// TCPPort is TCP on another port.
func (l *Lab) TCPPort(ns, addr, port string) error {
	c, err := l.Dial(ns, "tcp", net.JoinHostPort(addr, port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return Echo(c, "hello")
}

// UDP reports whether a datagram from ns to addr's echo server comes back.
func (l *Lab) UDP(ns, addr string) error {
	c, err := l.Dial(ns, "udp", net.JoinHostPort(addr, EchoPort), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ping" {
		return fmt.Errorf("udp echo returned %q", buf[:n])
	}
	return nil
}

// Echo sends one line on an open connection and waits a second for it to
// come back.
func Echo(c net.Conn, line string) error {
	c.SetDeadline(time.Now().Add(time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintln(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return errors.New("echo mismatch")
	}
	return nil
}

// Dig asks resolver for ProbeName from namespace ns with dig (over UDP, or
// TCP with tcp set) and returns the first answer.
func (l *Lab) Dig(ctx context.Context, ns, resolver string, tcp bool) (string, error) {
	args := []string{"+short", "+time=1", "+tries=1", "@" + resolver, ProbeName, "A"}
	if tcp {
		args = append(args, "+tcp")
	}
	out, err := l.Exec(ctx, ns, "dig", args...)
	if err != nil {
		return "", fmt.Errorf("dig @%s: %v: %s", resolver, err, strings.TrimSpace(out))
	}
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return first, nil
}

// DHCP sends a DHCPDISCOVER from namespace ns's eth0 and reports whether a
// DHCPOFFER comes back from the router's dnsmasq within two seconds. DHCP
// goes to the router itself, never through the forward hook: curfew must
// leave it alone even for an offline device.
func (l *Lab) DHCP(ns string, mac net.HardwareAddr) error {
	var pc net.PacketConn
	err := l.In(ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); serr != nil {
					return
				}
				if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); serr != nil {
					return
				}
				serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, "eth0")
			})
			return serr
		}}
		var err error
		pc, err = lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
		return err
	})
	if err != nil {
		return fmt.Errorf("dhcp client socket: %w", err)
	}
	defer pc.Close()
	xid := []byte{0x63, 0x75, 0x72, 0x66} // "curf"
	msg := make([]byte, 240)
	msg[0], msg[1], msg[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte addresses
	copy(msg[4:8], xid)
	msg[10] = 0x80 // broadcast flag: answer to 255.255.255.255
	copy(msg[28:34], mac)
	copy(msg[236:240], []byte{99, 130, 83, 99})      // magic cookie
	msg = append(msg, 53, 1, 1, 255)                 // DHCPDISCOVER, end
	msg = append(msg, make([]byte, 300-len(msg))...) // BOOTP's minimum size
	if _, err := pc.WriteTo(msg, &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
		return err
	}
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no DHCP offer: %w", err)
		}
		if n >= 240 && buf[0] == 2 && string(buf[4:8]) == string(xid) {
			return nil
		}
	}
}

// Query asks resolver for name (type A, AAAA, …) from namespace ns with
// dig and returns the answer records' data and the response status
// (NOERROR, NXDOMAIN, …).
func (l *Lab) Query(ctx context.Context, ns, resolver, name, qtype string) ([]string, string, error) {
	out, err := l.Exec(ctx, ns, "dig", "+time=1", "+tries=1", "+noall", "+comments", "+answer", "@"+resolver, name, qtype)
	if err != nil {
		return nil, "", fmt.Errorf("dig %s @%s: %v: %s", name, resolver, err, strings.TrimSpace(out))
	}
	var answers []string
	status := ""
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			status = strings.TrimRight(strings.Fields(line[i+8:])[0], ",")
			continue
		}
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 5 {
			answers = append(answers, f[3]+" "+f[4])
		}
	}
	return answers, status, nil
}

// ForgedMACFlood sends UDP datagrams from the child to the internet's
// address, each to a new port (a new flow) and from one of macs forged
// source MACs in turn — what a child on a wired port can do — until stop
// is closed: one datagram from each MAC at once, then about 50,000 a
// second (a flood, not a stall of both cores). It says how many it sent.
func (l *Lab) ForgedMACFlood(macs int, stop <-chan struct{}) (int, error) {
	out, err := l.Exec(context.Background(), l.Router, "cat", "/sys/class/net/br-lan/address")
	if err != nil {
		return 0, fmt.Errorf("the router's MAC: %v: %s", err, out)
	}
	router, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		return 0, err
	}
	src := netip.MustParseAddr(l.Child.IPv4).As4()
	dst := netip.MustParseAddr(InternetV4).As4()
	sent := 0
	err = l.In(l.Child.NS, func() error {
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
		for i := 0; ; i++ {
			select {
			case <-stop:
				return nil
			default:
			}
			m := i % macs
			forged := net.HardwareAddr{0x02, 0xf0, 0, byte(m >> 16), byte(m >> 8), byte(m)}
			if err := unix.Sendto(fd, udpFrame(router, forged, src, dst, uint16(1024+i%60000)), 0, to); err == nil {
				sent++
			}
			// the first round at once, so that every forged MAC has
			// been seen however loaded the machine; then paced
			if i >= macs && i%64 == 63 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	return sent, err
}

// udpFrame is an Ethernet frame carrying an IPv4 UDP datagram (no UDP
// checksum, which IPv4 allows).
func udpFrame(dst, src net.HardwareAddr, from, to [4]byte, port uint16) []byte {
	payload := []byte("flood")
	f := make([]byte, 0, 14+20+8+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = append(f, 0x08, 0x00)
	ip := []byte{0x45, 0, 0, byte(20 + 8 + len(payload)), 0, 0, 0, 0, 64, 17, 0, 0}
	ip = append(append(ip, from[:]...), to[:]...)
	var sum uint32
	for i := 0; i < len(ip); i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	f = append(f, ip...)
	f = binary.BigEndian.AppendUint16(f, 40000)
	f = binary.BigEndian.AppendUint16(f, port)
	f = binary.BigEndian.AppendUint16(f, uint16(8+len(payload)))
	f = append(f, 0, 0)
	return append(f, payload...)
}

// ParentTries has the parent open n new connections to the internet and
// resolve n names at the router, 50 ms apart, each within what a person
// waits for (0.5 s to connect, before a lost SYN's retransmission; dig's
// 1 s), and says what failed.
func (l *Lab) ParentTries(ctx context.Context, n int) []string {
	var failed []string
	for range n {
		if c, err := l.Dial(l.Parent.NS, "tcp", net.JoinHostPort(InternetV4, EchoPort), 500*time.Millisecond); err != nil {
			failed = append(failed, "connect: "+err.Error())
		} else {
			c.Close()
		}
		if _, err := l.Dig(ctx, l.Parent.NS, RouterV4, false); err != nil {
			failed = append(failed, "DNS: "+err.Error())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return failed
}
