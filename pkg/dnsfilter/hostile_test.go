package dnsfilter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestQueryNameRefusesWhatIsNoHostName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"WWW.Example.COM.", "www.example.com", true},
		{"-odd-.example.com.", "-odd-.example.com", true},
		{"_dmarc.example.com.", "_dmarc.example.com", true},
		{"router.", "router", true},
		{".", "", true},
		{"x y.example.com.", "", false},
		{"x\x00y.example.com.", "", false},
		{"<script>.example.com.", "", false},
		{"caf\xc3\xa9.example.com.", "", false},
	} {
		got, ok := QueryName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("QueryName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOfflineDevicesResolveOnlyLocalAndProbeNames(t *testing.T) {
	for name, want := range map[string]bool{
		"captive.apple.com":             true,
		"connectivitycheck.gstatic.com": true,
		"router":                        true,
		"printer.lan":                   true,
		"1.0.168.192.in-addr.arpa":      true,
		"5.0.20.172.in-addr.arpa":       true,
		"5.0.40.172.in-addr.arpa":       false,
		"tunnel.example.com":            false,
		"captive.apple.com.evil.test":   false,
		"lan.evil.test":                 false,
	} {
		if got := offlineName(name); got != want {
			t.Errorf("offlineName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHandleRefusesOfflineDevicesAndForgedSources(t *testing.T) {
	s := testServer()
	s.opts.Identify = func(a netip.Addr) (Device, bool) {
		switch a {
		case child:
			return Device{MAC: "02:00:00:00:00:01"}, true
		}
		return Device{}, false
	}
	s.policies[Offline] = &Policy{}
	var m dnsmessage.Message
	if err := m.Unpack(s.handle(Offline, query(t, "tunnel.example.com.", dnsmessage.TypeTXT), child, false)); err != nil || m.RCode != dnsmessage.RCodeRefused {
		t.Errorf("offline device, any name: %v %v, want REFUSED", m.RCode, err)
	}
	// Addresses no neighbour entry names: a phone's new privacy address
	// gets answers, a flood of forged ones no more than the allowance.
	answered := 0
	for i := range 1000 {
		forged := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i)})
		if resp := s.handle(Offline, query(t, "fine.example.", dnsmessage.TypeA), forged, false); resp != nil {
			answered++
		}
	}
	if answered < Strangers || answered > 2*Strangers+1 {
		t.Errorf("%d of 1,000 queries from unknown addresses at once were answered, want the allowance of %d at once", answered, 2*Strangers)
	}
	if e := s.QueryLog().Recent(nil, 0); len(e) != 1+answered || e[len(e)-1].By != "device offline" || e[len(e)-1].Verdict != "refused" {
		t.Errorf("log = %+v", e[len(e)-1])
	}
}

func TestAllowlistAddsAddressesOnlyForAllowedNames(t *testing.T) {
	s := testServer()
	var added []string
	s.opts.Allowed = func(_ string, addrs []netip.Addr, _ time.Duration) {
		for _, a := range addrs {
			added = append(added, a.String())
		}
	}
	s.policies["little"] = &Policy{Allowlist: true, Allow: set("allowed.example")}
	for _, name := range []string{"x y.evil.example.", "other.example."} {
		var m dnsmessage.Message
		if err := m.Unpack(s.handle("little", query(t, name, dnsmessage.TypeA), child, false)); err != nil {
			t.Fatal(err)
		}
		if m.RCode == dnsmessage.RCodeServerFailure {
			t.Errorf("%s was forwarded", name)
		}
	}
	if len(added) != 0 {
		t.Errorf("addresses added for names not on the allowlist: %v", added)
	}
}

func TestUDPAnswersFitTheClientsSize(t *testing.T) {
	q := query(t, "big.example.", dnsmessage.TypeTXT)
	var p dnsmessage.Parser
	p.Start(q)
	p.AllQuestions()
	if got := maxUDPAnswer(&p, false); got != 512 {
		t.Errorf("no EDNS: %d, want 512", got)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("big.example."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET})
	b.StartAdditionals()
	var rh dnsmessage.ResourceHeader
	rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
	b.OPTResource(rh, dnsmessage.OPTResource{})
	q, _ = b.Finish()
	p.Start(q)
	p.AllQuestions()
	if got := maxUDPAnswer(&p, false); got != 1232 {
		t.Errorf("EDNS 1232: %d", got)
	}
	h := dnsmessage.Header{ID: 9}
	tr := truncated(h, dnsmessage.Question{Name: dnsmessage.MustNewName("big.example."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET})
	var m dnsmessage.Message
	if err := m.Unpack(tr); err != nil || !m.Truncated || m.ID != 9 || len(tr) > 512 {
		t.Errorf("truncated answer: %+v %v", m.Header, err)
	}
}

func TestReadFramedReservesNothingForALengthAlone(t *testing.T) {
	var in bytes.Buffer
	binary.Write(&in, binary.BigEndian, uint16(65535))
	if _, err := readFramed(&in, maxQuery); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a 64 KB query was accepted: %v", err)
	}
	in.Reset()
	binary.Write(&in, binary.BigEndian, uint16(3000))
	in.WriteString("short")
	if _, err := readFramed(&in, maxQuery); err == nil {
		t.Error("a message shorter than its length prefix was accepted")
	}
}

func TestTCPConnectionsAreCapped(t *testing.T) {
	l := newConnLimit(3, 2)
	a, b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	if !l.acquire(a) || !l.acquire(a) || l.acquire(a) {
		t.Error("per-source cap of 2 not held")
	}
	if !l.acquire(b) || l.acquire(b) {
		t.Error("total cap of 3 not held")
	}
	l.release(a)
	if !l.acquire(b) {
		t.Error("a released slot is not reusable")
	}
}

func TestStatsStayBounded(t *testing.T) {
	s := NewStats()
	for i := range maxStatsDevices + 100 {
		s.Count(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), "", false, false)
	}
	if len(s.by) != maxStatsDevices {
		t.Errorf("%d devices counted, cap %d", len(s.by), maxStatsDevices)
	}
}

// A device asking for thousands of random blocked names keeps a bounded
// list of them for the report; its count of blocks stays whole.
func TestRandomBlockedNamesStayBoundedUntilDrained(t *testing.T) {
	s := NewStats()
	for i := range 5000 {
		s.Count("02:00:00:00:00:01", fmt.Sprintf("x%d.blocked.example", i), true, false)
	}
	s.Count("02:00:00:00:00:01", "www.youtube.com", false, false)
	s.Count("02:00:00:00:00:01", "example.org", false, false)
	a := s.Drain()["02:00:00:00:00:01"]
	if a == nil || len(a.Blocked) != maxBlockedNames || a.Blocked["x0.blocked.example"] != 1 {
		t.Fatalf("activity %+v, want the first %d names", a, maxBlockedNames)
	}
	if len(a.Services) != 1 || !a.Services["youtube"] {
		t.Errorf("services %v, want youtube alone", a.Services)
	}
	if c := s.Get("02:00:00:00:00:01"); c.Blocked != 5000 || c.Queries != 5002 {
		t.Errorf("counters %+v, want 5000 blocked of 5002", c)
	}
	if again := s.Drain(); len(again) != 0 {
		t.Errorf("a second drain holds %v, want nothing", again)
	}
}

func TestListLinesAreBounded(t *testing.T) {
	in := "a.example\n" + strings.Repeat("x", 10*maxLineLen) + "\nb.example\n" + strings.Repeat("y", 2*maxLineLen)
	var got []string
	st, err := ParseList(strings.NewReader(in), func(d string) { got = append(got, d) })
	if err != nil || len(got) != 2 || st.Rejected != 2 || st.FirstRejected != 2 {
		t.Errorf("got %v, %+v, %v; want both domains, 2 long lines rejected from line 2", got, st, err)
	}
}

// The filter listens with one socket per family (a flood of forged IPv6
// sources fills only the IPv6 queue) and answers on both; a datagram
// longer than any query is dropped, never relayed cut to the buffer.
func TestUDPListensPerFamilyAndDropsOversizedDatagrams(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("binding to an interface needs root, and CI runs as root")
		}
		t.Skip("needs root (SO_BINDTODEVICE)")
	}
	s := NewServer(Options{})
	s.upstream = "127.0.0.1:1"
	s.timeout = 50e6
	pol := &Policy{Block: set("tiktok.com")}
	port := freeUDPPort(t)
	if err := s.Configure([]string{"lo"}, "", []Binding{{Profile: "kid", Port: port, Policy: pol}}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := s.listeners["kid/lo"]
	if len(l.udp) != 2 {
		t.Fatalf("%d UDP sockets, want one per family", len(l.udp))
	}
	ask := func(addr string, msg []byte) ([]byte, error) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		return buf[:n], err
	}
	q := query(t, "tiktok.com.", dnsmessage.TypeA)
	for _, host := range []string{"127.0.0.1", "::1"} {
		addr := net.JoinHostPort(host, fmt.Sprint(port))
		if resp, err := ask(addr, q); err != nil || len(resp) < 12 || resp[2]&0x80 == 0 {
			t.Errorf("%s: no answer to a query (%v)", addr, err)
		}
		long := append(append([]byte{}, q...), make([]byte, maxQuery)...)
		if resp, err := ask(addr, long); err == nil {
			t.Errorf("%s: a %d-byte datagram was answered: %x", addr, len(long), resp[:12])
		}
	}
}

// freeUDPPort is a port on loopback nobody listens on right now.
func freeUDPPort(t *testing.T) uint16 {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// A profile with service allowances hands on the addresses of its counted
// services' names under the service, and those of its other names under
// none (so that a front end both use is not the service's); a profile
// without allowances hands on nothing.
func TestAnswersOfALimitedProfileGoToTheirService(t *testing.T) {
	s := testServer()
	var got []string
	s.opts.Learned = func(profile, service string, addrs []netip.Addr, _ time.Duration) {
		got = append(got, fmt.Sprintf("%s/%s %v", profile, service, addrs))
	}
	answer := func(name string) []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
		b.StartAnswers()
		b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name + "."), Class: dnsmessage.ClassINET, TTL: 300},
			dnsmessage.AResource{A: [4]byte{198, 51, 100, 40}})
		out, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	limited := &Policy{Limited: map[string]bool{"youtube": true, "roblox": false}}
	for _, c := range []struct {
		pol  *Policy
		name string
	}{
		{limited, "rr3---sn-x.googlevideo.com"},
		{limited, "www.google.com"},
		{limited, "www.netflix.com"}, // a service without an allowance: another site
		{&Policy{}, "www.youtube.com"},
	} {
		s.learn(c.pol, "kid", c.name, Decision{}, answer(c.name))
	}
	want := []string{"kid/youtube [198.51.100.40]", "kid/ [198.51.100.40]", "kid/ [198.51.100.40]"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("handed on %q\nwant      %q", got, want)
	}
}
