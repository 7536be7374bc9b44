package page

import (
	"strconv"
	"strings"
	"time"
)

// text is the page in one language. Sentences are plain text with
// fmt verbs; the template escapes them whole.
type text struct {
	offlineTitle, onlineTitle                       string
	offline, online, onlineUntil                    string
	soonTitle, soon, slower                         string
	schedule, scheduleNamed, pause, limit, clock    string
	backAt, noEnd                                   string
	askLabel, minutes, messageLabel, submit         string
	asked, waiting, approved, denied, expired       string
	left, noneLeft                                  string
	tooMany, busy, notOffline, askingOff, badAmount string
	serviceUsedUp, askService, askServices          string
	askedService, noSuchService                     string
	footer                                          string
	days                                            [7]string
}

var texts = map[string]*text{
	"en": {
		offlineTitle: "Offline for now", onlineTitle: "Online",
		offline: "%s is offline.", online: "%s is online.", onlineUntil: "Until %s.",
		soonTitle: "Bedtime soon", soon: "%s: bedtime in %d minutes.",
		slower:   "The internet is slower now; it goes off at %s.",
		schedule: "It is an offline time of its schedule.", scheduleNamed: "It is the schedule “%s”.",
		pause: "A parent paused it.", limit: "Today's screen time is used up.",
		clock:  "The router's clock is not set yet.",
		backAt: "Back online: %s.", noEnd: "No end is set.",
		askLabel: "Ask for more time", minutes: "%d minutes", messageLabel: "Message (optional)", submit: "Ask",
		asked: "Asked at %s for %d minutes.", waiting: "Waiting for an answer…",
		approved: "Yes: %[1]s, %[2]d more minutes.", denied: "No, at %s.", expired: "The request was not answered in time.",
		left: "You can ask %d more times today.", noneLeft: "That was the last request for today.",
		tooMany: "You have asked as often as you can today.", busy: "The router has too many requests open; try later.",
		notOffline: "This device is online: there is nothing to ask for.", askingOff: "Asking for more time is turned off.",
		badAmount:     "Choose 15, 30 or 60 minutes.",
		serviceUsedUp: "Today's time for %s is used up. Everything else works.",
		askService:    "Ask for more time for %s", askServices: "Ask for more time for a service",
		askedService: "Asked at %s for %d minutes of %s.", noSuchService: "That service still has time today, or no limit.",
		footer: "This page comes from your home router (curfew). Secure (https) pages do not load while the device is offline.",
		days:   [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"},
	},
	"de": {
		offlineTitle: "Gerade offline", onlineTitle: "Online",
		offline: "%s ist offline.", online: "%s ist online.", onlineUntil: "Bis %s Uhr.",
		soonTitle: "Gleich Schlafenszeit", soon: "%s: Schlafenszeit in %d Minuten.",
		slower:   "Das Internet ist jetzt langsamer; um %s Uhr geht es aus.",
		schedule: "Der Zeitplan sieht gerade keine Online-Zeit vor.", scheduleNamed: "Der Zeitplan „%s“ gilt gerade.",
		pause: "Ein Elternteil hat das Gerät pausiert.", limit: "Die Bildschirmzeit für heute ist aufgebraucht.",
		clock:  "Die Uhr des Routers ist noch nicht gestellt.",
		backAt: "Wieder online: %s Uhr.", noEnd: "Ein Ende ist nicht festgelegt.",
		askLabel: "Um mehr Zeit bitten", minutes: "%d Minuten", messageLabel: "Nachricht (freiwillig)", submit: "Bitten",
		asked: "Gefragt um %s Uhr, %d Minuten.", waiting: "Warte auf Antwort…",
		approved: "Ja: %[1]s Uhr, %[2]d Minuten mehr.", denied: "Nein, um %s Uhr.", expired: "Die Anfrage wurde nicht rechtzeitig beantwortet.",
		left: "Du kannst heute noch %d-mal fragen.", noneLeft: "Das war die letzte Anfrage für heute.",
		tooMany: "Du hast heute so oft gefragt, wie es geht.", busy: "Beim Router sind zu viele Anfragen offen; versuche es später.",
		notOffline: "Dieses Gerät ist online: Es gibt nichts zu erbitten.", askingOff: "Um mehr Zeit bitten ist ausgeschaltet.",
		badAmount:     "Wähle 15, 30 oder 60 Minuten.",
		serviceUsedUp: "Die Zeit für %s ist für heute aufgebraucht. Alles andere geht.",
		askService:    "Um mehr Zeit für %s bitten", askServices: "Um mehr Zeit für einen Dienst bitten",
		askedService: "Gefragt um %s Uhr, %d Minuten %s.", noSuchService: "Dieser Dienst hat heute noch Zeit oder kein Limit.",
		footer: "Diese Seite kommt von eurem Router (curfew). Sichere Seiten (https) laden nicht, solange das Gerät offline ist.",
		days:   [7]string{"So", "Mo", "Di", "Mi", "Do", "Fr", "Sa"},
	},
}

// when is an instant as the page says it: "21:07" today, "Tue 07:00"
// on another day.
func (t *text) when(x, now time.Time) string {
	hm := x.Format("15:04")
	if y, m, d := x.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return hm
	}
	return t.days[x.Weekday()] + " " + hm
}

// Problem is a reason a request was not taken, said in the page's
// language.
type Problem int

// The problems Ask may report.
const (
	TooMany Problem = iota + 1
	Busy
	NotOffline
	AskingOff
	BadAmount
	NoSuchService
)

func (p Problem) Error() string { return p.In("en") }

// In says p in language lang.
func (p Problem) In(lang string) string {
	t := texts[lang]
	if t == nil {
		t = texts["en"]
	}
	switch p {
	case TooMany:
		return t.tooMany
	case Busy:
		return t.busy
	case NotOffline:
		return t.notOffline
	case AskingOff:
		return t.askingOff
	case BadAmount:
		return t.badAmount
	case NoSuchService:
		return t.noSuchService
	}
	return "?"
}

// Language picks the page's language from an Accept-Language header: the
// supported language with the highest weight, English when none is. The
// header comes from the child's device: it is read only up to a bound
// and never echoed.
func Language(header string) string {
	if len(header) > 1024 {
		header = header[:1024]
	}
	best, bestQ := "en", -1.0
	for i, part := range strings.Split(header, ",") {
		if i == 32 {
			break
		}
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if texts[base] == nil {
			continue
		}
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		if q > bestQ && q > 0 {
			best, bestQ = base, q
		}
	}
	return best
}
