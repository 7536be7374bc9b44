package wifi

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Binding is what hostapd said of one station: the key id (a profile) of
// the key it joined with, on which interface (the path of its control
// socket), since when.
type Binding struct {
	MAC     string
	Profile string
	Socket  string
	Since   time.Time
}

// How often the folder of control sockets is read (a new interface, a
// restarted hostapd), and how often a quiet socket is asked whether
// hostapd still listens.
const (
	scanEvery = 2 * time.Second
	pingEvery = 5 * time.Second
)

// maxIfaces bounds the sockets followed: a router has a few networks per
// radio.
const maxIfaces = 32

// Watcher follows every hostapd control socket in a folder and keeps the
// binding of each station that joined with a curfew key. A station that
// leaves, or joins again with the network's own password, loses it; so do
// the stations of an interface whose hostapd went away (they are sent
// away with it, and are listed again when it is back).
type Watcher struct {
	log *slog.Logger
	// changed is called, without locks held, when a binding comes or
	// goes: at is when hostapd's event was read.
	changed func(at time.Time)

	mu      sync.Mutex
	dir     string
	on      bool
	follow  map[string]*follower // socket path -> its follower
	bound   map[string]Binding
	reloads chan struct{}
}

// NewWatcher returns a watcher that does nothing until Configure turns it
// on.
func NewWatcher(log *slog.Logger, changed func(at time.Time)) *Watcher {
	return &Watcher{log: log, changed: changed, follow: map[string]*follower{}, bound: map[string]Binding{}, reloads: make(chan struct{}, 1)}
}

// follower is the goroutine that follows one socket; a new one may take
// its place (Configure) before it has ended.
type follower struct{ cancel context.CancelFunc }

// Configure says where hostapd's sockets are and whether any profile has
// a key (off: no socket is followed, no station bound).
func (w *Watcher) Configure(dir string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if dir != w.dir || !on {
		for path, f := range w.follow {
			f.cancel()
			delete(w.follow, path)
		}
	}
	w.dir, w.on = dir, on
}

// Bindings returns each bound station by MAC.
func (w *Watcher) Bindings() map[string]Binding {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.bound)
}

// Reload makes every followed hostapd read the key file again
// (RELOAD_WPA_PSK): a revoked key must not keep a device online, nor in
// a profile.
func (w *Watcher) Reload() {
	select {
	case w.reloads <- struct{}{}:
	default:
	}
}

// Run follows the sockets until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(scanEvery)
	defer tick.Stop()
	for {
		w.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.reloads:
			w.reload()
		}
	}
}

// scan starts a follower for each socket in the folder not yet followed.
func (w *Watcher) scan(ctx context.Context) {
	w.mu.Lock()
	dir, on := w.dir, w.on
	w.mu.Unlock()
	if !on {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // no hostapd (yet)
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		w.mu.Lock()
		_, running := w.follow[path]
		if running || len(w.follow) >= maxIfaces || w.dir != dir || !w.on {
			w.mu.Unlock()
			continue
		}
		fctx, cancel := context.WithCancel(ctx)
		f := &follower{cancel: cancel}
		w.follow[path] = f
		w.mu.Unlock()
		go w.run(fctx, path, f)
	}
}

func (w *Watcher) run(ctx context.Context, path string, f *follower) {
	err := w.followSocket(ctx, path)
	f.cancel()
	// Its stations are unbound, unless a newer follower (Configure)
	// has the socket now, and its stations with it.
	w.mu.Lock()
	now := w.follow[path]
	if now == f {
		delete(w.follow, path)
	}
	owner := now == f || now == nil
	w.mu.Unlock()
	iface := filepath.Base(path)
	if owner && w.unbindSocket(path) {
		w.changed(time.Now())
	}
	if err != nil && ctx.Err() == nil {
		w.log.Info("wifi: hostapd's socket closed; following it again when it is back", "iface", iface, "err", err)
	}
}

// followSocket attaches to one socket, lists its stations, and reads its
// events until hostapd goes away or ctx ends.
func (w *Watcher) followSocket(ctx context.Context, path string) error {
	c, err := dial(path)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(time.Now()) })
	defer stop()
	if ans, err := c.request("ATTACH"); err != nil {
		return err
	} else if strings.TrimSpace(ans) != "OK" {
		return errFailed
	}
	iface := filepath.Base(path)
	list, err := stations(path)
	if err != nil {
		return err
	}
	now := time.Now()
	w.mu.Lock()
	for mac, id := range list {
		if id != "" {
			w.bound[mac] = Binding{MAC: mac, Profile: id, Socket: path, Since: now}
		}
	}
	w.mu.Unlock()
	w.log.Info("wifi: following hostapd", "iface", iface, "stations", len(list))
	w.changed(now)
	buf := make([]byte, maxMessage)
	lastPing, pinged := time.Now(), false
	for ctx.Err() == nil {
		c.c.SetReadDeadline(lastPing.Add(pingEvery))
		n, err := c.c.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !isTimeout(err) {
				return err
			}
			if pinged {
				return errNoAnswer // a PING went unanswered for pingEvery
			}
			if _, err := c.c.Write([]byte("PING")); err != nil {
				return err
			}
			lastPing, pinged = time.Now(), true
			continue
		}
		if strings.HasPrefix(string(buf[:n]), "PONG") {
			lastPing, pinged = time.Now(), false
			continue
		}
		if ev, ok := ParseEvent(buf[:n]); ok && w.apply(path, ev, time.Now()) {
			w.changed(time.Now())
		}
	}
	return nil
}

// apply changes the bindings for one event; it reports whether they
// changed.
func (w *Watcher) apply(sock string, ev Event, at time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	old, had := w.bound[ev.MAC]
	switch {
	case ev.Kind == Connected && ev.KeyID != "":
		if had && old.Profile == ev.KeyID && old.Socket == sock {
			return false
		}
		if !had && len(w.bound) >= maxIfaces*maxStations {
			return false
		}
		w.bound[ev.MAC] = Binding{MAC: ev.MAC, Profile: ev.KeyID, Socket: sock, Since: at}
		return true
	case had && (ev.Kind == Connected || old.Socket == sock):
		// Joined with the network's own password, or left the interface
		// it was bound on (a station roaming to another radio connects
		// there before it leaves here).
		delete(w.bound, ev.MAC)
		return true
	}
	return false
}

func (w *Watcher) unbindSocket(sock string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.bound)
	maps.DeleteFunc(w.bound, func(_ string, b Binding) bool { return b.Socket == sock })
	return len(w.bound) != n
}

// reload asks each hostapd to read the key file again, then binds its
// stations anew from its list: hostapd itself sends away a station whose
// key is gone (since 2.10, "PSK/passphrase no longer valid"), and a key
// that moved to another profile takes its stations with it.
func (w *Watcher) reload() {
	w.mu.Lock()
	paths := make([]string, 0, len(w.follow))
	for p := range w.follow {
		paths = append(paths, p)
	}
	w.mu.Unlock()
	for _, path := range paths {
		iface := filepath.Base(path)
		if err := command(path, "RELOAD_WPA_PSK"); err != nil {
			w.log.Warn("wifi: hostapd did not read the key file again", "iface", iface, "err", err)
			continue
		}
		list, err := stations(path)
		if err != nil {
			continue
		}
		now, changed := time.Now(), false
		w.mu.Lock()
		for mac, b := range w.bound {
			if b.Socket == path && list[mac] != b.Profile {
				changed = true
				if list[mac] == "" {
					delete(w.bound, mac)
				} else {
					w.bound[mac] = Binding{MAC: mac, Profile: list[mac], Socket: path, Since: now}
				}
			}
		}
		w.mu.Unlock()
		if changed {
			w.changed(now)
		}
	}
}

var errNoAnswer = errors.New("hostapd did not answer PING")

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
