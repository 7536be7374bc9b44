package page

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"curfew/pkg/bind"
)

// Source is the daemon's side of the page: what a device may see, and
// its request. remote is the connection's source address; the source
// finds the device behind it (the neighbour table) — a device never names
// itself, so it can neither see nor ask for another.
type Source interface {
	// View returns the page for the device at remote; false when no
	// device on the LAN has that address.
	View(remote netip.Addr) (View, bool)
	// Ask records a request of the device at remote — for more time on
	// one service when f.Service is set; a Problem says why it was not
	// taken.
	Ask(remote netip.Addr, f Form) error
}

// Limits of the listener: everything that reaches it comes from a child's
// device.
const (
	// MaxBody bounds a request's body (the form is a few hundred bytes).
	MaxBody = 4 << 10
	// MaxHeader bounds a request's header.
	MaxHeader = 8 << 10
	// MaxConns bounds the connections served at once; more are closed
	// at once.
	MaxConns = 32
	// MaxConnsPerSource bounds those of one address, so that one device
	// cannot hold all MaxConns for connTimeout each and keep the page
	// from its siblings.
	MaxConnsPerSource = 4
)

// Server serves the page on the LAN interfaces.
type Server struct {
	src Source
	sem chan struct{}
	// token is the form's token (View.Token), new at every start: from
	// math/rand/v2, whose generator the runtime seeds from the kernel's
	// randomness (crypto/rand would add its whole package to the
	// router's binary for 16 bytes).
	token string
	// bySource counts the open connections of each address.
	bySource map[netip.Addr]int

	mu        sync.Mutex
	port      uint16
	listeners map[string]*boundListener
}

// boundListener is a listener and the index of the interface it is bound
// to.
type boundListener struct {
	net.Listener
	index int
}

// NewServer returns a server; Configure starts its listeners.
func NewServer(src Source) *Server {
	return &Server{src: src, sem: make(chan struct{}, MaxConns), listeners: map[string]*boundListener{},
		token: fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()), bySource: map[netip.Addr]int{}}
}

// Configure listens on port of each LAN interface (IPv4 and IPv6), and
// stops the listeners no longer wanted; port 0 stops them all. It is
// called on every reconcile and retries what failed before; a listener
// whose interface was created anew is opened again.
func (s *Server) Configure(lan []string, port uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if port != s.port {
		for ifc, ln := range s.listeners {
			ln.Close()
			delete(s.listeners, ifc)
		}
		s.port = port
	}
	for ifc, ln := range s.listeners {
		if !slices.Contains(lan, ifc) || bind.Index(ifc) != ln.index {
			ln.Close()
			delete(s.listeners, ifc)
		}
	}
	if port == 0 {
		return nil
	}
	var errs []error
	for _, ifc := range lan {
		if s.listeners[ifc] != nil {
			continue
		}
		index := bind.Index(ifc)
		if index == 0 {
			errs = append(errs, fmt.Errorf("bedtime page: no interface %s", ifc))
			continue
		}
		lc := bind.To(ifc)
		ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			// a router with IPv6 turned off
			ln, err = lc.Listen(context.Background(), "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bedtime page on %s port %d: %w", ifc, port, err))
			continue
		}
		s.listeners[ifc] = &boundListener{ln, index}
		go s.serve(ln)
	}
	return errors.Join(errs...)
}

// Listening reports whether the page listens on every LAN interface: the
// kernel must not redirect to a port where nothing answers.
func (s *Server) Listening(lan []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ifc := range lan {
		if s.listeners[ifc] == nil {
			return false
		}
	}
	return s.port != 0 && len(lan) > 0
}

// Close stops every listener.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ifc, ln := range s.listeners {
		ln.Close()
		delete(s.listeners, ifc)
	}
}

// serve accepts connections until ln is closed: at most MaxConns at a
// time (more are closed at once, not left waiting in the backlog), each
// one request within connTimeout.
func (s *Server) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: let some close
			continue
		}
		from := sourceOf(c)
		if !s.admit(from) {
			c.Close()
			continue
		}
		select {
		case s.sem <- struct{}{}:
			go func() {
				defer func() { <-s.sem; s.release(from) }()
				s.conn(c)
			}()
		default:
			s.release(from)
			c.Close()
		}
	}
}

// sourceOf is a connection's remote address.
func sourceOf(c net.Conn) netip.Addr {
	a, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return a.Addr().Unmap()
}

// admit counts a connection of from, unless from has MaxConnsPerSource
// open already.
func (s *Server) admit(from netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySource[from] >= MaxConnsPerSource {
		return false
	}
	s.bySource[from]++
	return true
}

func (s *Server) release(from netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySource[from]--; s.bySource[from] <= 0 {
		delete(s.bySource, from)
	}
}

// connTimeout bounds one connection: reading the request, answering it.
const connTimeout = 10 * time.Second

func (s *Server) conn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(connTimeout)) //nolint:errcheck // a socket always takes a deadline
	local, err1 := netip.ParseAddrPort(c.LocalAddr().String())
	remote, err2 := netip.ParseAddrPort(c.RemoteAddr().String())
	if err1 != nil || err2 != nil {
		return
	}
	req, err := readRequest(bufio.NewReaderSize(c, 4096))
	var resp *response
	switch {
	case errors.Is(err, errTooLarge):
		resp = plain(413, "request too large")
	case err != nil:
		resp = plain(400, "bad request")
	default:
		resp = s.answer(req, local, remote)
	}
	resp.write(c, req != nil && req.method == "HEAD") //nolint:errcheck // the device may be gone
}

// answer answers any path: a probe's, a browser's, the form's post.
func (s *Server) answer(req *request, local, remote netip.AddrPort) *response {
	addr := remote.Addr().Unmap()
	base := baseURL(local)
	lang := Language(req.header["accept-language"])
	// Whatever Host a redirected request names is served: a probe asks
	// for its own host, on port 80. A request that names the page's port
	// came to it directly and must name the router's address: another
	// name there is a site that pointed its name at the router (DNS
	// rebinding) to read or post from a device's browser.
	if !direct(req.header["host"], local) {
		return plain(421, "misdirected request")
	}
	var problem string
	switch {
	case req.method == "POST" && req.path == "/request":
		form, err := ParseForm(req.body, req.header["content-type"])
		if err == nil && (req.header["host"] != strings.TrimPrefix(base, "http://") || !s.tokenIn(req.body)) {
			// The form posts to the base address with the token; a
			// page elsewhere posting to the router has neither.
			return plain(403, "curfew: this form did not come from the bedtime page")
		}
		if err == nil {
			err = s.src.Ask(addr, form)
		}
		var p Problem
		switch {
		case err == nil:
			// Post, redirect, get: a reload of the answer does not ask
			// again.
			return &response{status: 303, header: [][2]string{{"Location", base + "/"}, {"Cache-Control", "no-store"}}}
		case errors.As(err, &p):
			problem = p.In(lang)
		default:
			problem = BadAmount.In(lang)
		}
	case req.method != "GET" && req.method != "HEAD":
		r := plain(405, "method not allowed")
		r.header = append(r.header, [2]string{"Allow", "GET, HEAD, POST"})
		return r
	}
	v, ok := s.src.View(addr)
	if !ok {
		return plain(403, "curfew: this address is no device on the home network")
	}
	v.Base, v.Error, v.Token = base, problem, s.token
	// 200 with a page, never the probe's expected answer (Android's 204,
	// Apple's "Success"): that is what makes a device show its
	// captive-portal notification.
	return &response{status: 200, body: Render(v, lang), header: [][2]string{
		{"Content-Type", "text/html; charset=utf-8"},
		{"Content-Language", lang},
		{"Cache-Control", "no-store"},
		{"X-Content-Type-Options", "nosniff"},
		{"Referrer-Policy", "no-referrer"},
		{"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action " + base + "; base-uri 'none'; frame-ancestors 'none'"},
	}}
}

// direct reports whether a request's Host may be served at local: any
// host without the page's port (a redirected request), the router's own
// address with it.
func direct(host string, local netip.AddrPort) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil || port != strconv.Itoa(int(local.Port())) {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().WithZone("") == local.Addr().Unmap().WithZone("")
}

// tokenIn reports whether a form body carries the page's token.
func (s *Server) tokenIn(body []byte) bool {
	form, err := url.ParseQuery(string(body))
	return err == nil && subtle.ConstantTimeCompare([]byte(form.Get("t")), []byte(s.token)) == 1
}

// baseURL is the page's own address, as the device reached it: the
// redirect's target (the router's address on the device's interface)
// and the page port, never the Host the device asked for.
func baseURL(local netip.AddrPort) string {
	a := local.Addr().Unmap().WithZone("")
	return "http://" + netip.AddrPortFrom(a, local.Port()).String()
}

// Form is a child's request as the page's form sends it.
type Form struct {
	Minutes int
	Message string
	// Service names a service whose time is used up (a catalogue name),
	// or is empty: more time for the device.
	Service string
}

// ParseForm reads the request form (a body readRequest has bounded):
// minutes (one of Minutes), an optional message, cleaned (CleanMessage),
// and the service asked about, if any (only its shape is checked here).
func ParseForm(body []byte, contentType string) (Form, error) {
	if ct, _, _ := strings.Cut(contentType, ";"); strings.TrimSpace(strings.ToLower(ct)) != "application/x-www-form-urlencoded" {
		return Form{}, BadAmount
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Form{}, BadAmount
	}
	minutes, err := strconv.Atoi(form.Get("minutes"))
	if err != nil || !slices.Contains(Minutes, minutes) {
		return Form{}, BadAmount
	}
	svc := form.Get("service")
	if len(svc) > 32 || strings.Trim(svc, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return Form{}, NoSuchService
	}
	return Form{Minutes: minutes, Message: CleanMessage(form.Get("message")), Service: svc}, nil
}
