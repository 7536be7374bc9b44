package page

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	// Ask records a request of the device at remote; a Problem says why
	// it was not taken.
	Ask(remote netip.Addr, minutes int, message string) error
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
)

// Server serves the page on the LAN interfaces.
type Server struct {
	src  Source
	log  *slog.Logger
	http *http.Server
	sem  chan struct{}

	mu        sync.Mutex
	port      uint16
	listeners map[string]net.Listener
}

// NewServer returns a server; Configure starts its listeners.
func NewServer(src Source, log *slog.Logger) *Server {
	s := &Server{src: src, log: log, sem: make(chan struct{}, MaxConns), listeners: map[string]net.Listener{}}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    MaxHeader,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// One request per connection: after a parent's approval the next
	// request must leave the router for the internet, which a kept-alive
	// connection to the page would not.
	s.http.SetKeepAlivesEnabled(false)
	return s
}

// Configure listens on port of each LAN interface (IPv4 and IPv6), and
// stops the listeners no longer wanted; port 0 stops them all. It is
// called on every reconcile and retries what failed before.
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
		if !slices.Contains(lan, ifc) {
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
		s.listeners[ifc] = ln
		go s.http.Serve(limited{ln, s.sem}) //nolint:errcheck // ends when the listener is closed
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

// ServeHTTP answers any path: a probe's, a browser's, the form's post.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad address", http.StatusBadRequest)
		return
	}
	addr := remote.Addr().Unmap()
	base := baseURL(r)
	lang := Language(r.Header.Get("Accept-Language"))
	var problem string
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/request":
		minutes, message, err := ParseForm(http.MaxBytesReader(w, r.Body, MaxBody), r.Header.Get("Content-Type"))
		if err == nil {
			err = s.src.Ask(addr, minutes, message)
		}
		var p Problem
		switch {
		case err == nil:
			// Post, redirect, get: a reload of the answer does not ask
			// again.
			http.Redirect(w, r, base+"/", http.StatusSeeOther)
			return
		case errors.As(err, &p):
			problem = p.In(lang)
		default:
			problem = BadAmount.In(lang)
		}
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	v, ok := s.src.View(addr)
	if !ok {
		http.Error(w, "curfew: this address is no device on the home network", http.StatusForbidden)
		return
	}
	v.Base, v.Error = base, problem
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", lang)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+base+"; base-uri 'none'; frame-ancestors 'none'")
	// 200 with a page, never the probe's expected answer (Android's 204,
	// Apple's "Success"): that is what makes a device show its
	// captive-portal notification.
	w.Write(Render(v, lang)) //nolint:errcheck // the device may be gone
}

// baseURL is the page's own address, as the device reached it: the
// redirect's target (the router's address on the device's interface)
// and the page port, never the Host the device asked for.
func baseURL(r *http.Request) string {
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	ap, err := netip.ParseAddrPort(fmt.Sprint(la))
	if err != nil {
		return ""
	}
	a := ap.Addr().Unmap().WithZone("")
	return (&url.URL{Scheme: "http", Host: netip.AddrPortFrom(a, ap.Port()).String()}).String()
}

// ParseForm reads the request form: minutes (one of Minutes) and an
// optional message, cleaned (CleanMessage).
func ParseForm(body io.Reader, contentType string) (int, string, error) {
	if ct, _, _ := strings.Cut(contentType, ";"); strings.TrimSpace(strings.ToLower(ct)) != "application/x-www-form-urlencoded" {
		return 0, "", BadAmount
	}
	data, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	if err != nil || len(data) > MaxBody {
		return 0, "", BadAmount
	}
	form, err := url.ParseQuery(string(data))
	if err != nil {
		return 0, "", BadAmount
	}
	minutes, err := strconv.Atoi(form.Get("minutes"))
	if err != nil || !slices.Contains(Minutes, minutes) {
		return 0, "", BadAmount
	}
	return minutes, CleanMessage(form.Get("message")), nil
}

// limited closes connections beyond the server's bound at once, instead
// of letting them wait in the backlog.
type limited struct {
	net.Listener
	sem chan struct{}
}

func (l limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &release{Conn: c, sem: l.sem}, nil
		default:
			c.Close()
		}
	}
}

type release struct {
	net.Conn
	sem  chan struct{}
	once sync.Once
}

func (c *release) Close() error {
	c.once.Do(func() { <-c.sem })
	return c.Conn.Close()
}
