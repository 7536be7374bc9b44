package wifi

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// maxMessage bounds a datagram read from hostapd: a STA answer is a few
// hundred bytes; hostapd's own replies are at most 4 kB.
const maxMessage = 8192

// requestTimeout is how long a request waits for hostapd's answer.
const requestTimeout = 2 * time.Second

var sockets atomic.Uint64

// ctrlConn is a datagram socket connected to one hostapd control socket.
// Its own address is abstract (no file to remove when curfew is killed);
// hostapd answers to the address a request came from.
type ctrlConn struct {
	c *net.UnixConn
}

func dial(path string) (*ctrlConn, error) {
	local := &net.UnixAddr{Net: "unixgram", Name: fmt.Sprintf("@curfew-hostapd-%d-%d", time.Now().UnixNano(), sockets.Add(1))}
	c, err := net.DialUnix("unixgram", local, &net.UnixAddr{Net: "unixgram", Name: path})
	if err != nil {
		return nil, err
	}
	return &ctrlConn{c: c}, nil
}

func (c *ctrlConn) Close() error { return c.c.Close() }

// request sends cmd and returns hostapd's answer; events that arrive in
// between (on an attached socket) are skipped.
func (c *ctrlConn) request(cmd string) (string, error) {
	if _, err := c.c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	buf := make([]byte, maxMessage)
	deadline := time.Now().Add(requestTimeout)
	for {
		c.c.SetReadDeadline(deadline)
		n, err := c.c.Read(buf)
		if err != nil {
			return "", fmt.Errorf("%s: %w", cmd, err)
		}
		if n > 0 && buf[0] == '<' {
			continue // an event
		}
		return string(buf[:n]), nil
	}
}

// EventKind says what happened to a station.
type EventKind int

const (
	// Connected: the station finished its handshake.
	Connected EventKind = iota + 1
	// Disconnected: the station left, or was sent away.
	Disconnected
)

// Event is one station event from hostapd.
type Event struct {
	Kind EventKind
	MAC  string // lower case, colons
	// KeyID is the key id of the key-file line the station's key
	// matched; empty when it joined with the network's own password.
	KeyID string
}

// ParseEvent reads an unsolicited message from hostapd ("<3>AP-STA-
// CONNECTED 02:00:00:00:01:00 keyid=alice"). Only station arrivals and
// departures are events; the rest is ignored. Whatever hostapd relays of
// a station is the station's doing, so the MAC and key id are checked,
// not trusted: a key id is one curfew could have written (a profile id).
func ParseEvent(msg []byte) (Event, bool) {
	if i := bytes.IndexByte(msg, '>'); len(msg) > 0 && msg[0] == '<' && i > 0 {
		msg = msg[i+1:]
	}
	fields := strings.Fields(string(msg))
	if len(fields) < 2 {
		return Event{}, false
	}
	var ev Event
	switch fields[0] {
	case "AP-STA-CONNECTED":
		ev.Kind = Connected
	case "AP-STA-DISCONNECTED":
		ev.Kind = Disconnected
	default:
		return Event{}, false
	}
	mac, ok := parseMAC(fields[1])
	if !ok {
		return Event{}, false
	}
	ev.MAC = mac
	for _, f := range fields[2:] {
		if id, ok := strings.CutPrefix(f, "keyid="); ok && validKeyID(id) {
			ev.KeyID = id
		}
	}
	return ev, true
}

// ParseStation reads hostapd's answer to STA-FIRST or STA-NEXT: the
// station's MAC on the first line, then key=value lines. ok is false for
// the empty answer after the last station.
func ParseStation(msg []byte) (mac, keyID string, ok bool) {
	lines := strings.Split(string(msg), "\n")
	mac, ok = parseMAC(strings.TrimSpace(lines[0]))
	if !ok {
		return "", "", false
	}
	for _, l := range lines[1:] {
		if id, found := strings.CutPrefix(strings.TrimSpace(l), "keyid="); found && validKeyID(id) {
			keyID = id
		}
	}
	return mac, keyID, true
}

func parseMAC(s string) (string, bool) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

// validKeyID accepts what a profile id can be (UCI section names: letters,
// digits, _), as hostapd takes it.
func validKeyID(s string) bool {
	if s == "" || len(s) > 31 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// errFailed is hostapd refusing a command.
var errFailed = errors.New("hostapd answered FAIL")

// command sends cmd on a socket of its own and wants "OK".
func command(path, cmd string) error {
	c, err := dial(path)
	if err != nil {
		return err
	}
	defer c.Close()
	ans, err := c.request(cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(ans) != "OK" {
		return fmt.Errorf("%s: %w", strings.Fields(cmd)[0], errFailed)
	}
	return nil
}

// stations lists the stations of one hostapd interface with the key id
// each joined with.
func stations(path string) (map[string]string, error) {
	c, err := dial(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]string{}
	ans, err := c.request("STA-FIRST")
	for n := 0; err == nil && n < maxStations; n++ {
		mac, id, ok := ParseStation([]byte(ans))
		if !ok {
			return out, nil
		}
		out[mac] = id
		ans, err = c.request("STA-NEXT " + mac)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// maxStations bounds one interface's list: hostapd's own limit is 2007
// (max_num_sta); a router's radio carries far fewer.
const maxStations = 2048
