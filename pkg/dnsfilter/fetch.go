package dnsfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// RefreshEvery is how old a block list may get before it is fetched again.
const RefreshEvery = 24 * time.Hour

// maxListBytes bounds a downloaded list: a broken or hostile server must
// not fill the router's RAM.
const maxListBytes = 64 << 20

// Fetch downloads a URL.
type Fetch func(ctx context.Context, url string) (io.ReadCloser, error)

// CommandFetch downloads with the router's own tool: uclient-fetch, which
// opkg uses on every OpenWrt (TLS through the system's ustream-ssl and CA
// bundle), else wget or curl. curfew thus carries no HTTP or TLS stack of its
// own: measured, net/http with crypto/tls adds 4 MB to a MIPS binary.
func CommandFetch(ctx context.Context, url string) (io.ReadCloser, error) {
	var cmd *exec.Cmd
	switch {
	case has("uclient-fetch"):
		cmd = exec.CommandContext(ctx, "uclient-fetch", "-q", "-T", "60", "-O", "-", url)
	case has("wget"):
		cmd = exec.CommandContext(ctx, "wget", "-q", "-T", "60", "-O", "-", url)
	case has("curl"):
		cmd = exec.CommandContext(ctx, "curl", "-fsSL", "--max-time", "120", url)
	default:
		return nil, errors.New("no downloader (uclient-fetch, wget or curl) found")
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, left: maxListBytes}
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v %s", cmd.Args[0], err, strings.TrimSpace(errb.String()))
	}
	return io.NopCloser(&out), nil
}

func has(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// limitedWriter fails once more than left bytes were written.
type limitedWriter struct {
	w    io.Writer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		return 0, fmt.Errorf("list larger than %d bytes", maxListBytes)
	}
	l.left -= len(p)
	return l.w.Write(p)
}

// Lists loads block lists from files and https URLs and keeps them in RAM
// only (nothing of them is written to flash). A list that cannot be fetched
// keeps its last good copy.
type Lists struct {
	fetch Fetch
	log   *slog.Logger

	mu     sync.Mutex
	loaded map[string]*loadedList
}

type loadedList struct {
	list    *List
	fetched time.Time
	stats   ListStats
}

// NewLists returns an empty list store; fetch may be nil for
// CommandFetch.
func NewLists(fetch Fetch, log *slog.Logger) *Lists {
	if fetch == nil {
		fetch = CommandFetch
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lists{fetch: fetch, log: log, loaded: map[string]*loadedList{}}
}

// Get returns the loaded lists among names (those not loaded yet are
// left out).
func (l *Lists) Get(names []string) []*List {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*List
	for _, n := range names {
		if ll := l.loaded[n]; ll != nil {
			out = append(out, ll.list)
		}
	}
	return out
}

// Refresh loads every list in names that is missing or older than
// RefreshEvery, and forgets lists no longer named. It reports whether
// anything changed.
func (l *Lists) Refresh(ctx context.Context, names []string, now time.Time) bool {
	changed := false
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		l.mu.Lock()
		ll := l.loaded[n]
		l.mu.Unlock()
		if ll != nil && now.Sub(ll.fetched) < RefreshEvery {
			continue
		}
		list, st, err := l.load(ctx, n)
		if err != nil {
			if ll != nil {
				l.log.Warn("block list not refreshed; keeping the last good copy", "list", n, "entries", ll.stats.Entries, "err", err)
			} else {
				l.log.Error("block list not loaded", "list", n, "err", err)
			}
			continue
		}
		msg := fmt.Sprintf("block list %s: %d entries loaded, %d lines rejected", n, st.Entries, st.Rejected)
		if st.Rejected > 0 {
			msg += fmt.Sprintf(" (first at line %d)", st.FirstRejected)
		}
		l.log.Info(msg)
		l.mu.Lock()
		l.loaded[n] = &loadedList{list: list, fetched: now, stats: st}
		l.mu.Unlock()
		changed = true
	}
	l.mu.Lock()
	for n := range l.loaded {
		if !want[n] {
			delete(l.loaded, n)
			changed = true
		}
	}
	l.mu.Unlock()
	if changed {
		// Parsing a big list leaves its garbage behind; on a router the
		// memory should go back to the system now, not in a few minutes.
		debug.FreeOSMemory()
	}
	return changed
}

// fetchTimeout bounds one list's whole download, whatever the server's
// pace (the downloaders' own -T is per read).
const fetchTimeout = 5 * time.Minute

func (l *Lists) load(ctx context.Context, name string) (*List, ListStats, error) {
	var r io.ReadCloser
	if strings.HasPrefix(name, "http://") {
		return nil, ListStats{}, errors.New("plain http is not accepted for block lists; use https")
	}
	if strings.HasPrefix(name, "https://") {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		body, err := l.fetch(fctx, name)
		if err != nil {
			return nil, ListStats{}, err
		}
		r = body
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, ListStats{}, err
		}
		r = f
	}
	defer r.Close()
	var b Builder
	st, err := ParseList(io.LimitReader(r, maxListBytes), func(d string) { b.Add(d, 0) })
	if err != nil {
		return nil, st, err
	}
	return &List{Name: name, Set: b.Build()}, st, nil
}
