package dnsfilter

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func set(names ...string) *Set {
	var b Builder
	for i, n := range names {
		b.Add(n, uint16(i))
	}
	return b.Build()
}

func TestSuffixMatching(t *testing.T) {
	s := set("tiktok.com", "ads.example.net")
	tests := []struct {
		name, match string
	}{
		{"tiktok.com", "tiktok.com"},
		{"www.tiktok.com", "tiktok.com"},
		{"a.b.c.tiktok.com", "tiktok.com"},
		{"nottiktok.com", ""},
		{"tiktok.com.evil.test", ""},
		{"example.net", ""},
		{"x.ads.example.net", "ads.example.net"},
	}
	for _, tt := range tests {
		m, _, ok := s.Match(tt.name)
		if m != tt.match || ok != (tt.match != "") {
			t.Errorf("Match(%q) = %q %v, want %q", tt.name, m, ok, tt.match)
		}
	}
}

func TestDecisions(t *testing.T) {
	p := &Policy{
		Block:            set("tiktok.com"),
		Sources:          []string{"service tiktok"},
		Lists:            []*List{{Name: "/etc/curfew/adult.txt", Set: set("adult.example")}},
		SafeSearch:       true,
		BypassPrevention: true,
	}
	tests := []struct {
		name   string
		query  string
		action Action
		by     string
		target string
		bypass bool
	}{
		{"blocked service subdomain", "m.tiktok.com", Block, "service tiktok", "", false},
		{"block list", "www.adult.example", Block, "list /etc/curfew/adult.txt", "", false},
		{"google safe search", "www.google.com", Rewrite, "safe search", "forcesafesearch.google.com", false},
		{"google country domain", "www.google.co.uk", Rewrite, "safe search", "forcesafesearch.google.com", false},
		{"bing strict", "www.bing.com", Rewrite, "safe search", "strict.bing.com", false},
		{"duckduckgo safe", "duckduckgo.com", Rewrite, "safe search", "safe.duckduckgo.com", false},
		{"youtube restricted", "www.youtube.com", Rewrite, "safe search", "restrict.youtube.com", false},
		{"safe host itself is not rewritten", "forcesafesearch.google.com", Forward, "", "", false},
		{"google subdomains are not search", "mail.google.com", Forward, "", "", false},
		{"firefox canary", "use-application-dns.net", NXDomain, "bypass: DNS-over-HTTPS/relay canary", "", true},
		{"private relay canary", "mask.icloud.com", NXDomain, "bypass: DNS-over-HTTPS/relay canary", "", true},
		{"doh host", "dns.google", Block, "bypass: DNS-over-HTTPS resolver", "", true},
		{"doh subdomain", "mozilla.cloudflare-dns.com", Block, "bypass: DNS-over-HTTPS resolver", "", true},
		{"anything else", "wikipedia.org", Forward, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.query)
			if d.Action != tt.action || d.By != tt.by || d.Target != tt.target || d.Bypass != tt.bypass {
				t.Errorf("Decide(%q) = %+v", tt.query, d)
			}
		})
	}
}

func TestAllowlistMode(t *testing.T) {
	p := &Policy{Allowlist: true, Allow: set("wikipedia.org"), BypassPrevention: true}
	if d := p.Decide("en.wikipedia.org"); d.Action != Forward {
		t.Errorf("allowed subdomain: %+v", d)
	}
	if d := p.Decide("tiktok.com"); d.Action != Block || d.By != "not on the allowlist" {
		t.Errorf("not allowed: %+v", d)
	}
	if d := p.Decide("use-application-dns.net"); d.Action != NXDomain {
		t.Errorf("canary in allowlist mode: %+v", d)
	}
}

func TestListFormats(t *testing.T) {
	src := `# hosts style
0.0.0.0 ads.example.com tracker.example.com
127.0.0.1 localhost
::1 ip6-localhost
! adblock comment
[Adblock Plus 2.0]
||adblock.example.org^
||options.example.org^$third-party
plain.example.net
Mixed.Case.Example.
example.com##.banner
@@||allowed.example^
/ads/*.js
not_a_domain
0.0.0.0 bad..name
trailing.example.com # comment
`
	var got []string
	st, err := ParseList(strings.NewReader(src), func(d string) { got = append(got, d) })
	if err != nil {
		t.Fatal(err)
	}
	want := "ads.example.com tracker.example.com adblock.example.org options.example.org plain.example.net mixed.case.example trailing.example.com"
	if strings.Join(got, " ") != want {
		t.Errorf("domains:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if st.Entries != 7 || st.Rejected != 5 || st.FirstRejected != 11 {
		t.Errorf("stats = %+v, want 7 entries, 5 rejected from line 11", st)
	}
}

func FuzzParseList(f *testing.F) {
	f.Add([]byte("0.0.0.0 a.example\n||b.example^$x\nc.example\n# c\n"))
	f.Add([]byte("::1 localhost\n@@||x^\nexample.com##.ad\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseList(strings.NewReader(string(data)), func(d string) {
			if n, ok := Normalize(d); !ok || n != d {
				t.Fatalf("emitted a domain that does not normalise to itself: %q", d)
			}
		})
		if err != nil && !strings.Contains(err.Error(), "too long") {
			t.Fatal(err)
		}
	})
}

func TestListsKeepTheLastGoodCopy(t *testing.T) {
	fail := false
	fetch := func(_ context.Context, url string) (io.ReadCloser, error) {
		if fail {
			return nil, errors.New("HTTP 502")
		}
		return io.NopCloser(strings.NewReader("||remote.example^\n")), nil
	}
	file := filepath.Join(t.TempDir(), "local.txt")
	os.WriteFile(file, []byte("0.0.0.0 local.example\n"), 0o644)
	l := NewLists(fetch, nil)
	now := time.Now()
	names := []string{"https://lists.example/list.txt", file}
	if !l.Refresh(context.Background(), names, now) {
		t.Fatal("first refresh changed nothing")
	}
	lists := l.Get(names)
	if len(lists) != 2 {
		t.Fatalf("got %d lists", len(lists))
	}
	if _, _, ok := lists[0].Set.Match("x.remote.example"); !ok {
		t.Error("remote list not loaded")
	}
	if l.Refresh(context.Background(), names, now.Add(time.Hour)) {
		t.Error("a list younger than a day was fetched again")
	}
	fail = true
	os.Remove(file)
	if l.Refresh(context.Background(), names, now.Add(25*time.Hour)) {
		t.Error("a failed refresh reported a change")
	}
	if lists = l.Get(names); len(lists) != 2 {
		t.Fatalf("after a failed refresh: %d lists, want the last good copies", len(lists))
	}
	if l.Refresh(context.Background(), names[:1], now.Add(26*time.Hour)); len(l.Get(names)) != 1 {
		t.Error("a list no longer named was kept")
	}
}

func TestCommandFetchSaysWhatFailed(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := CommandFetch(context.Background(), "https://lists.example/x"); err == nil || !strings.Contains(err.Error(), "no downloader") {
		t.Errorf("err = %v", err)
	}
}
