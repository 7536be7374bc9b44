// Package control is the daemon's API on its unix socket: versioned JSON
// request and response types, the server loop and the client. The CLI and
// LuCI's rpcd plugin both speak it.
//
// The protocol is one JSON request per connection, one JSON response back:
// a parent's command is rare, and a connection per request keeps both ends
// free of framing state. The socket is created mode 0600 and the server
// also checks the peer's credentials (SO_PEERCRED), so only root can steer
// curfew.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"curfew/pkg/config"
	"curfew/pkg/schedule"
	"curfew/pkg/services"
)

// MaxOverride is how far ahead a pause or allow may end. The kernel's
// clock runs out in 2262 (and xt_time's in 2038); an override meant "for
// good" is a pause without an end, or a change to the config.
const MaxOverride = 366 * 24 * time.Hour

// MaxGrant is the most screen time one grant adds.
const MaxGrant = 24 * time.Hour

// Version of the request/response format. A request with another version
// is refused with a clear error rather than half understood.
const Version = 1

// MaxRequest bounds a request's size; anything larger is refused.
const MaxRequest = 64 << 10

// Methods.
const (
	MethodStatus      = "status"
	MethodDevices     = "devices"
	MethodExplain     = "explain"
	MethodPause       = "pause"
	MethodResume      = "resume"
	MethodAllow       = "allow"
	MethodGrant       = "grant"
	MethodReload      = "reload"
	MethodClockSynced = "clock_synced"
	MethodLog         = "log"
	MethodUsage       = "usage"
	MethodReport      = "report"
	MethodAssign      = "assign"
	MethodRequests    = "requests"
	MethodApprove     = "approve"
	MethodDeny        = "deny"
)

// MaxReportDays is the most days a report covers: the history kept.
const MaxReportDays = 30

// MaxApprove is the most time one approval gives.
const MaxApprove = 12 * 60

// Request is one call.
type Request struct {
	V      int    `json:"v"`
	Method string `json:"method"`
	// Target is a profile id, a device name or a MAC.
	Target string `json:"target,omitempty"`
	// For is a duration ("30m", "1h30m") ...
	For string `json:"for,omitempty"`
	// ... Until a local time ("18:00", the next one) or RFC 3339.
	Until string `json:"until,omitempty"`
	// Amount is the duration a grant adds, to Service's allowance when
	// set (a catalogue name), else to the daily limit.
	Amount  string `json:"amount,omitempty"`
	Service string `json:"service,omitempty"`
	// Limit bounds the entries of a log (0: all kept) or the days of usage.
	Limit int `json:"limit,omitempty"`
	// Profile and Name are an assign's profile and device name.
	Profile string `json:"profile,omitempty"`
	Name    string `json:"name,omitempty"`
	// ID names a child's request for approve and deny; Minutes changes
	// what an approval gives (0: what was asked), and WholeProfile
	// gives it to every device of the profile.
	ID           string `json:"id,omitempty"`
	Minutes      int    `json:"minutes,omitempty"`
	WholeProfile bool   `json:"whole_profile,omitempty"`
}

// Response is the answer to one call.
type Response struct {
	V      int             `json:"v"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Error is a failed call, as the client sees it.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Validate checks a decoded request's shape (not whether its target
// exists: that is the daemon's business).
func (r *Request) Validate() error {
	if r.V != Version {
		return fmt.Errorf("unsupported API version %d (this daemon speaks %d)", r.V, Version)
	}
	needTarget := false
	switch r.Method {
	case MethodStatus, MethodDevices, MethodReload, MethodClockSynced, MethodLog, MethodUsage, MethodRequests:
	case MethodReport:
		if r.Limit < 0 || r.Limit > MaxReportDays {
			return fmt.Errorf("--days %d: want 1 to %d (the history kept)", r.Limit, MaxReportDays)
		}
	case MethodApprove, MethodDeny:
		if strings.TrimSpace(r.ID) == "" || len(r.ID) > 16 {
			return fmt.Errorf("%s needs a request id (see curfew requests)", r.Method)
		}
		if r.Minutes < 0 || r.Minutes > MaxApprove {
			return fmt.Errorf("--minutes %d: want 1 to %d", r.Minutes, MaxApprove)
		}
	case MethodExplain, MethodResume:
		needTarget = true
	case MethodPause:
		needTarget = true
		if r.For != "" && r.Until != "" {
			return errors.New("pause takes --for or --until, not both")
		}
		if err := r.validateWhen(); err != nil {
			return err
		}
	case MethodAllow:
		needTarget = true
		if (r.For == "") == (r.Until == "") {
			return errors.New("allow needs exactly one of --for or --until")
		}
		if err := r.validateWhen(); err != nil {
			return err
		}
	case MethodAssign:
		needTarget = true
		if _, err := config.ParseDeviceMAC(strings.TrimSpace(r.Target)); err != nil {
			return err
		}
		if r.Profile == "" {
			return errors.New("assign needs a profile")
		}
		if len(r.Name) > 64 || strings.ContainsAny(r.Name+r.Profile, "\n\r") {
			return errors.New("invalid device name")
		}
	case MethodGrant:
		needTarget = true
		if r.Amount == "" {
			return errors.New("grant needs an amount, e.g. 30m")
		}
		if d, err := config.ParseDuration(r.Amount); err != nil || d <= 0 || d > MaxGrant {
			return fmt.Errorf("invalid amount %q (want e.g. 15m or 1h, at most 24h)", r.Amount)
		}
		if r.Service != "" && !services.Builtin().Has(r.Service) {
			return fmt.Errorf("unknown service %q (see curfew services)", r.Service)
		}
	case "":
		return errors.New("missing method")
	default:
		return fmt.Errorf("unknown method %q", r.Method)
	}
	if needTarget && strings.TrimSpace(r.Target) == "" {
		return fmt.Errorf("%s needs a target (profile, device name or MAC)", r.Method)
	}
	if r.Limit < 0 || r.Limit > 100000 {
		switch r.Method {
		case MethodUsage:
			return fmt.Errorf("--days %d: want 1 to 100000", r.Limit)
		case MethodLog:
			return fmt.Errorf("--lines %d: want 0 (all kept) to 100000", r.Limit)
		}
		return fmt.Errorf("limit %d: want 0 to 100000", r.Limit)
	}
	if len(r.Target) > 256 || len(r.For) > 32 || len(r.Until) > 64 || len(r.Amount) > 32 {
		return errors.New("argument too long")
	}
	return nil
}

// validateWhen checks the form of --for and --until; which instant
// --until HH:MM means is the daemon's to say (it knows the router's zone).
func (r *Request) validateWhen() error {
	if r.For != "" {
		d, err := config.ParseDuration(r.For)
		if err != nil || d <= 0 {
			return fmt.Errorf("--for: invalid duration %q (want e.g. 30m or 1h30m)", r.For)
		}
		if d > MaxOverride {
			return fmt.Errorf("--for %s: at most a year (366 days)", r.For)
		}
	}
	if r.Until != "" {
		if _, err := time.Parse(time.RFC3339, r.Until); err == nil {
			return nil
		}
		if _, err := schedule.ParseClock(r.Until); err != nil {
			return fmt.Errorf("--until %q: want HH:MM (00:00 to 24:00) or RFC 3339", r.Until)
		}
	}
	return nil
}

// DecodeBytes decodes and validates a request from a buffer.
func DecodeBytes(data []byte) (*Request, error) {
	var req Request
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("malformed request: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed request: one JSON object per connection")
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return &req, nil
}

// Handler answers requests; an error becomes the response's error text.
type Handler func(ctx context.Context, req *Request) (any, error)

// Listen creates the socket with mode 0600, replacing a stale one.
func Listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// maxConns bounds the control connections served at once; more wait in
// the listen backlog.
const maxConns = 32

// Serve answers connections on ln until ctx ends. A bad request gets an
// error response; a panic in the handler is caught and reported, so that
// garbage on the socket cannot take the daemon down. An accept that fails
// (out of descriptors, because something else in the daemon is under
// attack) is retried after a growing pause, never given up: the parent's
// way in must outlast whatever the LAN does.
func Serve(ctx context.Context, ln net.Listener, h Handler, log *slog.Logger) error {
	go func() { <-ctx.Done(); ln.Close() }()
	slots := make(chan struct{}, maxConns)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if backoff == 0 {
				log.Warn("control: accept failed; retrying", "err", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			c.Close()
			return nil
		}
		go func() {
			defer func() { <-slots }()
			serveConn(ctx, c, h, log)
		}()
	}
}

func serveConn(ctx context.Context, c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	resp := Response{V: Version}
	defer func() {
		if r := recover(); r != nil {
			log.Error("control: handler panic", "panic", r)
			resp = Response{V: Version, Error: "internal error"}
		}
		json.NewEncoder(c).Encode(resp) //nolint:errcheck // the peer may be gone
	}()
	if uc, ok := c.(*net.UnixConn); ok {
		if uid, err := peerUID(uc); err != nil || uid != 0 {
			resp.Error = "permission denied: only root may use curfew's control socket"
			return
		}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(c, MaxRequest+1), 4096).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		resp.Error = "read request: " + err.Error()
		return
	}
	if len(line) > MaxRequest {
		resp.Error = fmt.Sprintf("request larger than %d bytes", MaxRequest)
		return
	}
	req, err := DecodeBytes(line)
	if err != nil {
		resp.Error = err.Error()
		return
	}
	res, err := h(ctx, req)
	if err != nil {
		resp.Error = err.Error()
		return
	}
	data, err := json.Marshal(res)
	if err != nil {
		resp.Error = "encode result: " + err.Error()
		return
	}
	resp.OK, resp.Result = true, data
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// ErrNotRunning means nothing answers on the socket.
var ErrNotRunning = errors.New("the curfew daemon is not running")

// Call sends one request and decodes the result into out (may be nil).
func Call(ctx context.Context, socket string, req Request, out any) error {
	req.V = Version
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no one listens on %s)", ErrNotRunning, socket)
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("permission denied on %s: run as root", socket)
		}
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	data, _ := json.Marshal(req)
	if _, err := c.Write(append(data, '\n')); err != nil {
		return err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return fmt.Errorf("read daemon's answer: %w", err)
	}
	if !resp.OK {
		return &Error{Msg: resp.Error}
	}
	if out != nil && len(resp.Result) > 0 {
		return json.Unmarshal(resp.Result, out)
	}
	return nil
}
