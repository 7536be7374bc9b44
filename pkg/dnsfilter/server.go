package dnsfilter

import (
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
)

// The wire format is handled with golang.org/x/net/dns/dnsmessage, the
// parser behind Go's own resolver: about 100 kB on a MIPS router, where
// github.com/miekg/dns measured 3.3 MB (it brings crypto/tls and DNSSEC)
// and would have broken the 6 MB flash budget. Queries that are not
// filtered are relayed byte for byte, so EDNS, DNSSEC bits and IDs pass
// through untouched.

// Device identifies the sender of a query, for logs and counters only:
// the policy comes from the port the query arrived on.
type Device struct {
	MAC  string
	Name string
}

// Options configure a Server.
type Options struct {
	// Identify maps a query's source address to its device.
	Identify func(netip.Addr) Device
	// Allowed receives the addresses an allowlisted name resolved to, with
	// their TTL, so that the kernel lets the profile reach them.
	Allowed func(profile string, addrs []netip.Addr, ttl time.Duration)
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

	mu        sync.Mutex
	policies  map[string]*Policy
	listeners map[string]*listener // key: profile + "/" + interface
	upstream  string
}

type listener struct {
	port uint16
	pc   net.PacketConn
	ln   net.Listener
}

func (l *listener) close() {
	l.pc.Close()
	l.ln.Close()
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
		opts.Identify = func(a netip.Addr) Device { return Device{MAC: a.String()} }
	}
	return &Server{
		opts: opts, log: log, qlog: NewQueryLog(opts.LogSize), stats: NewStats(), timeout: 2 * time.Second,
		pool:     make(chan pooledConn, 32),
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
		if b, ok := want[key]; !ok || b.Port != l.port {
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

func bindTo(ifc string) net.ListenConfig {
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

func (s *Server) listen(profile, ifc string, port uint16) (*listener, error) {
	lc := bindTo(ifc)
	addr := fmt.Sprintf(":%d", port)
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	go s.serveUDP(profile, pc)
	go s.serveTCP(profile, ln)
	return &listener{port: port, pc: pc, ln: ln}, nil
}

// udpWorkers read the same socket side by side; each answers its query
// before reading the next, so an answer waiting for the upstream holds one
// worker, not the socket. (A goroutine per query measured slower.)
const udpWorkers = 16

func (s *Server) serveUDP(profile string, pc net.PacketConn) {
	for i := 0; i < udpWorkers; i++ {
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				if resp := s.handle(profile, buf[:n], addrOf(from), false); resp != nil {
					pc.WriteTo(resp, from)
				}
			}
		}()
	}
}

func (s *Server) serveTCP(profile string, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				q, err := readFramed(c)
				if err != nil {
					return
				}
				resp := s.handle(profile, q, addrOf(c.RemoteAddr()), true)
				if resp == nil || writeFramed(c, resp) != nil {
					return
				}
			}
		}()
	}
}

func readFramed(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, msg)
	return msg, err
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
// could be read). A malformed packet costs a parse attempt, nothing more.
func (s *Server) handle(profile string, raw []byte, src netip.Addr, tcp bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(raw)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || h.OpCode != 0 {
		return reply(h, nil, dnsmessage.RCodeFormatError, nil)
	}
	q := qs[0]
	name, ok := Normalize(strings.TrimSuffix(strings.ToLower(q.Name.String()), "."))
	if !ok {
		name = strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
	}
	dev := s.opts.Identify(src)
	pol := s.policy(profile)
	d := Decision{Action: Forward}
	if pol != nil && ok {
		d = pol.Decide(name)
	}
	entry := Entry{Time: time.Now(), MAC: dev.MAC, Device: dev.Name, Profile: profile, Name: name,
		Type: strings.TrimPrefix(q.Type.String(), "Type"), Verdict: "allowed", By: d.By}
	var resp []byte
	switch d.Action {
	case Block:
		resp = blocked(h, q)
		entry.Verdict = "blocked"
	case NXDomain:
		resp = reply(h, &q, dnsmessage.RCodeNameError, nil)
		entry.Verdict = "blocked"
	case Rewrite:
		resp = s.rewrite(h, q, d.Target, tcp)
		entry.Verdict = "rewritten to " + d.Target
	default:
		resp = s.forward(raw, tcp)
		if resp == nil {
			resp = reply(h, &q, dnsmessage.RCodeServerFailure, nil)
		} else if pol != nil && pol.Allowlist && s.opts.Allowed != nil {
			if addrs, ttl := addresses(resp); len(addrs) > 0 {
				s.opts.Allowed(profile, addrs, ttl)
			}
		}
	}
	s.qlog.Add(entry)
	s.stats.Count(dev.MAC, entry.Verdict == "blocked", d.Bypass)
	return resp
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

// forward relays a query to the upstream resolver and returns its answer,
// over TCP if the query came over TCP or the UDP answer was truncated; nil
// when the upstream did not answer.
func (s *Server) forward(raw []byte, tcp bool) []byte {
	s.mu.Lock()
	upstream := s.upstream
	s.mu.Unlock()
	if !tcp {
		resp, err := s.exchangeUDP(upstream, raw)
		if err == nil && len(resp) > 2 && resp[2]&0x02 == 0 { // TC bit clear
			return resp
		}
		if err != nil {
			s.log.Debug("upstream failed", "upstream", upstream, "err", err)
			return nil
		}
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
	buf := make([]byte, 65535)
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
	return readFramed(c)
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
