package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"curfew/pkg/lab"
)

// receiver is a parent's webhook receiver (and an ntfy-style topic) in the
// lab's internet.
type receiver struct {
	mu   sync.Mutex
	json []map[string]any
	text []string
	at   []time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.URL.Path == "/ntfy" {
		title, _ := new(mime.WordDecoder).DecodeHeader(r.Header.Get("Title"))
		rc.text = append(rc.text, title+"|"+r.Header.Get("Content-Type")+"|"+string(body))
		return
	}
	var ev map[string]any
	if json.Unmarshal(body, &ev) == nil {
		rc.json = append(rc.json, ev)
		rc.at = append(rc.at, time.Now())
	}
}

func (rc *receiver) events(kind string) []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []map[string]any
	for _, ev := range rc.json {
		if ev["event"] == kind {
			out = append(out, ev)
		}
	}
	return out
}

// curl fetches url from a device's namespace with the real curl, as the
// probe of a phone would, and returns the status line and body.
func curl(t *testing.T, l *lab.Lab, ns string, args ...string) (int, string) {
	t.Helper()
	out, err := l.Exec(context.Background(), ns, "curl", append([]string{"-sS", "-g", "--max-time", "3", "-o", "-", "-w", "\n%{http_code}"}, args...)...)
	if err != nil {
		return 0, out
	}
	i := strings.LastIndexByte(out, '\n')
	var code int
	fmt.Sscan(out[i+1:], &code)
	return code, out[:i]
}

// TestAskForMoreTime walks the bedtime page: an offline child's probes
// get the page (not the probe's answer), over IPv4 and IPv6, in its
// language; the child's request reaches the parents' webhook and topic;
// the parent approves over SSH and the child is online within a second.
func TestAskForMoreTime(t *testing.T) {
	l := newLab(t, "cfe8")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := &receiver{}
	if err := l.ServeHTTP(ctx, l.Internet, lab.InternetV4+":9000", rc); err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(london)
	hook := "http://" + lab.InternetV4 + ":9000"
	cfg := l.SampleConfig(now.Add(-time.Minute).Format("15:04"), now.Add(3*time.Hour).Format("15:04"),
		"\tlist notify '"+hook+"/hook'\n\tlist notify '"+hook+"/ntfy?format=text'\n")
	d := start(t, l, cfg)
	reach(t, l, "TCP/IPv4 at bedtime", l.Child.NS, false, func() error { return l.TCP(l.Child.NS, lab.InternetV4) })
	until := now.Add(3 * time.Hour).Truncate(time.Minute).Format("15:04")

	probes := []struct{ what, url, host string }{
		{"Android", "http://" + lab.InternetV4 + "/generate_204", "connectivitycheck.gstatic.com"},
		{"Apple", "http://" + lab.CaptiveAnswer + "/hotspot-detect.html", "captive.apple.com"},
		{"Windows", "http://" + lab.InternetV4 + "/connecttest.txt", "www.msftconnecttest.com"},
		{"Android over IPv6", "http://[" + lab.InternetV6 + "]/generate_204", "connectivitycheck.gstatic.com"},
	}
	for _, p := range probes {
		code, body := curl(t, l, l.Child.NS, "-H", "Host: "+p.host, p.url)
		if code != 200 || !strings.Contains(body, "Kid phone is offline.") || !strings.Contains(body, until) || strings.Contains(body, "Success") {
			t.Errorf("child's %s probe: %d, want the page naming the device and %s:\n%s", p.what, code, until, body)
		}
	}
	if code, body := curl(t, l, l.Child.NS, "-H", "Accept-Language: de-DE,de;q=0.9", "http://"+lab.InternetV4+"/generate_204"); !strings.Contains(body, "Kid phone ist offline.") {
		t.Errorf("German page: %d\n%s", code, body)
	}
	for _, h := range []lab.Host{l.Parent, l.Guest} {
		if code, body := curl(t, l, h.NS, "http://"+lab.InternetV4+"/generate_204"); code != 204 {
			t.Errorf("%s (online) got %d, want the internet's 204:\n%s", h.NS, code, body)
		}
	}

	// The child taps "Ask": the form posts to the page's own address,
	// with the form's token, as a browser sends it.
	_, page := curl(t, l, l.Child.NS, "http://"+lab.InternetV4+"/generate_204")
	form := regexp.MustCompile(`action="([^"]+)">\s*<input type="hidden" name="t" value="([0-9a-f]+)">`).FindStringSubmatch(page)
	if form == nil {
		t.Fatalf("no form with its token on the page:\n%s", page)
	}
	action, token := form[1], form[2]
	if code, body := curl(t, l, l.Child.NS, "-d", "minutes=30", "http://"+lab.InternetV4+"/request"); code != 403 {
		t.Errorf("a post without the form's token: %d, want 403\n%s", code, body)
	}
	tap := time.Now()
	msg := `<script>alert("more")</script>`
	code, body := curl(t, l, l.Child.NS, "--data-urlencode", "minutes=30", "--data-urlencode", "message="+msg, "--data-urlencode", "t="+token, action)
	if code != 303 {
		t.Fatalf("request: %d\n%s", code, body)
	}
	if !lab.WaitFor(2*time.Second, func() bool { return len(rc.events("request")) == 1 }) {
		t.Fatalf("no request at the webhook within 2 s of the tap: %+v", rc.json)
	}
	rc.mu.Lock()
	ev, arrived := rc.json[0], rc.at[0].Sub(tap)
	rc.mu.Unlock()
	t.Logf("tap to webhook: %v", arrived.Round(time.Millisecond))
	for k, want := range map[string]any{"event": "request", "device": "Kid phone", "mac": l.Child.MAC, "profile": "kid",
		"id": "1", "minutes": float64(30), "message": msg} {
		if ev[k] != want {
			t.Errorf("webhook %s = %v, want %v", k, ev[k], want)
		}
	}
	if s, _ := ev["text"].(string); !strings.Contains(s, "Kid phone asks for 30 more minutes") {
		t.Errorf("webhook text %q", ev["text"])
	}
	if !lab.WaitFor(2*time.Second, func() bool { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.text) > 0 }) {
		t.Error("nothing at the ntfy-style topic")
	} else if got := rc.text[0]; !strings.HasPrefix(got, "curfew: Kid phone asks for more time|text/plain; charset=utf-8|Kid phone asks for 30") {
		t.Errorf("topic got %q", got)
	}
	// asking again is the same request
	curl(t, l, l.Child.NS, "-d", "minutes=60", "-d", "t="+token, action)
	out, _ := d.cli(t, "requests", "--json")
	var reqs []map[string]any
	if err := json.Unmarshal([]byte(out), &reqs); err != nil || len(reqs) != 1 || reqs[0]["status"] != "open" || reqs[0]["message"] != msg {
		t.Fatalf("curfew requests --json after asking twice: %v\n%s", err, out)
	}
	// the page shows the message as text, and that it waits
	_, body = curl(t, l, l.Child.NS, "http://"+lab.InternetV4+"/")
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") || !strings.Contains(body, "Waiting for an answer") {
		t.Errorf("page after asking:\n%s", body)
	}
	// the page straight at the router's address, over IPv6
	if code, body := curl(t, l, l.Child.NS, fmt.Sprintf("http://[%s]:8099/", lab.RouterV6)); code != 200 || !strings.Contains(body, "Waiting for an answer") {
		t.Errorf("page at the router's IPv6 address: %d\n%s", code, body)
	}

	t0 := time.Now()
	out, code2 := d.cli(t, "approve", "1")
	if code2 != 0 || !strings.Contains(out, "approved request 1: allowed Kid phone until") {
		t.Fatalf("approve: %d %s", code2, out)
	}
	if !lab.WaitFor(time.Second, func() bool { return l.TCP(l.Child.NS, lab.InternetV4) == nil }) {
		t.Error("child not online within 1 s of curfew approve")
	}
	t.Logf("approve to online: %v", time.Since(t0).Round(time.Millisecond))
	if code, body := curl(t, l, l.Child.NS, "http://"+lab.InternetV4+"/generate_204"); code != 204 {
		t.Errorf("approved child's probe: %d, want 204 from the internet\n%s", code, body)
	}
	out, _ = d.cli(t, "explain", "Kid phone")
	if !strings.Contains(out, "request 1: asked 30 min at") || !strings.Contains(out, "approved at") {
		t.Errorf("explain lacks the request:\n%s", out)
	}
}

// TestNetworkRestart: OpenWrt's network restart creates br-lan anew. The
// daemon's listeners, bound to the old interface, follow at once: the
// child's DNS is answered and its probe gets the page again.
func TestNetworkRestart(t *testing.T) {
	l := newLab(t, "cfe9")
	now := time.Now().In(london)
	start(t, l, l.SampleConfig(now.Add(-time.Minute).Format("15:04"), now.Add(3*time.Hour).Format("15:04"), ""))
	probe := "http://" + lab.InternetV4 + "/generate_204"
	check := func(when string) {
		t.Helper()
		ok := lab.WaitFor(3*time.Second, func() bool {
			code, body := curl(t, l, l.Child.NS, probe)
			return code == 200 && strings.Contains(body, "Kid phone is offline.")
		})
		if !ok {
			t.Errorf("%s: the child's probe does not get the page", when)
		}
		ok = lab.WaitFor(3*time.Second, func() bool {
			ans, _, err := l.Query(context.Background(), l.Child.NS, lab.RouterV4, "captive.apple.com", "A")
			return err == nil && len(ans) == 1
		})
		if !ok {
			t.Errorf("%s: the child's DNS is not answered", when)
		}
	}
	check("before the restart")
	if err := l.RestartLAN(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after br-lan was created anew")
}
