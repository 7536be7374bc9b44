package dnsfilter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"curfew/pkg/services"
	"golang.org/x/sys/unix"

	"curfew/pkg/bind"
)

// The wire format is handled with golang.org/x/net/dns/dnsmessage, the
// parser behind Go's own resolver: about 100 kB on a MIPS router, where
// github.com/miekg/dns measured 3.3 MB (it brings crypto/tls and DNSSEC)
// and would have broken the 6 MB flash budget. Queries that are not
// filtered are relayed byte for byte, so EDNS, DNSSEC bits and IDs pass
// through untouched.

// Device identifies the sender of a query, for the log and the counters.
// What the query may get comes from the port it arrived on, which the
// kernel chose by the device's MAC: the profile's port, or Offline's.
type Device struct {
	MAC  string
	Name string
}

// Offline is the profile of the binding for devices offline now: the
// kernel sends there the DNS of every managed device inside one of its
// offline intervals, whatever its profile. It answers only the names an
// offline device needs (local names, the captive-portal probes) and
// refuses the rest, so that a DNS tunnel does not work at bedtime. The
// decision is the kernel's, by MAC and time: a source address the child
// rebound to another device's MAC (ARP) changes nothing. No UCI section
// can be called so.
const Offline = "(offline)"

// Options configure a Server.
type Options struct {
	// Identify maps a query's source address to its device; false means
	// the address belongs to no device on the LAN as far as the router
	// knows. Such UDP queries share an allowance of Strangers answers a
	// second; the rest are dropped unanswered (see handle).
	Identify func(netip.Addr) (Device, bool)
	// Allowed receives the addresses an allowlisted name resolved to, with
	// their TTL, so that the kernel lets the profile reach them.
	Allowed func(profile string, addrs []netip.Addr, ttl time.Duration)
	// Learned receives the addresses that a name of one of the profile's
	// counted services (Policy.Limited) resolved to, with their TTL, so
	// that the kernel counts the profile's time on the service; and, with
	// service "", those of the profile's other names, which no service's
	// count or refusal should take in.
	Learned func(profile, service string, addrs []netip.Addr, ttl time.Duration)
	Log     *slog.Logger
	// LogSize bounds the query log (entries); zero means 4096.
	LogSize int
}

// Server answers DNS for managed devices, one port per profile.
type Server struct {
	opts  Options
	log   *slog.Logger
	qlog  *QueryLog
	stats *Stats
	// timeout bounds one exchange with the upstream resolver.
	timeout time.Duration

	// pool keeps sockets to the upstream resolver open between queries.
	pool chan pooledConn
	// tcp caps the filter's TCP connections, in all and per source.
	tcp *connLimit
	// strangers bounds the answers to UDP queries whose source no
	// neighbour entry names yet (see handle).
	strangers bucket

	mu        sync.Mutex
	policies  map[string]*Policy
	listeners map[string]*listener // key: profile + "/" + interface
	upstream  string
}

type listener struct {
	port uint16
	// index is the interface's index when the listener was bound: an
	// interface created anew has another one (see bind.Index).
	index int
	// udp holds one socket per address family (see listen).
	udp []net.PacketConn
	ln  net.Listener
}

// close closes the listener's sockets, also those of one half opened.
func (l *listener) close() {
	for _, pc := range l.udp {
		pc.Close()
	}
	if l.ln != nil {
		l.ln.Close()
	}
}

// Strangers is the allowance of answers to UDP queries from addresses that
// no neighbour entry names: this many a second, twice as many at once.
const Strangers = 10

// bucket is a token bucket of Strangers a second.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends a token if there is one at now.
func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = 2 * Strangers
	} else {
		b.tokens = min(2*Strangers, b.tokens+now.Sub(b.last).Seconds()*Strangers)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// NewServer returns a server with no listeners yet (see Configure).
func NewServer(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.LogSize == 0 {
		opts.LogSize = 4096
	}
	if opts.Identify == nil {
		opts.Identify = func(a netip.Addr) (Device, bool) { return Device{MAC: a.String()}, true }
	}
	return &Server{
		opts: opts, log: log, qlog: NewQueryLog(opts.LogSize), stats: NewStats(), timeout: 2 * time.Second,
		pool:     make(chan pooledConn, 32),
		tcp:      newConnLimit(maxTCPConns, maxTCPPerSource),
		policies: map[string]*Policy{}, listeners: map[string]*listener{}, upstream: "127.0.0.1:53",
	}
}

// QueryLog returns the log of recent queries.
func (s *Server) QueryLog() *QueryLog { return s.qlog }

// Stats returns the per-device counters.
func (s *Server) Stats() *Stats { return s.stats }

// Binding is where one profile's filter listens.
type Binding struct {
	Profile string
	Port    uint16
	Policy  *Policy
}

// Configure sets the upstream resolver and the policies, and opens or
// closes listeners so that each profile listens on its port on every LAN
// interface (and only there: the sockets are bound to the interfaces, so the
// filter never answers on the WAN and is no open resolver).
func (s *Server) Configure(lan []string, upstream string, bindings []Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if upstream != "" {
		s.upstream = upstream
	}
	want := map[string]Binding{}
	s.policies = map[string]*Policy{}
	for _, b := range bindings {
		s.policies[b.Profile] = b.Policy
		for _, ifc := range lan {
			want[b.Profile+"/"+ifc] = b
		}
	}
	for key, l := range s.listeners {
		ifc := key[strings.LastIndexByte(key, '/')+1:]
		if b, ok := want[key]; !ok || b.Port != l.port || bind.Index(ifc) != l.index {
			l.close()
			delete(s.listeners, key)
		}
	}
	var errs []error
	for key, b := range want {
		if _, ok := s.listeners[key]; ok {
			continue
		}
		ifc := key[strings.LastIndexByte(key, '/')+1:]
		l, err := s.listen(b.Profile, ifc, b.Port)
		if err != nil {
			errs = append(errs, fmt.Errorf("dns filter for %s on %s port %d: %w", b.Profile, ifc, b.Port, err))
			continue
		}
		s.listeners[key] = l
	}
	return errors.Join(errs...)
}

// Listening reports whether profile has its listeners on every LAN
// interface; if not, the kernel must not send its DNS here.
func (s *Server) Listening(profile string, lan []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ifc := range lan {
		if s.listeners[profile+"/"+ifc] == nil {
			return false
		}
	}
	return true
}

// Close stops every listener.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, l := range s.listeners {
		l.close()
		delete(s.listeners, key)
	}
}

func (s *Server) listen(profile, ifc string, port uint16) (*listener, error) {
	index := bind.Index(ifc)
	if index == 0 {
		return nil, fmt.Errorf("no interface %s", ifc)
	}
	lc := bind.To(ifc)
	addr := fmt.Sprintf(":%d", port)
	l := &listener{port: port, index: index}
	// One UDP socket per family, not one dual-stack socket: a device can
	// forge IPv6 source addresses without end inside its /64, and such a
	// flood fills the receive queue it lands in; with its own queue it
	// cannot crowd out the IPv4 queries every device also sends.
	for _, network := range []string{"udp4", "udp6"} {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			if network == "udp6" && errors.Is(err, syscall.EAFNOSUPPORT) {
				continue // a kernel without IPv6
			}
			l.close()
			return nil, err
		}
		growReceiveBuffer(pc)
		l.udp = append(l.udp, pc)
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		l.close()
		return nil, err
	}
	l.ln = ln
	for _, pc := range l.udp {
		go s.serveUDP(profile, pc)
	}
	go s.serveTCP(profile, ln)
	return l, nil
}

// udpReceiveBuffer is the kernel's queue for each UDP socket of the filter
// (the default is about 200 kB): a burst of queries, or a flood the workers
// drain just as fast as it comes, waits there instead of being dropped,
// the real queries among it with it. It is memory only while it is full.
const udpReceiveBuffer = 1 << 20

// growReceiveBuffer raises the socket's receive buffer; as root past the
// system's limit (SO_RCVBUFFORCE), otherwise up to that limit.
func growReceiveBuffer(pc net.PacketConn) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReceiveBuffer)
	})
	if serr != nil {
		uc.SetReadBuffer(udpReceiveBuffer)
	}
}

// udpWorkers read the same socket side by side; each answers its query
// before reading the next, so an answer waiting for the upstream holds one
// worker, not the socket. (A goroutine per query measured slower.)
const udpWorkers = 16

func (s *Server) serveUDP(profile string, pc net.PacketConn) {
	send := nonBlockingSender(pc)
	for i := 0; i < udpWorkers; i++ {
		go func() {
			// One byte more than a query may have: a longer datagram is
			// cut to fit, and dropped, not relayed cut.
			buf := make([]byte, maxQuery+1)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				if n > maxQuery {
					continue
				}
				if resp := s.handle(profile, buf[:n], addrOf(from), false); resp != nil {
					send(resp, from)
				}
			}
		}()
	}
}

// nonBlockingSender returns a function that sends an answer without ever
// waiting for room in the socket's send buffer: when the buffer is full
// (answers queued for neighbours that do not answer), this answer is
// dropped and the client asks again, instead of every worker of the
// profile blocking behind the queue.
func nonBlockingSender(pc net.PacketConn) func([]byte, net.Addr) {
	uc, ok := pc.(*net.UDPConn)
	var raw syscall.RawConn
	if ok {
		raw, _ = uc.SyscallConn()
	}
	v6 := true
	if la, ok := pc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		v6 = false // an IPv4 socket, also the wildcard 0.0.0.0
	}
	return func(msg []byte, to net.Addr) {
		ua, ok := to.(*net.UDPAddr)
		if raw == nil || !ok {
			pc.WriteTo(msg, to)
			return
		}
		ip, _ := netip.AddrFromSlice(ua.IP)
		var sa unix.Sockaddr
		if v6 {
			sa = &unix.SockaddrInet6{Port: ua.Port, Addr: ip.As16()}
		} else {
			sa = &unix.SockaddrInet4{Port: ua.Port, Addr: ip.Unmap().As4()}
		}
		raw.Write(func(fd uintptr) bool {
			unix.Sendto(int(fd), msg, unix.MSG_DONTWAIT, sa) //nolint:errcheck // a full buffer drops this answer
			return true
		})
	}
}

// Limits of the filter's TCP side: DNS over TCP is a fallback for large
// answers, a handful of connections at a time in a home. Every connection
// holds a descriptor and a buffer, so an idle or slow client must not keep
// one long, nor many.
const (
	maxTCPConns     = 128
	maxTCPPerSource = 8
	tcpIdle         = 5 * time.Second
	// maxQuery bounds one query message, over UDP and TCP; a real query
	// (name, EDNS options, padding) is a few hundred bytes.
	maxQuery = 4096
)

func (s *Server) serveTCP(profile string, ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory: wait, doubling up to a
			// second, rather than spin on a listener that fails at once.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		src := addrOf(c.RemoteAddr())
		if !s.tcp.acquire(src) {
			c.Close()
			continue
		}
		go func() {
			defer s.tcp.release(src)
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(tcpIdle))
				q, err := readFramed(c, maxQuery)
				if err != nil {
					return
				}
				resp := s.handle(profile, q, src, true)
				if resp == nil || writeFramed(c, resp) != nil {
					return
				}
			}
		}()
	}
}

// connLimit counts open connections, in all and per source address.
type connLimit struct {
	mu         sync.Mutex
	total, max int
	perSrc     map[netip.Addr]int
	maxPerSrc  int
}

func newConnLimit(total, perSource int) *connLimit {
	return &connLimit{max: total, maxPerSrc: perSource, perSrc: map[netip.Addr]int{}}
}

func (l *connLimit) acquire(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.perSrc[src] >= l.maxPerSrc {
		return false
	}
	l.total++
	l.perSrc[src]++
	return true
}

func (l *connLimit) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perSrc[src]--; l.perSrc[src] <= 0 {
		delete(l.perSrc, src)
	}
}

// readFramed reads one length-prefixed DNS message of at most limit bytes.
// The buffer grows with the bytes that really arrive, so a length prefix
// alone reserves nothing.
func readFramed(r io.Reader, limit int) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > limit {
		return nil, fmt.Errorf("message of %d bytes (limit %d)", n, limit)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFramed(w io.Writer, msg []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
	return err
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) policy(profile string) *Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policies[profile]
}

// handle answers one query message; nil means drop it (not even a header
// could be read, or the source is no device on the LAN). A malformed
// packet costs a parse attempt, nothing more.
//
// Everything in a query is the child's: a name the filter cannot read as
// a host name is refused, never forwarded, so that what reaches the
// upstream resolver (and, in allowlist mode, the kernel's allowed set) has
// always been decided on.
func (s *Server) handle(profile string, raw []byte, src netip.Addr, tcp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(raw)
	if err != nil || h.Response {
		return nil
	}
	// A UDP query from an address that no neighbour entry names is
	// either forged or a device's brand-new address (a phone's next IPv6
	// privacy address, used before the router ever sent to it). The
	// first must not be answered in bulk: each answer waits for a
	// neighbour that never replies, holding the socket's send buffer,
	// and is reflected at whoever owns the address. The second must be
	// answered, or the address never gets a neighbour entry at all. So
	// such queries share a small allowance; an answer makes the kernel
	// resolve the address, and a real device is known from then on.
	dev, known := s.opts.Identify(src)
	if !known && !tcp && !s.strangers.take(time.Now()) {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || h.OpCode != 0 {
		return reply(h, nil, dnsmessage.RCodeFormatError, nil)
	}
	q := qs[0]
	limit := maxUDPAnswer(&p, tcp)
	name, ok := QueryName(q.Name.String())
	pol := s.policy(profile)
	var d Decision
	switch {
	case !ok:
		d = Decision{Action: Refuse, By: "not a host name"}
	case pol == nil:
		d = Decision{Action: Refuse, By: "no policy for this port"}
	case profile == Offline && !offlineName(name):
		d = Decision{Action: Refuse, By: "device offline"}
	default:
		d = pol.Decide(name)
	}
	entry := Entry{Time: time.Now(), MAC: dev.MAC, Device: dev.Name, Profile: profile, Name: name,
		Type: strings.TrimPrefix(q.Type.String(), "Type"), Verdict: "allowed", By: d.By}
	if !ok {
		entry.Name = q.Name.String()
	}
	var resp []byte
	switch d.Action {
	case Block:
		resp = blocked(h, q)
		entry.Verdict = "blocked"
	case NXDomain:
		resp = reply(h, &q, dnsmessage.RCodeNameError, nil)
		entry.Verdict = "blocked"
	case Refuse:
		resp = reply(h, &q, dnsmessage.RCodeRefused, nil)
		entry.Verdict = "refused"
	case Rewrite:
		resp = s.rewrite(h, q, d.Target, tcp)
		entry.Verdict = "rewritten to " + d.Target
	default:
		resp = s.forward(raw, tcp)
		if resp == nil {
			resp = reply(h, &q, dnsmessage.RCodeServerFailure, nil)
		} else {
			s.learn(pol, profile, name, d, resp)
		}
	}
	s.qlog.Add(entry)
	s.stats.Count(dev.MAC, name, entry.Verdict != "allowed" && !strings.HasPrefix(entry.Verdict, "rewritten"), d.Bypass)
	if len(resp) > limit {
		resp = truncated(h, q)
	}
	return resp
}

// learn hands the addresses of an answer the filter let through to those
// who need them: an allowlist profile's kernel rules, a counted service's
// counter.
func (s *Server) learn(pol *Policy, profile, name string, d Decision, resp []byte) {
	allow := pol.Allowlist && d.Matched != "" && s.opts.Allowed != nil
	svc, other := "", false
	if len(pol.Limited) > 0 && s.opts.Learned != nil {
		svc = services.Of(name)
		counted, limited := pol.Limited[svc]
		// another site's addresses are handed on too, as no service's:
		// an address it shares with a limited service (a front end that
		// serves both) is then neither counted nor refused as the
		// service's
		other = !limited
		if !counted {
			svc = ""
		}
	}
	if !allow && svc == "" && !other {
		return
	}
	addrs, ttl := addresses(resp)
	if len(addrs) == 0 {
		return
	}
	if allow {
		s.opts.Allowed(profile, addrs, ttl)
	}
	if svc != "" || other {
		s.opts.Learned(profile, svc, addrs, ttl)
	}
}

// QueryName lower-cases a query name (ASCII only) and drops its final dot.
// It refuses a name with anything but letters, digits, '-' and '_' in its
// labels: no host name has them, and a name the filter cannot compare
// with its lists must not be forwarded for someone else to interpret.
// Unlike Normalize it accepts one-label names (the router's own names)
// and labels with odd hyphens: the labels in front of a blocked domain do
// not matter, the suffix does. (The wire parser already refuses a label
// that contains a dot.)
func QueryName(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return "", false
		}
	}
	return string(b), true
}

// maxUDPAnswer is the largest answer a UDP client may get: what its EDNS
// record offers (between 512 and 4096 bytes), 512 bytes without one. A
// larger answer is replaced by a truncated one, and the client asks again
// over TCP — which needs a real handshake, so a forged source gets no more
// than about its query's size back.
func maxUDPAnswer(p *dnsmessage.Parser, tcp bool) int {
	if tcp {
		return 65535
	}
	limit := 512
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return limit
	}
	for {
		h, err := p.AdditionalHeader()
		if err != nil {
			return limit
		}
		if h.Type == dnsmessage.TypeOPT {
			return min(max(int(h.Class), 512), 4096)
		}
		if p.SkipAdditional() != nil {
			return limit
		}
	}
}

// truncated is an empty answer with the TC bit: "ask again over TCP".
func truncated(h dnsmessage.Header, q dnsmessage.Question) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, Truncated: true})
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// reply builds an answer to h with the given code, question and records.
func reply(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, add func(*dnsmessage.Builder) error) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode})
	b.EnableCompression()
	if q != nil {
		if b.StartQuestions() != nil || b.Question(*q) != nil {
			return nil
		}
	}
	if add != nil {
		if b.StartAnswers() != nil || add(&b) != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// blockTTL is short so that a name blocked only during a window resolves
// again soon after it.
const blockTTL = 60

// blocked answers A with 0.0.0.0, AAAA with ::, other types with no data.
func blocked(h dnsmessage.Header, q dnsmessage.Question) []byte {
	return reply(h, &q, dnsmessage.RCodeSuccess, func(b *dnsmessage.Builder) error {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: blockTTL}
		switch q.Type {
		case dnsmessage.TypeA:
			return b.AResource(rh, dnsmessage.AResource{})
		case dnsmessage.TypeAAAA:
			return b.AAAAResource(rh, dnsmessage.AAAAResource{})
		}
		return nil
	})
}

// forward relays a query to the upstream resolver over the transport it
// came on and returns the answer; nil when the upstream did not answer. A
// truncated UDP answer goes back as it is: the client retries over TCP
// itself (fetching the whole answer here and sending it over UDP made a
// 29-byte query worth a 4 KB answer to whatever source it claimed).
func (s *Server) forward(raw []byte, tcp bool) []byte {
	s.mu.Lock()
	upstream := s.upstream
	s.mu.Unlock()
	if !tcp {
		resp, err := s.exchangeUDP(upstream, raw)
		if err != nil {
			s.log.Debug("upstream failed", "upstream", upstream, "err", err)
			return nil
		}
		return resp
	}
	resp, err := exchangeTCP(upstream, raw, s.timeout)
	if err != nil {
		s.log.Debug("upstream failed", "upstream", upstream, "err", err)
		return nil
	}
	return resp
}

// exchangeUDP asks upstream over one of a few kept-open sockets: opening a
// socket per query cost half the throughput. A socket whose exchange failed
// is closed, not reused; late answers to earlier queries are skipped by ID.
func (s *Server) exchangeUDP(upstream string, raw []byte) ([]byte, error) {
	var c net.Conn
	select {
	case pc := <-s.pool:
		if pc.upstream == upstream {
			c = pc.Conn
		} else {
			pc.Close()
		}
	default:
	}
	if c == nil {
		var err error
		if c, err = net.Dial("udp", upstream); err != nil {
			return nil, err
		}
	}
	c.SetDeadline(time.Now().Add(s.timeout))
	if _, err := c.Write(raw); err != nil {
		c.Close()
		return nil, err
	}
	bp := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, err
		}
		if n >= 2 && buf[0] == raw[0] && buf[1] == raw[1] { // same ID
			select {
			case s.pool <- pooledConn{c, upstream}:
			default:
				c.Close()
			}
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// answerBufs holds the buffers upstream answers are read into: an answer
// may be as large as a UDP datagram, and a fresh 64 kB buffer per query
// (cleared by the runtime, then collected) cost a fifth of the filter's
// time under load.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

type pooledConn struct {
	net.Conn
	upstream string
}

func exchangeTCP(upstream string, raw []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", upstream, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := writeFramed(c, raw); err != nil {
		return nil, err
	}
	return readFramed(c, 65535)
}

// rewrite answers with a CNAME to target and target's records of the
// asked type, resolved upstream.
func (s *Server) rewrite(h dnsmessage.Header, q dnsmessage.Question, target string, tcp bool) []byte {
	tname, err := dnsmessage.NewName(target + ".")
	if err != nil {
		return reply(h, &q, dnsmessage.RCodeServerFailure, nil)
	}
	ub := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(rand.Uint32()), RecursionDesired: true})
	ub.StartQuestions()
	ub.Question(dnsmessage.Question{Name: tname, Type: q.Type, Class: dnsmessage.ClassINET})
	uq, err := ub.Finish()
	if err != nil {
		return reply(h, &q, dnsmessage.RCodeServerFailure, nil)
	}
	var answers []dnsmessage.Resource
	rcode := dnsmessage.RCodeSuccess
	if up := s.forward(uq, tcp); up != nil {
		var m dnsmessage.Message
		if m.Unpack(up) == nil {
			rcode, answers = m.RCode, m.Answers
		}
	}
	return reply(h, &q, rcode, func(b *dnsmessage.Builder) error {
		if err := b.CNAMEResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 300},
			dnsmessage.CNAMEResource{CNAME: tname}); err != nil {
			return err
		}
		for _, a := range answers {
			var err error
			switch r := a.Body.(type) {
			case *dnsmessage.AResource:
				err = b.AResource(a.Header, *r)
			case *dnsmessage.AAAAResource:
				err = b.AAAAResource(a.Header, *r)
			case *dnsmessage.CNAMEResource:
				err = b.CNAMEResource(a.Header, *r)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// addresses returns the A and AAAA records of an answer and the smallest
// TTL among them (at least a minute).
func addresses(resp []byte) ([]netip.Addr, time.Duration) {
	var m dnsmessage.Message
	if m.Unpack(resp) != nil || m.RCode != dnsmessage.RCodeSuccess {
		return nil, 0
	}
	var out []netip.Addr
	ttl := uint32(0)
	for _, rr := range m.Answers {
		var a netip.Addr
		switch r := rr.Body.(type) {
		case *dnsmessage.AResource:
			a = netip.AddrFrom4(r.A)
		case *dnsmessage.AAAAResource:
			a = netip.AddrFrom16(r.AAAA).Unmap()
		default:
			continue
		}
		out = append(out, a)
		if ttl == 0 || rr.Header.TTL < ttl {
			ttl = rr.Header.TTL
		}
	}
	return out, max(time.Duration(ttl)*time.Second, time.Minute)
}
