// Package notify tells parents what happens, by HTTP: for each event the
// daemon POSTs to every URL of `list notify` — a JSON object to a plain
// webhook receiver, or, for an ntfy-style topic URL marked with the query
// parameter format=text, the event's sentence as text/plain with a Title
// header (the parameter is removed before sending).
//
// Sending never holds up enforcement: events go into a bounded queue that
// one goroutine empties, each POST has a short timeout and a few retries,
// and what cannot be sent is logged and dropped.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
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
	// ID, Minutes and Message are a request's.
	ID      string `json:"id,omitempty"`
	Minutes int    `json:"minutes,omitempty"`
	Message string `json:"message,omitempty"`
}

// Limits of sending.
const (
	// QueueSize bounds the events waiting to be sent.
	QueueSize = 64
	// Timeout bounds one POST, and Attempts the tries per URL.
	Timeout  = 5 * time.Second
	Attempts = 3
)

// Notifier sends events to the configured URLs.
type Notifier struct {
	log    *slog.Logger
	client *http.Client
	queue  chan Event
	// Retry is the wait before the second try; it doubles after.
	Retry time.Duration

	mu     sync.Mutex
	urls   []string
	events []string
}

// New returns a notifier; Run sends what it is given.
func New(log *slog.Logger) *Notifier {
	return &Notifier{log: log, queue: make(chan Event, QueueSize), Retry: time.Second,
		client: &http.Client{Timeout: Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a receiver that moved is a config error, said in the log
		}}}
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

// Send queues ev if its event is wanted; it never blocks. A full queue
// drops the event (logged): a flood of events must not take memory.
func (n *Notifier) Send(ev Event) {
	if !n.Wants(ev.Event) {
		return
	}
	select {
	case n.queue <- ev:
	default:
		n.log.Warn("notification dropped: too many waiting", "event", ev.Event, "device", ev.Device)
	}
}

// Run sends queued events until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.queue:
			n.mu.Lock()
			urls := slices.Clone(n.urls)
			n.mu.Unlock()
			for _, u := range urls {
				n.deliver(ctx, u, ev)
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

// post sends ev to one URL once.
func (n *Notifier) post(ctx context.Context, raw string, ev Event) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	var body []byte
	contentType := "application/json"
	title := ""
	q := u.Query()
	if q.Get("format") == "text" {
		q.Del("format")
		u.RawQuery = q.Encode()
		body, contentType, title = []byte(ev.Text), "text/plain; charset=utf-8", Title(ev)
	} else if body, err = json.Marshal(ev); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "curfew")
	if title != "" {
		req.Header.Set("Title", mime.QEncoding.Encode("utf-8", title))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// Title is an event's headline: "curfew: Kid phone asks for more time".
func Title(ev Event) string {
	what := map[string]string{
		Request: "asks for more time", NewDevice: "joined the network", Bypass: "tried to get around the filter",
		BudgetUsed: "used up today's screen time",
	}[ev.Event]
	who := ev.Device
	if ev.Event == BudgetUsed && ev.Profile != "" {
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
