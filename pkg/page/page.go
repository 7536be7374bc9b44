// Package page is the bedtime page: what an offline device sees when it
// opens any plain-HTTP address (the kernel redirects its TCP port 80
// here). Phones and laptops probe such an address when they join a
// network or lose its internet, and show the answer as a "sign in to
// network" notification; so the child learns why the device is offline,
// until when, and can ask for more time, with nothing installed on it.
//
// Every value in the page (the device's name, a child's message) is
// escaped: text, never markup. It is written by hand rather than by
// html/template, which would add its reflection-driven engine to a binary
// that lives in a router's flash. It needs no JavaScript
// and no other file; it refreshes itself with a meta refresh while a
// request waits.
package page

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
	"unicode"
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
	// SlowUntil, for an online device, is set while it winds down: the
	// instant its offline window begins.
	SlowUntil time.Time
	// UsedUp are the services whose time is used up today, of a device
	// that is online otherwise.
	UsedUp []Service
	// CanAsk shows the form (for more time for the device, or, online,
	// for one of UsedUp); AsksLeft says how many requests are left today.
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
	// Token goes with the form and must come back with its post: a page
	// elsewhere that posts to the router cannot know it (Server.answer).
	Token string
}

// Service is a service with a daily allowance: its catalogue name and
// the name people know.
type Service struct {
	Name, Title string
}

// Request is a request as the child sees it.
type Request struct {
	// Service is the title of the service asked about, if any.
	Service    string
	Minutes    int
	Message    string
	AskedAt    time.Time
	Status     string // open, approved, denied, expired
	AnsweredAt time.Time
	// Granted is the minutes a parent gave (approved only).
	Granted int
}

// style is the page's only style sheet, inline: the page loads nothing
// else.
const style = `body{font:17px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f1ea;color:#1d1d1f}
main{max-width:30em;margin:0 auto;padding:1.5em 1.2em}
h1{font-size:1.5em;margin:.2em 0 .4em}
.card{background:#fff;border-radius:14px;padding:1em 1.1em;margin:1em 0;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.when{font-size:1.2em;font-weight:600}
.answer{font-weight:600}
.error{color:#a40000;font-weight:600}
label.opt{display:block;padding:.55em .2em;font-size:1.05em}
textarea{width:100%;box-sizing:border-box;font:inherit;padding:.4em;border:1px solid #bbb;border-radius:8px}
button{font:inherit;font-weight:600;width:100%;padding:.75em;margin-top:.8em;border:0;border-radius:10px;background:#2c5fd6;color:#fff}
q{font-style:italic}
footer{font-size:.85em;color:#555}
`

// data is what the page says: sentences already in its language, for
// html to escape.
type data struct {
	Lang, Title, Headline, Status, When string
	Refresh                             int
	Base, Token                         string
	Asked, Message, Answer, Left, Error string
	Form                                bool
	AskLabel, MessageLabel, Submit      string
	Options                             []option
	// Services are the form's choice of service (a radio each when
	// there are several, one hidden field for one).
	Services   []choice
	Footer     string
	MaxMessage int
}

type option struct {
	Minutes int
	Label   string
	Checked bool
}

type choice struct {
	Name, Label string
	Checked     bool
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
	d := data{Lang: lang, Base: v.Base, Token: v.Token, Footer: t.footer, MaxMessage: MaxMessage,
		AskLabel: t.askLabel, MessageLabel: t.messageLabel, Submit: t.submit}
	switch {
	case v.Online && !v.SlowUntil.IsZero():
		mins := int(math.Ceil(v.SlowUntil.Sub(v.Now).Minutes()))
		d.Title = t.soonTitle
		d.Headline = fmt.Sprintf(t.soon, v.Device, max(mins, 1))
		d.When = fmt.Sprintf(t.slower, at(v.SlowUntil))
		d.Refresh = 60
	case v.Online:
		d.Title = t.onlineTitle
		d.Headline = fmt.Sprintf(t.online, v.Device)
		if !v.Until.IsZero() {
			d.When = fmt.Sprintf(t.onlineUntil, at(v.Until))
		}
		if len(v.UsedUp) > 0 {
			titles := make([]string, len(v.UsedUp))
			for i, s := range v.UsedUp {
				titles[i] = s.Title
			}
			d.Status = fmt.Sprintf(t.serviceUsedUp, strings.Join(titles, ", "))
			d.Refresh = 60
		}
	default:
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
		if r.Service != "" {
			d.Asked = fmt.Sprintf(t.askedService, at(r.AskedAt), r.Minutes, r.Service)
		}
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
	asking := !v.Online || len(v.UsedUp) > 0
	if asking && v.CanAsk && (v.Request == nil || v.Request.Status != "open") {
		d.Form = true
		for i, m := range Minutes {
			d.Options = append(d.Options, option{Minutes: m, Label: fmt.Sprintf(t.minutes, m), Checked: i == 0})
		}
		if v.Online {
			for i, s := range v.UsedUp {
				d.Services = append(d.Services, choice{Name: s.Name, Label: s.Title, Checked: i == 0})
			}
			d.AskLabel = t.askServices
			if len(v.UsedUp) == 1 {
				d.AskLabel = fmt.Sprintf(t.askService, v.UsedUp[0].Title)
			}
		}
		d.Left = fmt.Sprintf(t.left, v.AsksLeft)
	} else if asking && !v.CanAsk && v.AsksLeft == 0 && v.Request != nil && v.Request.Status != "open" {
		d.Left = t.noneLeft
	}
	d.Error = v.Error
	return d.html()
}

// html writes the page. Every value goes through esc: it may hold what a
// child's device sent (a message) or a parent wrote (a device's name).
func (d *data) html() []byte {
	var b strings.Builder
	esc := html.EscapeString
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line(`<!DOCTYPE html>`)
	line(`<html lang="%s">`, esc(d.Lang))
	line(`<head>`)
	line(`<meta charset="utf-8">`)
	line(`<meta name="viewport" content="width=device-width, initial-scale=1">`)
	if d.Refresh > 0 {
		line(`<meta http-equiv="refresh" content="%d;url=%s/">`, d.Refresh, esc(d.Base))
	}
	line(`<title>%s</title>`, esc(d.Title))
	b.WriteString("<style>\n" + style + "</style>\n")
	line(`</head>`)
	line(`<body>`)
	line(`<main>`)
	line(`<h1>%s</h1>`, esc(d.Headline))
	if d.Status != "" {
		line(`<p>%s</p>`, esc(d.Status))
	}
	if d.When != "" {
		line(`<p class="when">%s</p>`, esc(d.When))
	}
	if d.Error != "" {
		line(`<p class="error">%s</p>`, esc(d.Error))
	}
	if d.Asked != "" {
		line(`<div class="card">`)
		line(`<p>%s</p>`, esc(d.Asked))
		if d.Message != "" {
			line(`<p><q>%s</q></p>`, esc(d.Message))
		}
		line(`<p class="answer">%s</p>`, esc(d.Answer))
		line(`</div>`)
	}
	switch {
	case d.Form:
		line(`<form class="card" method="post" action="%s/request">`, esc(d.Base))
		line(`<input type="hidden" name="t" value="%s">`, esc(d.Token))
		line(`<h2>%s</h2>`, esc(d.AskLabel))
		switch {
		case len(d.Services) == 1:
			line(`<input type="hidden" name="service" value="%s">`, esc(d.Services[0].Name))
		case len(d.Services) > 1:
			for _, s := range d.Services {
				checked := ""
				if s.Checked {
					checked = " checked"
				}
				line(`<label class="opt"><input type="radio" name="service" value="%s"%s> %s</label>`, esc(s.Name), checked, esc(s.Label))
			}
		}
		for _, o := range d.Options {
			checked := ""
			if o.Checked {
				checked = " checked"
			}
			line(`<label class="opt"><input type="radio" name="minutes" value="%d"%s> %s</label>`, o.Minutes, checked, esc(o.Label))
		}
		line(`<p><label>%s<br><textarea name="message" rows="2" maxlength="%d"></textarea></label></p>`, esc(d.MessageLabel), d.MaxMessage)
		line(`<button type="submit">%s</button>`, esc(d.Submit))
		line(`<p>%s</p>`, esc(d.Left))
		line(`</form>`)
	case d.Left != "":
		line(`<p>%s</p>`, esc(d.Left))
	}
	line(`<footer><p>%s</p></footer>`, esc(d.Footer))
	line(`</main>`)
	line(`</body>`)
	line(`</html>`)
	return []byte(b.String())
}

// CleanMessage makes a child's message safe to store and show anywhere,
// keeping what a short note needs — letters, digits, punctuation,
// symbols and emoji, single spaces, and at most two marks on a character
// (an accent, a vowel sign, an emoji's variation) — and dropping what
// hides or disguises text: control and format characters (zero-width
// ones, the soft hyphen, bidirectional overrides, which would reorder a
// notification's text, and the invisible tag characters), private-use
// and unassigned code points, the blank "filler" letters, and stacks of
// combining marks. Invalid UTF-8 goes too; at most MaxMessage characters
// stay.
func CleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	n, marks, space := 0, 0, false
	for _, r := range s {
		if n == MaxMessage {
			break
		}
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case !unicode.IsPrint(r), unicode.In(r, unicode.Cf, unicode.Co), fillers[r]:
			continue
		case unicode.Is(unicode.M, r):
			if marks == 2 || b.Len() == 0 || space {
				continue
			}
			marks++
			b.WriteRune(r)
			continue
		}
		marks = 0
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

// fillers are letters and symbols that show as nothing: the Hangul
// fillers and the blank Braille pattern, used to make a message look empty
// or to hide text inside it.
var fillers = map[rune]bool{0x115f: true, 0x1160: true, 0x3164: true, 0xffa0: true, 0x2800: true}
