package openwrt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"curfew/pkg/lab"
)

// TestRpcdUbusAndACLForReal calls every method of the `curfew` ubus object
// the way LuCI does — JSON-RPC to uhttpd's /ubus with a session from
// rpcd's login — with a full and a read-only login, through the real rpcd
// running curfew's plugin against a running daemon.
func TestRpcdUbusAndACLForReal(t *testing.T) {
	// The child has a Wi-Fi key: no answer may carry it.
	const key = "kid-rpcd-secret-7"
	s := startStack(t, "cfrp", "\tlist wifi_key '"+key+"'\n")
	// The daemon wrote the key file where OpenWrt's wireless config
	// points hostapd (/etc/curfew/wifi.psk), for root alone.
	psk := filepath.Join(s.dir, "etc-up/curfew/wifi.psk")
	if fi, err := os.Stat(psk); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v %v, want mode 0600", psk, fi, err)
	} else if b, _ := os.ReadFile(psk); !strings.Contains(string(b), "\nkeyid=kid 00:00:00:00:00:00 "+key+"\n") {
		t.Errorf("key file:\n%s", b)
	}
	var said []string
	defer func() {
		for _, answer := range said {
			if strings.Contains(answer, key) {
				t.Errorf("an rpcd answer carries the child's Wi-Fi key: %s", answer)
			}
		}
	}()
	full, err := s.login(fullUser)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := s.login(readUser)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(sid, method string, args map[string]any) map[string]any {
		t.Helper()
		code, res, err := s.call(sid, "curfew", method, args)
		if err != nil || code != 0 {
			t.Fatalf("%s: code %d, %v", method, code, err)
		}
		if e, bad := res["error"]; bad {
			t.Fatalf("%s: error %v", method, e)
		}
		js, _ := json.Marshal(res)
		said = append(said, string(js))
		return res
	}
	list := func(res map[string]any) []any {
		t.Helper()
		l, isList := res["result"].([]any)
		if !isList {
			t.Fatalf("no result list in %v", res)
		}
		return l
	}

	// reading
	st := ok(full, "status", nil)
	if st["backend"] != "nftables" || st["config"].(map[string]any)["ok"] != true {
		t.Errorf("status = %v", st)
	}
	if devs := list(ok(full, "devices", nil)); len(devs) < 2 {
		t.Errorf("devices = %v", devs)
	}
	ex := ok(full, "explain", map[string]any{"target": "kid"})
	if devs, _ := ex["devices"].([]any); len(devs) != 2 || !strings.Contains(devs[0].(map[string]any)["text"].(string), "online") {
		t.Errorf("explain = %v", ex)
	}
	list(ok(full, "log", map[string]any{"limit": 10}))
	list(ok(full, "usage", map[string]any{"days": 3}))
	if svcs := list(ok(full, "services", nil)); len(svcs) < 5 {
		t.Errorf("services = %v", svcs)
	}
	// the read-only login reads too, the children's requests among it
	ok(viewer, "status", nil)
	list(ok(viewer, "requests", nil))

	// writing, and what the daemon reports after it
	if r := ok(full, "pause", map[string]any{"target": "kid", "for": "30m"}); !strings.HasPrefix(r["message"].(string), "paused kid until") {
		t.Errorf("pause = %v", r)
	}
	ex = ok(full, "explain", map[string]any{"target": "kid"})
	if text := ex["devices"].([]any)[0].(map[string]any)["text"].(string); !strings.Contains(text, "paused by parent") {
		t.Errorf("after pause: %s", text)
	}
	ok(full, "resume", map[string]any{"target": "kid"})
	ok(full, "allow", map[string]any{"target": "kid", "until": "23:59"})
	if r := ok(full, "grant", map[string]any{"target": "kid", "amount": "15m"}); r["message"] != "granted kid 15m more screen time today" {
		t.Errorf("grant = %v", r)
	}
	if r := ok(full, "grant", map[string]any{"target": "kid", "amount": "15m", "service": "youtube"}); r["message"] != "granted kid 15m more YouTube today" {
		t.Errorf("grant of a service's time = %v", r)
	}
	if r := ok(full, "assign", map[string]any{"mac": "02:c0:00:00:00:1e", "profile": "kid", "name": "Guest tablet"}); !strings.Contains(r["message"].(string), "Guest tablet") {
		t.Errorf("assign = %v", r)
	}

	// bad arguments: a JSON error at once, never a hang
	for method, args := range map[string]map[string]any{
		"explain": {},
		"pause":   {"target": "kid", "for": "banana"},
		"grant":   {"target": "kid", "amount": "lots"},
		"assign":  {"mac": "ff:ff:ff:ff:ff:ff", "profile": "kid"},
		"allow":   {"target": "nobody", "for": "1h"},
		// every argument type as rpcd passes it (a string, an int, a bool)
		"approve": {"id": "99", "minutes": 15, "whole_profile": true},
		"deny":    {"id": "99"},
	} {
		t0 := time.Now()
		code, res, err := s.call(full, "curfew", method, args)
		if err != nil || code != 0 || res["error"] == nil {
			t.Errorf("%s %v: code %d, %v, %v — want a JSON error", method, args, code, res, err)
		}
		// a bound that tells an answer from a hang until rpcd's exec
		// timeout (30 s), with room for a loaded machine
		if took := time.Since(t0); took > 10*time.Second {
			t.Errorf("%s with bad arguments took %v", method, took)
		}
	}

	// the read-only login may not act
	for _, method := range []string{"pause", "resume", "allow", "grant", "assign", "approve", "deny"} {
		if _, _, err := s.call(viewer, "curfew", method, map[string]any{"target": "kid", "for": "10m", "id": "1"}); err == nil || !strings.Contains(err.Error(), "Access denied") {
			t.Errorf("read-only %s: %v, want access denied", method, err)
		}
	}
	// nor may a session that never logged in read
	if _, _, err := s.call("00000000000000000000000000000000", "curfew", "status", nil); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("anonymous status: %v", err)
	}

	// the daemon down: a JSON error at once
	s.stopDaemon()
	var took time.Duration
	lab.WaitFor(5*time.Second, func() bool {
		t0 := time.Now()
		code, res, err := s.call(full, "curfew", "status", nil)
		took = time.Since(t0)
		return err == nil && code == 0 && res["error"] == "the curfew daemon is not running"
	})
	if took > 10*time.Second { // an answer, not rpcd's 30 s timeout
		t.Errorf("status with the daemon down took %v", took)
	}
	if code, res, err := s.call(full, "curfew", "status", nil); err != nil || res["error"] != "the curfew daemon is not running" {
		t.Errorf("daemon down: %d %v %v", code, res, err)
	}
}

var countRE = regexp.MustCompile(`"blocked_count":([1-9][0-9]*)`)

// An answer crosses ubus as one message of at most 1 MB (UBUS_MAX_MSGLEN);
// before, with 30,000 prefixes, status was 501 kB and explain of the
// profile (the whole list for each device) timed out, after which rpcd had
// lost the curfew object. Every reading method now answers in well under
// 64 kB and says how many destinations the profile blocks rather than
// listing them all.
func TestRpcdAnswersWithABigBlockList(t *testing.T) {
	var lines strings.Builder
	const n = 30000
	for i := range n {
		fmt.Fprintf(&lines, "\tlist block '10.%d.%d.0/24'\n", i/256, i%256)
	}
	s := startStack(t, "cfrb", lines.String())
	sid, err := s.login(fullUser)
	if err != nil {
		t.Fatal(err)
	}
	// the first plan takes a moment with 30,000 prefixes
	lab.WaitFor(10*time.Second, func() bool {
		_, res, err := s.call(sid, "curfew", "status", nil)
		return err == nil && res["plan"] != nil
	})
	for _, c := range []struct {
		method string
		args   map[string]any
	}{
		{"status", nil},
		{"devices", nil},
		{"explain", map[string]any{"target": "kid"}},
		{"explain", map[string]any{"target": "Kid phone"}},
	} {
		code, res, err := s.call(sid, "curfew", c.method, c.args)
		if err != nil || code != 0 || res["error"] != nil {
			t.Errorf("%s %v: code %d, error %v %v", c.method, c.args, code, err, res["error"])
			continue
		}
		raw, _ := json.Marshal(res)
		if len(raw) > 64<<10 {
			t.Errorf("%s %v: %d bytes of JSON", c.method, c.args, len(raw))
		}
		if c.method == "devices" {
			continue
		}
		// the sample config's kid profile blocks two more
		if m := countRE.FindStringSubmatch(string(raw)); m == nil || m[1] != fmt.Sprint(n+2) {
			t.Errorf("%s %v does not say the profile blocks %d destinations: %.300s", c.method, c.args, n+2, raw)
		}
	}
}
