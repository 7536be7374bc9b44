package page

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	berlin, _ = time.LoadLocation("Europe/Berlin")
	evening   = time.Date(2026, 12, 1, 21, 7, 0, 0, berlin)
	morning   = time.Date(2026, 12, 2, 7, 0, 0, 0, berlin)
)

func TestPageSaysWhyUntilWhenAndOffersToAsk(t *testing.T) {
	tests := []struct {
		name string
		lang string
		v    View
	}{
		{"bedtime", "en", View{Device: "Kid phone", Cause: "schedule", Schedule: "bedtime", Until: morning, CanAsk: true, AsksLeft: 5}},
		{"bedtime-de", "de", View{Device: "Kid phone", Cause: "schedule", Schedule: "bedtime", Until: morning, CanAsk: true, AsksLeft: 5}},
		{"paused-without-end", "en", View{Device: "Kid phone", Cause: "pause", CanAsk: true, AsksLeft: 2}},
		{"budget-used", "de", View{Device: "Kid phone", Cause: "limit", Until: morning, CanAsk: true, AsksLeft: 5}},
		{"asked-waiting", "en", View{Device: "Kid phone", Cause: "schedule", Until: morning, CanAsk: true, AsksLeft: 4,
			Request: &Request{Minutes: 30, Message: "homework, please", AskedAt: evening, Status: "open"}}},
		{"approved-online", "en", View{Device: "Kid phone", Online: true, Until: evening.Add(30 * time.Minute),
			Request: &Request{Minutes: 30, AskedAt: evening, Status: "approved", AnsweredAt: evening.Add(time.Minute), Granted: 30}}},
		{"denied-de", "de", View{Device: "Kid phone", Cause: "schedule", Until: morning, CanAsk: true, AsksLeft: 3,
			Request: &Request{Minutes: 60, AskedAt: evening, Status: "denied", AnsweredAt: evening.Add(time.Minute)}}},
		{"last-request-used", "en", View{Device: "Kid phone", Cause: "schedule", Until: morning, AsksLeft: 0,
			Request: &Request{Minutes: 15, AskedAt: evening, Status: "denied", AnsweredAt: evening.Add(time.Minute)}}},
		{"winding-down", "en", View{Device: "Kid phone", Online: true, Until: evening.Add(8 * time.Minute), SlowUntil: evening.Add(8 * time.Minute)}},
		{"winding-down-de", "de", View{Device: "Kid phone", Online: true, Until: evening.Add(7*time.Minute + 30*time.Second), SlowUntil: evening.Add(7*time.Minute + 30*time.Second)}},
		{"youtube-used-up", "en", View{Device: "Kid phone", Online: true, Until: morning, CanAsk: true, AsksLeft: 5,
			UsedUp: []Service{{Name: "youtube", Title: "YouTube"}}}},
		{"two-services-used-up-de", "de", View{Device: "Kid phone", Online: true, CanAsk: true, AsksLeft: 3,
			UsedUp: []Service{{Name: "youtube", Title: "YouTube"}, {Name: "roblox", Title: "Roblox"}}}},
		{"youtube-asked", "en", View{Device: "Kid phone", Online: true, CanAsk: true, AsksLeft: 4,
			UsedUp:  []Service{{Name: "youtube", Title: "YouTube"}},
			Request: &Request{Service: "YouTube", Minutes: 15, AskedAt: evening, Status: "open"}}},
		{"clock-not-set", "en", View{Device: "02:c0:00:00:00:0a", Cause: "clock"}},
		{"unknown-language-is-english", "fr", View{Device: "Kid phone", Cause: "pause", Until: evening.Add(time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.v.Now, tt.v.Loc, tt.v.Base = evening, berlin, "http://192.0.2.1:8099"
			got := Render(tt.v, tt.lang)
			path := filepath.Join("testdata", tt.name+".html")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("page differs from %s (run go test -update and review):\n%s", path, got)
			}
		})
	}
}

func TestWhatADeviceSentIsTextNotMarkup(t *testing.T) {
	v := View{Device: `<b onmouseover="x">Kid</b>`, Cause: "schedule", Schedule: `"><script>`, CanAsk: true, AsksLeft: 1,
		Request: &Request{Minutes: 15, Message: `<script>alert("hi")</script>`, AskedAt: evening, Status: "denied"},
		Now:     evening, Loc: berlin, Base: "http://192.0.2.1:8099"}
	got := string(Render(v, "en"))
	for _, bad := range []string{"<script>", "<b ", `"><script>`} {
		if strings.Contains(got, bad) {
			t.Errorf("page contains %q unescaped:\n%s", bad, got)
		}
	}
	if !strings.Contains(got, "&lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt;") {
		t.Errorf("message not shown as text:\n%s", got)
	}
}

func TestLanguage(t *testing.T) {
	tests := []struct{ header, want string }{
		{"", "en"},
		{"de-DE,de;q=0.9,en;q=0.8", "de"},
		{"en-US,en;q=0.9,de;q=0.8", "en"},
		{"fr-FR,fr;q=0.9,de;q=0.5", "de"},
		{"fr-FR", "en"},
		{"DE", "de"},
		{"de;q=0", "en"},
		{"de;q=2", "en"},
		{"en;q=0.1, de;q=0.3", "de"},
	}
	for _, tt := range tests {
		if got := Language(tt.header); got != tt.want {
			t.Errorf("Language(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestCleanMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  homework,\n\tplease  ", "homework, please"},
		{"\x1b[31mred\x1b[0m", "[31mred[0m"},
		{"evil\u202etxt.exe", "eviltxt.exe"},
		{"bad \xff utf8", "bad utf8"},
		{strings.Repeat("é", 200), strings.Repeat("é", MaxMessage)},
		{"zero\u200bwidth\u200c\u200d\u2060\ufeff", "zerowidth"},
		{"soft\u00adhyphen", "softhyphen"},
		{"tag\U000E0041\U000E007Fs", "tags"},
		{"filler\u3164\u115f\u1160\uffa0\u2800!", "filler!"},
		{"private\ue000\U000F0000use", "privateuse"},
		{"unassigned\U0003FFFF", "unassigned"},
		{"zalgo" + strings.Repeat("\u0301\u0316", 20), "zalgo\u0301\u0316"},
		{"\u0301starts with a mark", "starts with a mark"},
		// what a note needs stays
		{"Café (decomposed: Cafe\u0301), हिन्दी, ❤️ 👍🏽 ok?", "Café (decomposed: Cafe\u0301), हिन्दी, ❤️ 👍🏽 ok?"},
	}
	for _, tt := range tests {
		if got := CleanMessage(tt.in); got != tt.want {
			t.Errorf("CleanMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeSource is one device at 192.0.2.10, offline at bedtime.
type fakeSource struct {
	asked []string
	err   error
}

func (f *fakeSource) View(a netip.Addr) (View, bool) {
	if !a.IsLoopback() {
		return View{}, false
	}
	v := View{Device: "Kid phone", Cause: "schedule", Until: morning, CanAsk: true, AsksLeft: 5, Now: evening, Loc: berlin}
	if len(f.asked) > 0 {
		v.Request = &Request{Minutes: 30, AskedAt: evening, Status: "open", Message: f.asked[len(f.asked)-1]}
	}
	return v, true
}

func (f *fakeSource) Ask(a netip.Addr, form Form) error {
	if f.err != nil {
		return f.err
	}
	f.asked = append(f.asked, form.Message)
	return nil
}

func TestServerAnswersEveryPathWithThePageAndTakesRequests(t *testing.T) {
	src := &fakeSource{}
	s := NewServer(src)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go s.serve(ln)
	srv := struct{ URL string }{"http://" + ln.Addr().String()}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/generate_204")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Kid phone is offline.") {
		t.Errorf("probe got %d:\n%s", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("connection kept alive: after an approval the device's next request must leave for the internet")
	}
	if !strings.Contains(string(body), `action="`+srv.URL+`/request"`) {
		t.Errorf("form does not post to the page's own address %s:\n%s", srv.URL, body)
	}
	m := regexp.MustCompile(`<input type="hidden" name="t" value="([0-9a-f]{32})">`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no token in the form:\n%s", body)
	}
	token := m[1]
	post := func(form string) *http.Response {
		t.Helper()
		resp, err := noRedirect.Post(srv.URL+"/request", "application/x-www-form-urlencoded", strings.NewReader(form+"&t="+token))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = b
		return resp
	}
	if r := post("minutes=30&message=" + strings.Repeat("x", 10)); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != srv.URL+"/" {
		t.Errorf("request: %d, Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	if len(src.asked) != 1 || src.asked[0] != strings.Repeat("x", 10) {
		t.Errorf("asked %q", src.asked)
	}
	if r := post("minutes=600"); r.StatusCode != 200 || !strings.Contains(string(body), "Choose 15, 30 or 60 minutes.") {
		t.Errorf("600 minutes: %d\n%s", r.StatusCode, body)
	}
	if r := post("minutes=15&message=" + strings.Repeat("y", MaxBody)); r.StatusCode != 413 || len(src.asked) != 1 {
		t.Errorf("a body over %d bytes: %d, asked %d times", MaxBody, r.StatusCode, len(src.asked))
	}
	src.err = TooMany
	if r := post("minutes=15"); r.StatusCode != 200 || !strings.Contains(string(body), "You have asked as often as you can today.") {
		t.Errorf("too many: %d\n%s", r.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/request", nil)
	if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %v %v", resp, err)
	}

	// A page elsewhere posting to the router: no token, or the router's
	// port under another name (DNS rebinding), is refused; a probe's
	// own Host (a redirected request, port 80) is served.
	src.err, src.asked = nil, nil
	do := func(method, host, form string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/request", strings.NewReader(form))
		if method == http.MethodGet {
			req, _ = http.NewRequest(method, srv.URL+"/generate_204", nil)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Host = host
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	for _, tc := range []struct {
		what, method, host, form string
		want                     int
	}{
		{"a cross-site form without the token", http.MethodPost, strings.TrimPrefix(srv.URL, "http://"), "minutes=15", 403},
		{"a wrong token", http.MethodPost, strings.TrimPrefix(srv.URL, "http://"), "minutes=15&t=00000000000000000000000000000000", 403},
		{"the token under a rebound name", http.MethodPost, "evil.test" + port, "minutes=15&t=" + token, 421},
		{"the token to the redirect's Host", http.MethodPost, "connectivitycheck.gstatic.com", "minutes=15&t=" + token, 403},
		{"reading the page under a rebound name", http.MethodGet, "evil.test" + port, "", 421},
		{"a probe's own Host", http.MethodGet, "connectivitycheck.gstatic.com", "", 200},
	} {
		if got := do(tc.method, tc.host, tc.form); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, got, tc.want)
		}
	}
	if len(src.asked) != 0 {
		t.Errorf("refused posts were filed: %q", src.asked)
	}
}

// One device cannot hold every connection of the page: its fifth at once
// is closed, another device's is served.
func TestOneSourceHoldsAtMostItsShareOfThePage(t *testing.T) {
	s := NewServer(&fakeSource{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go s.serve(ln)
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: time.Second}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for range MaxConnsPerSource {
		dial("127.0.0.1") // idle: each holds its slot for up to connTimeout
	}
	extra := dial("127.0.0.1")
	extra.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil {
		t.Errorf("a connection over the source's %d was served (%d bytes)", MaxConnsPerSource, n)
	}
	other := dial("127.0.0.2")
	other.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if line, err := bufio.NewReader(other).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Errorf("another device's connection: %q %v", line, err)
	}
}

func FuzzLanguage(f *testing.F) {
	f.Add("de-DE,de;q=0.9,en;q=0.8")
	f.Add("en;q=abc,,;;=")
	f.Fuzz(func(t *testing.T, h string) {
		if got := Language(h); texts[got] == nil {
			t.Fatalf("Language(%q) = %q, not a language of the page", h, got)
		}
	})
}

func FuzzParseForm(f *testing.F) {
	f.Add("minutes=30&message=hello")
	f.Add("minutes=15&message=%3Cscript%3E%1b%5B31m")
	f.Add("minutes=15&service=youtube")
	f.Add("minutes=60&service=%3Cb%3E")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := ParseForm([]byte(body), "application/x-www-form-urlencoded")
		if err != nil {
			return
		}
		minutes, msg := form.Minutes, form.Message
		if len(form.Service) > 32 || strings.Trim(form.Service, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("service %q taken", form.Service)
		}
		if minutes != 15 && minutes != 30 && minutes != 60 {
			t.Fatalf("minutes %d taken", minutes)
		}
		if !utf8.ValidString(msg) || utf8.RuneCountInString(msg) > MaxMessage {
			t.Fatalf("message %q: invalid or too long", msg)
		}
		for _, r := range msg {
			if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("message %q keeps control character %U", msg, r)
			}
		}
	})
}

func TestRequestsAreReadWithinTheirBounds(t *testing.T) {
	tests := []struct {
		name, raw string
		want      error
		path      string
	}{
		{"probe", "GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\n\r\n", nil, "/generate_204"},
		{"query dropped", "GET /hotspot-detect.html?x=1 HTTP/1.0\r\n\r\n", nil, "/hotspot-detect.html"},
		{"absolute form", "GET http://captive.apple.com/a/b HTTP/1.1\r\n\r\n", nil, "/a/b"},
		{"form post", "POST /request HTTP/1.1\r\nContent-Length: 10\r\n\r\nminutes=15", nil, "/request"},
		{"header too large", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeader) + "\r\n\r\n", errTooLarge, ""},
		{"too many fields", "GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", maxFields+1) + "\r\n", errTooLarge, ""},
		{"body too large", fmt.Sprintf("POST /request HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MaxBody+1), errTooLarge, ""},
		{"chunked", "POST /request HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", errBad, ""},
		{"not HTTP", "HELLO\r\n\r\n", errBad, ""},
		{"short body", "POST /request HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", errBad, ""},
		{"bad field", "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", errBad, ""},
	}
	for _, tt := range tests {
		r, err := readRequest(bufio.NewReaderSize(strings.NewReader(tt.raw), 4096))
		if err != tt.want || (err == nil && r.path != tt.path) {
			t.Errorf("%s: %v %+v, want %v %q", tt.name, err, r, tt.want, tt.path)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add("POST /request HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nminutes=15")
	f.Add("GET http://x/ HTTP/1.1\r\nAccept-Language: de\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := readRequest(bufio.NewReaderSize(strings.NewReader(raw), 4096))
		if err != nil {
			return
		}
		if len(r.body) > MaxBody || len(r.header) > maxFields || !strings.HasPrefix(r.path, "/") && r.path != "" && !strings.Contains(raw, r.path) {
			t.Fatalf("%q read as %+v", raw, r)
		}
	})
}
