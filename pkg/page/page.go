// Package page is the bedtime page: what an offline device sees when it
// opens any plain-HTTP address (the kernel redirects its TCP port 80
// here). Phones and laptops probe such an address when they join a
// network or lose its internet, and show the answer as a "sign in to
// network" notification; so the child learns why the device is offline,
// until when, and can ask for more time, with nothing installed on it.
//
// The page is rendered by html/template: every value in it (the device's
// name, a child's message) is text, never markup. It needs no JavaScript
// and no other file; it refreshes itself with a meta refresh while a
// request waits.
package page

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxMessage bounds a request's message, in characters: it is read by a
// parent on a phone's notification, and stored on flash.
const MaxMessage = 140

// Minutes are the amounts a child may ask for.
var Minutes = []int{15, 30, 60}

// View is everything the page shows to one device: its own state only.
type View struct {
	// Device is the device's name in the config, or its MAC.
	Device string
	Online bool
	// Cause is the plan's kind of cause for an offline device
	// (schedule, pause, limit, clock) or empty; Schedule is the
	// schedule's name when Cause is schedule.
	Cause    string
	Schedule string
	// Until is when the state ends; zero when no end is foreseen.
	Until time.Time
	// CanAsk shows the form; AsksLeft says how many requests are left
	// today.
	CanAsk   bool
	AsksLeft int
	// Request is the device's latest request of the day, if any.
	Request *Request
	// Error is a problem with the last request, for the child (already
	// in the page's language).
	Error string
	Now   time.Time
	Loc   *time.Location
	// Base is the page's own address (http://192.168.1.1:8099), where
	// the form posts and the refresh goes: the address the device asked
	// for is not the router's.
	Base string
}

// Request is a request as the child sees it.
type Request struct {
	Minutes    int
	Message    string
	AskedAt    time.Time
	Status     string // open, approved, denied, expired
	AnsweredAt time.Time
	// Granted is the minutes a parent gave (approved only).
	Granted int
}

//go:embed page.html.tmpl
var files embed.FS

var tmpl = template.Must(template.New("page.html.tmpl").ParseFS(files, "page.html.tmpl"))

// data is what the template sees: sentences already in the page's
// language, for the template to escape.
type data struct {
	Lang, Title, Headline, Status, When string
	Refresh                             int
	Base                                string
	Asked, Message, Answer, Left, Error string
	Form                                bool
	AskLabel, MessageLabel, Submit      string
	Options                             []option
	Footer                              string
	MaxMessage                          int
}

type option struct {
	Minutes int
	Label   string
	Checked bool
}

// Render writes the page for v in language lang ("en", "de").
func Render(v View, lang string) []byte {
	t := texts[lang]
	if t == nil {
		lang, t = "en", texts["en"]
	}
	loc := v.Loc
	if loc == nil {
		loc = time.UTC
	}
	at := func(x time.Time) string { return t.when(x.In(loc), v.Now.In(loc)) }
	d := data{Lang: lang, Base: v.Base, Footer: t.footer, MaxMessage: MaxMessage,
		AskLabel: t.askLabel, MessageLabel: t.messageLabel, Submit: t.submit}
	if v.Online {
		d.Title = t.onlineTitle
		d.Headline = fmt.Sprintf(t.online, v.Device)
		if !v.Until.IsZero() {
			d.When = fmt.Sprintf(t.onlineUntil, at(v.Until))
		}
	} else {
		d.Title = t.offlineTitle
		d.Headline = fmt.Sprintf(t.offline, v.Device)
		switch v.Cause {
		case "schedule":
			d.Status = t.schedule
			if v.Schedule != "" {
				d.Status = fmt.Sprintf(t.scheduleNamed, v.Schedule)
			}
		case "pause":
			d.Status = t.pause
		case "limit":
			d.Status = t.limit
		case "clock":
			d.Status = t.clock
		}
		if !v.Until.IsZero() {
			d.When = fmt.Sprintf(t.backAt, at(v.Until))
		} else {
			d.When = t.noEnd
		}
		// Come back now and then: the answer, or the window's end, shows
		// without a tap.
		d.Refresh = 60
	}
	if r := v.Request; r != nil {
		d.Asked = fmt.Sprintf(t.asked, at(r.AskedAt), r.Minutes)
		d.Message = r.Message
		switch r.Status {
		case "open":
			d.Answer = t.waiting
			d.Refresh = 10
		case "approved":
			d.Answer = fmt.Sprintf(t.approved, at(r.AnsweredAt), r.Granted)
		case "denied":
			d.Answer = fmt.Sprintf(t.denied, at(r.AnsweredAt))
		case "expired":
			d.Answer = t.expired
		}
	}
	if !v.Online && v.CanAsk && (v.Request == nil || v.Request.Status != "open") {
		d.Form = true
		for i, m := range Minutes {
			d.Options = append(d.Options, option{Minutes: m, Label: fmt.Sprintf(t.minutes, m), Checked: i == 0})
		}
		d.Left = fmt.Sprintf(t.left, v.AsksLeft)
	} else if !v.Online && !v.CanAsk && v.AsksLeft == 0 && v.Request != nil && v.Request.Status != "open" {
		d.Left = t.noneLeft
	}
	if v.Error != "" {
		d.Error = v.Error
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		// The template is fixed and its data plain strings: a failure
		// here is a bug, shown as text rather than a half page.
		return []byte("curfew: page: " + err.Error())
	}
	return b.Bytes()
}

// CleanMessage makes a child's message safe to store and show anywhere:
// valid UTF-8, no control or bidirectional-override characters (they
// would drive a terminal or reorder a notification's text), spaces
// collapsed, at most MaxMessage characters.
func CleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	n, space := 0, false
	for _, r := range s {
		if n == MaxMessage {
			break
		}
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r), r == utf8.RuneError:
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
			if n == MaxMessage {
				break
			}
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
