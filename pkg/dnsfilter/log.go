package dnsfilter

import (
	"sync"
	"time"

	"curfew/pkg/services"
)

// Entry is one query in the log.
type Entry struct {
	Time    time.Time `json:"time"`
	MAC     string    `json:"mac"`
	Device  string    `json:"device"`
	Profile string    `json:"profile"`
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	// Verdict is "allowed", "blocked" or "rewritten to HOST".
	Verdict string `json:"verdict"`
	// By says what decided ("service tiktok", "list …", "safe search").
	By string `json:"by,omitempty"`
}

// QueryLog is a bounded ring of recent queries, in RAM only: nothing of it
// is ever written to flash.
type QueryLog struct {
	mu   sync.Mutex
	buf  []Entry
	next int
	full bool
}

// NewQueryLog returns a log that keeps the last n entries.
func NewQueryLog(n int) *QueryLog { return &QueryLog{buf: make([]Entry, n)} }

// Add records an entry, dropping the oldest when full.
func (l *QueryLog) Add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf[l.next] = e
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
}

// Recent returns the entries for which keep is true (all with nil), oldest
// first, at most limit of the newest (all with 0).
func (l *QueryLog) Recent(keep func(Entry) bool, limit int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []Entry
	if l.full {
		all = append(all, l.buf[l.next:]...)
	}
	all = append(all, l.buf[:l.next]...)
	out := []Entry{}
	for _, e := range all {
		if keep == nil || keep(e) {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Counters are one device's DNS counts since the daemon started.
type Counters struct {
	Queries int `json:"queries"`
	Blocked int `json:"blocked"`
	Bypass  int `json:"bypass_attempts"`
}

// maxStatsDevices bounds the counters kept: one entry per device, and a
// LAN has far fewer; past it, further devices are not counted one by one.
const maxStatsDevices = 4096

// maxBlockedNames bounds the blocked names one device keeps between two
// drains (a minute): a child's device asking for random names must not
// grow the daemon; the names past it are still counted in Blocked.
const maxBlockedNames = 16

// Stats counts queries per device (MAC), and what the weekly report
// needs of each device's last minute: the names it was refused and the
// services it looked up.
type Stats struct {
	mu  sync.Mutex
	by  map[string]*Counters
	act map[string]*Activity
}

// Activity is what one device asked since the last Drain.
type Activity struct {
	// Blocked counts the refused names, at most maxBlockedNames of them.
	Blocked map[string]int
	// Services are those of the catalogue the device looked up.
	Services map[string]bool
}

// NewStats returns empty counters.
func NewStats() *Stats {
	return &Stats{by: map[string]*Counters{}, act: map[string]*Activity{}}
}

// Count adds one query for name.
func (s *Stats) Count(mac, name string, blocked, bypass bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.by[mac]
	if c == nil {
		if len(s.by) >= maxStatsDevices {
			return
		}
		c = &Counters{}
		s.by[mac] = c
	}
	c.Queries++
	if blocked {
		c.Blocked++
	}
	if bypass {
		c.Bypass++
	}
	svc := services.Of(name)
	if !blocked && svc == "" {
		return
	}
	a := s.act[mac]
	if a == nil {
		a = &Activity{Blocked: map[string]int{}, Services: map[string]bool{}}
		s.act[mac] = a
	}
	switch {
	case blocked:
		if _, ok := a.Blocked[name]; ok || len(a.Blocked) < maxBlockedNames {
			a.Blocked[name]++
		}
	default:
		a.Services[svc] = true
	}
}

// Get returns a device's counters.
func (s *Stats) Get(mac string) Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.by[mac]; c != nil {
		return *c
	}
	return Counters{}
}

// Drain returns each device's activity since the last Drain and starts
// anew.
func (s *Stats) Drain() map[string]*Activity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.act
	s.act = map[string]*Activity{}
	return out
}
