package dnsfilter

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func testServer() *Server {
	s := NewServer(Options{})
	// Loopback port 1: closed, so anything forwarded fails at once with
	// SERVFAIL and no packet leaves the machine.
	s.upstream = "127.0.0.1:1"
	s.timeout = 50e6
	s.policies["kid"] = &Policy{Block: set("tiktok.com"), Sources: []string{"service tiktok"}, BypassPrevention: true}
	return s
}

func query(t testing.TB, name string, qtype dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var child = netip.MustParseAddr("192.0.2.10")

func TestHandleAnswersBlockedAndMalformedQueries(t *testing.T) {
	s := testServer()
	var m dnsmessage.Message
	if err := m.Unpack(s.handle("kid", query(t, "www.tiktok.com.", dnsmessage.TypeA), child, false)); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0x4242 || !m.Response || len(m.Answers) != 1 || m.Answers[0].Body.(*dnsmessage.AResource).A != [4]byte{} || m.Answers[0].Header.TTL != blockTTL {
		t.Errorf("blocked answer = %+v", m)
	}
	if err := m.Unpack(s.handle("kid", query(t, "use-application-dns.net.", dnsmessage.TypeA), child, false)); err != nil || m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("canary: %v %v", m.RCode, err)
	}
	if err := m.Unpack(s.handle("kid", query(t, "fine.example.", dnsmessage.TypeA), child, false)); err != nil || m.RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("upstream down: %v %v", m.RCode, err)
	}
	if resp := s.handle("kid", []byte{1, 2, 3}, child, false); resp != nil {
		t.Errorf("garbage got an answer: %v", resp)
	}
	if e := s.QueryLog().Recent(func(e Entry) bool { return e.Verdict == "blocked" }, 0); len(e) != 2 || e[0].By != "service tiktok" {
		t.Errorf("log = %+v", e)
	}
	if c := s.Stats().Get(child.String()); c.Queries != 3 || c.Blocked != 2 || c.Bypass != 1 {
		t.Errorf("counters = %+v", c)
	}
}

// FuzzHandle feeds arbitrary wire messages to the handler: it must answer
// or drop, never panic, and an answer must parse.
func FuzzHandle(f *testing.F) {
	for _, name := range []string{"www.tiktok.com.", "use-application-dns.net.", "x."} {
		f.Add(query(f, name, dnsmessage.TypeAAAA))
	}
	s := testServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		resp := s.handle("kid", data, child, false)
		if resp == nil {
			return
		}
		var p dnsmessage.Parser
		if _, err := p.Start(resp); err != nil {
			t.Fatalf("unparsable answer: %v", err)
		}
	})
}
