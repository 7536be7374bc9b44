package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type received struct {
	mu    sync.Mutex
	got   []*http.Request
	body  [][]byte
	fails int // answer 500 this many times first
}

func (rc *received) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.fails > 0 {
		rc.fails--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.got, rc.body = append(rc.got, r), append(rc.body, b)
}

func (rc *received) wait(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		rc.mu.Lock()
		k := len(rc.got)
		rc.mu.Unlock()
		if k >= n {
			return
		}
	}
	t.Fatalf("%d notifications arrived, want %d", len(rc.got), n)
}

func start(t *testing.T, urls []string, events ...string) *Notifier {
	n := New(slog.New(slog.DiscardHandler))
	n.Retry = 10 * time.Millisecond
	n.Configure(urls, events)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go n.Run(ctx)
	return n
}

var ev = Event{Event: Request, Device: "Kid <phone>", MAC: "02:c0:00:00:00:0a", Profile: "kid",
	Text: "Kid <phone> asks for 30 more minutes", Time: time.Unix(1.8e9, 0).UTC(), ID: "3", Minutes: 30, Message: `<b>"please"</b>`}

func TestAWebhookGetsTheEventAsJSON(t *testing.T) {
	rc := &received{fails: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := start(t, []string{srv.URL + "/hook"}, Request)
	n.Send(ev)
	n.Send(Event{Event: NewDevice, Device: "x"}) // not selected
	rc.wait(t, 1)
	if ct := rc.got[0].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got Event
	if err := json.Unmarshal(rc.body[0], &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("got %+v\nwant %+v", got, ev)
	}
	time.Sleep(100 * time.Millisecond)
	if len(rc.got) != 1 {
		t.Errorf("%d notifications: an event not in notify_events was sent", len(rc.got))
	}
}

func TestAnNtfyTopicGetsTextAndATitle(t *testing.T) {
	rc := &received{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := start(t, []string{srv.URL + "/kids?format=text&priority=high"}, Request)
	n.Send(ev)
	rc.wait(t, 1)
	r := rc.got[0]
	if r.URL.Query().Has("format") || r.URL.Query().Get("priority") != "high" {
		t.Errorf("query sent: %q (format=text must be removed, the rest kept)", r.URL.RawQuery)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || string(rc.body[0]) != ev.Text {
		t.Errorf("%q: %q", ct, rc.body[0])
	}
	title, err := new(mime.WordDecoder).DecodeHeader(r.Header.Get("Title"))
	if err != nil || title != "curfew: Kid <phone> asks for more time" {
		t.Errorf("Title %q (%v)", title, err)
	}
}

func TestTitlesThatAreNotASCIIAreEncodedWords(t *testing.T) {
	for _, title := range []string{
		"curfew: Kid phone asks for more time",
		"curfew: Jürgens Handy möchte mehr Zeit",
		"curfew: " + strings.Repeat("ü", 80) + " = ? _ end",
		"curfew: 孩子的手机 🙂 asks",
	} {
		enc := qEncode(title)
		got, err := new(mime.WordDecoder).DecodeHeader(enc)
		if err != nil || got != title {
			t.Errorf("%q encoded as %q reads back as %q (%v)", title, enc, got, err)
		}
		for _, w := range strings.Fields(enc) {
			if len(w) > 75 || strings.ContainsAny(w, "\r\n") {
				t.Errorf("%q: word %q is longer than RFC 2047's 75 characters", title, w)
			}
		}
		if want := mime.QEncoding.Encode("utf-8", title); title == want && enc != title {
			t.Errorf("plain ASCII %q was encoded: %q", title, enc)
		}
	}
}

func TestAReceiverThatIsDownNeverBlocksTheSender(t *testing.T) {
	n := start(t, []string{"http://127.0.0.1:1/down"}, Request)
	begin := time.Now()
	for i := 0; i < QueueSize*3; i++ {
		n.Send(ev)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("sending %d events to a dead receiver took %v", QueueSize*3, d)
	}
}

func TestTitleDropsControlCharacters(t *testing.T) {
	if got := Title(Event{Event: Bypass, Device: "a\r\nInjected: yes\u202e"}); got != "curfew: aInjected: yes tried to get around the filter" {
		t.Errorf("Title = %q", got)
	}
}

func TestHTTPSGoesThroughTheRoutersOwnTool(t *testing.T) {
	u, _ := url.Parse("https://ntfy.example/kids?priority=high")
	header := [][2]string{{"Content-Type", "text/plain; charset=utf-8"}, {"Title", "curfew: Kid asks for more time"}}
	has := func(tools ...string) func(string) (string, error) {
		return func(name string) (string, error) {
			if slices.Contains(tools, name) {
				return "/usr/bin/" + name, nil
			}
			return "", errors.New("not found")
		}
	}
	name, args := command(u, header, "curfew: Kid asks for more time", []byte("x"), has("curl", "uclient-fetch"))
	if name != "curl" || !slices.Contains(args, "Title: curfew: Kid asks for more time") || args[len(args)-1] != u.String() {
		t.Errorf("curl: %s %q", name, args)
	}
	name, args = command(u, header, "curfew: Kid asks for more time", []byte("x"), has("uclient-fetch"))
	if name != "uclient-fetch" || !slices.Contains(args, "--post-data=x") ||
		args[len(args)-1] != "https://ntfy.example/kids?priority=high&title=curfew%3A+Kid+asks+for+more+time" {
		t.Errorf("uclient-fetch: %s %q", name, args)
	}
	if name, _ := command(u, header, "", nil, has()); name != "" {
		t.Errorf("no tool: %s", name)
	}
}

// A child's flood of events (a new random MAC after another, bypass tries
// of one device) while the receiver is slow: the parent-facing events
// that follow are still sent, and one device takes no more than its share.
func TestAFloodOfAChildsEventsNeverPushesOutABudgetUsed(t *testing.T) {
	release := make(chan struct{})
	rc := &received{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // the first delivery holds the sender until the flood is queued
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	n := start(t, []string{srv.URL + "/hook"}, NewDevice, Bypass, Request, BudgetUsed)
	n.Send(Event{Event: NewDevice, MAC: "5a:00:00:00:ff:ff"}) // taken by the sender, held
	time.Sleep(50 * time.Millisecond)
	for i := range 500 {
		n.Send(Event{Event: NewDevice, MAC: fmt.Sprintf("5a:00:00:00:%02x:%02x", i>>8, i&0xff)})
	}
	for range 50 {
		n.Send(Event{Event: Bypass, MAC: "02:c0:00:00:00:0a", Device: "Kid phone"})
	}
	n.Send(Event{Event: BudgetUsed, MAC: "02:c0:00:00:00:0a", Device: "Kid phone"})
	n.Send(Event{Event: Request, MAC: "02:c0:00:00:00:0b", Device: "Kid tablet"})
	close(release)
	rc.wait(t, QueueSize+1)
	time.Sleep(100 * time.Millisecond)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	kinds := map[string]int{}
	for _, b := range rc.body {
		var e Event
		json.Unmarshal(b, &e)
		kinds[e.Event]++
	}
	if kinds[BudgetUsed] != 1 || kinds[Request] != 1 {
		t.Errorf("sent %v: a budget_used or a request was lost to the flood", kinds)
	}
	if kinds[Bypass] > PerDevice {
		t.Errorf("sent %d bypass events of one device, want at most %d waiting at once", kinds[Bypass], PerDevice)
	}
	if len(rc.body) > QueueSize+1 {
		t.Errorf("sent %d events, more than the queue holds", len(rc.body))
	}
}

// A profile's own URLs (a child's topic) hear its wind-down whatever the
// parents chose; the parents' URLs hear it only when notify_events lists
// it, and a URL on both lists hears it once.
func TestAProfilesOwnURLsHearItsWindDown(t *testing.T) {
	parents, child := &received{}, &received{}
	ps, cs := httptest.NewServer(parents), httptest.NewServer(child)
	defer ps.Close()
	defer cs.Close()
	wind := Event{Event: WindDown, Device: "Kid phone", Profile: "kid", Text: "bedtime in 10 minutes", To: []string{cs.URL + "/kid?format=text"}}

	n := start(t, []string{ps.URL + "/hook"}, Request, BudgetUsed)
	n.Send(wind)
	child.wait(t, 1)
	if got := child.got[0].Header.Get("Title"); got != "curfew: kid winds down: bedtime soon" || string(child.body[0]) != "bedtime in 10 minutes" {
		t.Errorf("the child's topic got %q: %q", got, child.body[0])
	}
	time.Sleep(100 * time.Millisecond)
	if len(parents.got) != 0 {
		t.Error("the parents heard a wind-down they did not ask for")
	}

	both := start(t, []string{ps.URL + "/hook", cs.URL + "/kid?format=text"}, WindDown)
	both.Send(wind)
	parents.wait(t, 1)
	child.wait(t, 2)
	time.Sleep(100 * time.Millisecond)
	if len(parents.got) != 1 || len(child.got) != 2 {
		t.Errorf("asked for by the parents: they got %d, the child's topic %d in all (want 1 and 2)", len(parents.got), len(child.got))
	}
}
