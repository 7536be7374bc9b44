// Package notify tells parents what happens, by HTTP: for each event the
// daemon POSTs to every URL of `list notify` — a JSON object to a plain
// webhook receiver, or, for an ntfy-style topic URL marked with the query
// parameter format=text, the event's sentence as text/plain with a Title
// header (the parameter is removed before sending). Plain-HTTP URLs are
// posted by the daemon itself; https ones by the router's own curl,
// uclient-fetch or wget, which bring TLS and the CA bundle.
//
// Sending never holds up enforcement: events go into a bounded queue that
// one goroutine empties, each POST has a short timeout and a few retries,
// and what cannot be sent is logged and dropped.
package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

// The events.
const (
	Request    = "request"
	NewDevice  = "new_device"
	Bypass     = "bypass"
	BudgetUsed = "budget_used"
	// EnforcementFailed: the kernel refused curfew's rules, so nothing is
	// enforced; told once until they are in force again.
	EnforcementFailed = "enforcement_failed"
	// WindDown: a profile's devices are slowed before its offline window
	// begins; told to the profile's own notify URLs (a child's topic),
	// and to the parents' where notify_events lists it.
	WindDown = "wind_down"
	// WeeklyReport: the week's report (Event.Report), once a week at the
	// configured day and time.
	WeeklyReport = "weekly_report"
)

// Event is one notification. Device names and messages come from
// children's devices: JSON carries them as strings, the text form as
// text; the Title header gets them without control characters.
type Event struct {
	Event   string    `json:"event"`
	Device  string    `json:"device"`
	MAC     string    `json:"mac"`
	Profile string    `json:"profile"`
	Text    string    `json:"text"`
	Time    time.Time `json:"time"`
	// Service is the service of a budget_used event about a service's
	// allowance (and of a request for more time on it).
	Service string `json:"service,omitempty"`
	// ID, Minutes and Message are a request's.
	ID      string `json:"id,omitempty"`
	Minutes int    `json:"minutes,omitempty"`
	Message string `json:"message,omitempty"`
	// To are URLs the event goes to besides the parents' (a profile's own
	// notify list), whatever notify_events says.
	To []string `json:"-"`
	// Report is a weekly report's figures for webhooks (report.Report);
	// Text has the same for people.
	Report any `json:"report,omitempty"`
}

// Limits of sending.
const (
	// QueueSize bounds the events waiting to be sent.
	QueueSize = 64
	// PerDevice bounds the waiting events of one device (MAC) that a
	// child's device can cause in numbers (new_device, bypass, request).
	PerDevice = 4
	// Timeout bounds one POST, and Attempts the tries per URL.
	Timeout  = 5 * time.Second
	Attempts = 3
)

// Notifier sends events to the configured URLs.
type Notifier struct {
	log *slog.Logger
	// wake tells Run that queue has events.
	wake chan struct{}
	// Retry is the wait before the second try; it doubles after.
	Retry time.Duration

	mu     sync.Mutex
	urls   []string
	events []string
	queue  []Event
}

// New returns a notifier; Run sends what it is given.
func New(log *slog.Logger) *Notifier {
	return &Notifier{log: log, wake: make(chan struct{}, 1), Retry: time.Second}
}

// rank orders what a full queue gives up first: what a child's device
// can cause in numbers (a new random MAC each second, bypass tries), then
// requests, and last what a parent must hear (a used-up budget, nothing
// enforced).
func rank(event string) int {
	switch event {
	case NewDevice:
		return 0
	case Bypass:
		return 1
	case Request:
		return 2
	}
	return 3
}

// Configure sets the URLs and the events sent to them (config notify,
// notify_events).
func (n *Notifier) Configure(urls, events []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.urls, n.events = slices.Clone(urls), slices.Clone(events)
}

// Wants reports whether event would be sent anywhere.
func (n *Notifier) Wants(event string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.urls) > 0 && slices.Contains(n.events, event)
}

// Send queues ev if its event is wanted; it never blocks, and a flood of
// events takes no more than QueueSize. One device has at most PerDevice
// events of the kinds it can cause waiting; when the queue is full, the
// oldest waiting event of the lowest rank below ev's makes room, or else
// ev is dropped (logged): a child's random MACs never push out a used-up
// budget.
func (n *Notifier) Send(ev Event) {
	if len(ev.To) == 0 && !n.Wants(ev.Event) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if rank(ev.Event) < 3 && ev.MAC != "" {
		same := 0
		for _, q := range n.queue {
			if q.MAC == ev.MAC && rank(q.Event) < 3 {
				same++
			}
		}
		if same >= PerDevice {
			n.log.Warn("notification dropped: its device has too many waiting", "event", ev.Event, "device", ev.Device)
			return
		}
	}
	if len(n.queue) >= QueueSize {
		victim := -1
		for i, q := range n.queue {
			if rank(q.Event) < rank(ev.Event) && (victim < 0 || rank(q.Event) < rank(n.queue[victim].Event)) {
				victim = i
			}
		}
		if victim < 0 {
			n.log.Warn("notification dropped: too many waiting", "event", ev.Event, "device", ev.Device)
			return
		}
		q := n.queue[victim]
		n.log.Warn("notification dropped for a more important one", "event", q.Event, "device", q.Device)
		n.queue = slices.Delete(n.queue, victim, victim+1)
	}
	n.queue = append(n.queue, ev)
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run sends queued events until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		for {
			n.mu.Lock()
			if len(n.queue) == 0 {
				n.mu.Unlock()
				break
			}
			ev := n.queue[0]
			n.queue = slices.Delete(n.queue, 0, 1)
			var urls []string
			if slices.Contains(n.events, ev.Event) {
				urls = slices.Clone(n.urls)
			}
			for _, u := range ev.To {
				if !slices.Contains(urls, u) {
					urls = append(urls, u)
				}
			}
			n.mu.Unlock()
			for _, u := range urls {
				n.deliver(ctx, u, ev)
			}
			if ctx.Err() != nil {
				return
			}
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, raw string, ev Event) {
	wait := n.Retry
	var err error
	for try := 1; try <= Attempts; try++ {
		if err = n.post(ctx, raw, ev); err == nil {
			return
		}
		if try == Attempts {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
	n.log.Warn("notification not sent", "event", ev.Event, "device", ev.Device, "to", redact(raw), "tries", Attempts, "err", err)
}

// qEncode returns s as HTTP header values must carry text that is not
// plain ASCII: RFC 2047 encoded words in the Q encoding, each within the
// RFC's 75 characters and never splitting a character (ntfy decodes
// them). Plain ASCII is returned as it is. Written here rather than with
// the standard mime package, whose media-type code came along and cost
// the router's binary 27 kB.
func qEncode(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		plain = plain && ' ' <= s[i] && s[i] <= '~'
	}
	if plain {
		return s
	}
	const open, end, max = "=?utf-8?q?", "?=", 75
	var b strings.Builder
	word := max // start a word at the first character
	for _, r := range s {
		var enc []byte
		for _, c := range []byte(string(r)) {
			switch {
			case c == ' ':
				enc = append(enc, '_')
			case '!' <= c && c <= '~' && c != '=' && c != '?' && c != '_':
				enc = append(enc, c)
			default:
				enc = append(enc, '=', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
			}
		}
		if word+len(enc)+len(end) > max {
			if b.Len() > 0 {
				b.WriteString(end + " ")
			}
			b.WriteString(open)
			word = len(open)
		}
		b.Write(enc)
		word += len(enc)
	}
	b.WriteString(end)
	return b.String()
}

// post sends ev to one URL once.
func (n *Notifier) post(ctx context.Context, raw string, ev Event) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	var body []byte
	var title string
	header := [][2]string{{"User-Agent", "curfew"}, {"Content-Type", "application/json"}}
	q := u.Query()
	if q.Get("format") == "text" {
		q.Del("format")
		u.RawQuery = q.Encode()
		body = []byte(ev.Text)
		header[1][1] = "text/plain; charset=utf-8"
		title = Title(ev)
		header = append(header, [2]string{"Title", qEncode(title)})
	} else if body, err = json.Marshal(ev); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if u.Scheme == "http" {
		return postPlain(ctx, u, header, body)
	}
	name, args := command(u, header, title, body, exec.LookPath)
	if name == "" {
		return errors.New("no curl, uclient-fetch or wget for an https URL")
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %.200s", name, err, out)
	}
	return nil
}

// postPlain is a plain-HTTP POST, spoken here: curfew carries no HTTP
// client or TLS stack (net/http and crypto/tls would add megabytes to a
// binary in a router's flash). One request per connection.
func postPlain(ctx context.Context, u *url.URL, header [][2]string, body []byte) error {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl) //nolint:errcheck // a socket always takes a deadline
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	for _, h := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	b.Write(body)
	if _, err := c.Write(b.Bytes()); err != nil {
		return err
	}
	status, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer: %v", err)
	}
	var proto string
	var code int
	if _, err := fmt.Sscanf(status, "%s %d", &proto, &code); err != nil || !strings.HasPrefix(proto, "HTTP/") {
		return fmt.Errorf("not an HTTP answer: %.60q", status)
	}
	if code/100 != 2 {
		return fmt.Errorf("HTTP %d", code)
	}
	return nil
}

// command is how an https URL is posted: with the router's own tool,
// which brings the TLS stack and CA bundle (as block lists are
// downloaded). curl takes the headers and the body on stdin;
// uclient-fetch and busybox-style wget take no custom headers, so there
// a text event's title goes in the query ("title", which ntfy reads).
func command(u *url.URL, header [][2]string, title string, body []byte, look func(string) (string, error)) (string, []string) {
	if _, err := look("curl"); err == nil {
		args := []string{"-fsS", "-o", "/dev/null", "--max-time", fmt.Sprint(int(Timeout.Seconds())), "-X", "POST"}
		for _, h := range header {
			args = append(args, "-H", h[0]+": "+h[1])
		}
		return "curl", append(args, "--data-binary", "@-", u.String())
	}
	for _, tool := range []string{"uclient-fetch", "wget"} {
		if _, err := look(tool); err != nil {
			continue
		}
		v := *u
		if title != "" {
			q := v.Query()
			q.Set("title", title)
			v.RawQuery = q.Encode()
		}
		return tool, []string{"-q", "-T", fmt.Sprint(int(Timeout.Seconds())), "-O", "/dev/null", "--post-data=" + string(body), v.String()}
	}
	return "", nil
}

// Title is an event's headline: "curfew: Kid phone asks for more time".
func Title(ev Event) string {
	what := map[string]string{
		Request: "asks for more time", NewDevice: "joined the network", Bypass: "tried to get around the filter",
		BudgetUsed: "used up today's screen time", WindDown: "winds down: bedtime soon",
	}[ev.Event]
	if ev.Event == WeeklyReport {
		// The text's first line names the days.
		first, _, _ := strings.Cut(ev.Text, "\n")
		return "curfew: the week " + first
	}
	who := ev.Device
	if (ev.Event == BudgetUsed || ev.Event == WindDown) && ev.Profile != "" {
		who = ev.Profile
	}
	clean := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, who)
	if len(clean) > 64 {
		clean = strings.ToValidUTF8(clean[:64], "") + "…"
	}
	return "curfew: " + clean + " " + what
}

// redact keeps a URL's secrets (a topic token in the path or query, a
// password) out of the log: scheme and host only.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
