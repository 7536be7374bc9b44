// Package lab builds curfew's virtual home network out of Linux network
// namespaces, for the end-to-end tests and `make demo`:
//
//	child  (02:c0:00:00:00:0a, 192.0.2.10, 2001:db8:1::10) ─┐
//	parent (02:c0:00:00:00:14, 192.0.2.20, 2001:db8:1::20) ─┼─ br-lan ── router ── wan ── internet
//	guest  (02:c0:00:00:00:1e, 192.0.2.30, 2001:db8:1::30) ─┘  192.0.2.1            198.51.100.1
//	                                                           2001:db8:1::1        2001:db8:100::1
//	                                                                                 203.0.113.10, 2001:db8:bad::10
//
// The router namespace gets forwarding, NAT on the WAN side and a
// `table inet fw4` that, like OpenWrt's fw4, accepts established traffic
// first; FlowOffload turns on fw4's software flow offloading, where the
// kernel has it.
// Only documentation address ranges are used, and nothing outside the
// namespaces is touched. Close removes everything, also after a failure.
package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Host is a namespace on the lab's LAN.
type Host struct {
	NS   string
	MAC  string
	IPv4 string
	IPv6 string
}

// Addresses of the lab.
const (
	RouterV4    = "192.0.2.1"
	RouterV6    = "2001:db8:1::1"
	InternetV4  = "198.51.100.1"
	InternetV6  = "2001:db8:100::1"
	BlockedV4   = "203.0.113.10"
	BlockedNet4 = "203.0.113.0/24"
	BlockedV6   = "2001:db8:bad::10"
	BlockedNet6 = "2001:db8:bad::/48"
	// ProbeName is answered differently by the router's resolver
	// (RouterAnswer) and the "outside" resolver (OutsideAnswer), so a test
	// can tell which one answered.
	ProbeName    = "probe.test"
	RouterAnswer = "192.0.2.53"
	// SafeSearchAnswer is what the router's resolver says for Google's
	// safe-search host.
	SafeSearchAnswer = "198.51.100.77"
	OutsideAnswer    = "198.51.100.53"
	// CaptiveAnswer is what the router's resolver says for Apple's
	// captive-portal probe host.
	CaptiveAnswer = "198.51.100.80"
	// BlockedName resolves into BlockedNet4.
	BlockedName = "inblocked.test"
	// VideoV4 and VideoV6 are what the router's resolver says for
	// youtube.com and googlevideo.com and the names under them: a
	// server of their own, so that a test can tell a service's traffic
	// from the rest (time per service).
	VideoV4 = "198.51.100.40"
	VideoV6 = "2001:db8:200::40"
	// BigName has a TXT answer of about 800 bytes: more than a UDP answer
	// without EDNS may carry.
	BigName = "big.test"
)

// Lab is a running virtual network.
type Lab struct {
	Prefix   string
	Router   string
	Internet string
	Child    Host
	Parent   Host
	Guest    Host
	dir      string
	procs    []*exec.Cmd
}

// New builds a lab whose namespaces are named prefix-*. Call Close when
// done, whatever happens.
func New(ctx context.Context, prefix string) (l *Lab, err error) {
	l = &Lab{
		Prefix:   prefix,
		Router:   prefix + "-router",
		Internet: prefix + "-inet",
		Child:    Host{prefix + "-child", "02:c0:00:00:00:0a", "192.0.2.10", "2001:db8:1::10"},
		Parent:   Host{prefix + "-parent", "02:c0:00:00:00:14", "192.0.2.20", "2001:db8:1::20"},
		Guest:    Host{prefix + "-guest", "02:c0:00:00:00:1e", "192.0.2.30", "2001:db8:1::30"},
	}
	// Every failure returns nil for l: close what was built through a
	// copy, or a failed setup panics in Close instead of saying why.
	built := l
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	l.Close() // leftovers of an earlier run that was killed
	if l.dir, err = os.MkdirTemp("", "curfew-lab-"); err != nil {
		return nil, err
	}
	noOffload := func(ctx context.Context) error { return l.fw4(ctx, false) }
	for _, step := range []func(context.Context) error{l.namespaces, l.wires, l.hosts, l.forwarding, noOffload, l.resolvers} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// namespaces makes the lab's network namespaces, each with its loopback
// up and without duplicate address detection.
func (l *Lab) namespaces(ctx context.Context) error {
	for _, ns := range []string{l.Router, l.Internet, l.Child.NS, l.Parent.NS, l.Guest.NS} {
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := l.ip(ctx, ns, "link set lo up"); err != nil {
			return err
		}
		// No duplicate address detection: link-local addresses would stay
		// tentative for a second or two, and IPv6 with them.
		if err := run(ctx, "ip", "netns", "exec", ns, "sysctl", "-qw",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
			return err
		}
	}
	return nil
}

// wires connects the router to the internet namespace and gives both
// their addresses and routes; the router's LAN is the bridge br-lan.
func (l *Lab) wires(ctx context.Context) error {
	r, i := l.Router, l.Internet
	steps := []struct{ ns, cmd string }{
		{r, "link add br-lan type bridge"},
		{r, "link set br-lan up"},
		{r, "addr add 192.0.2.1/24 dev br-lan"},
		{r, "addr add 2001:db8:1::1/64 dev br-lan nodad"},
		{r, "link add wan type veth peer name wan0 netns " + i},
		{r, "addr add 198.51.100.2/24 dev wan"},
		{r, "addr add 2001:db8:100::2/64 dev wan nodad"},
		{r, "link set wan up"},
		{i, "addr add 198.51.100.1/24 dev wan0"},
		{i, "addr add 2001:db8:100::1/64 dev wan0 nodad"},
		{i, "link set wan0 up"},
		{i, "addr add 203.0.113.10/32 dev lo"},
		{i, "addr add 198.51.100.53/32 dev lo"},
		{i, "addr add 198.51.100.44/32 dev lo"},
		{i, "addr add " + CaptiveAnswer + "/32 dev lo"},
		{i, "addr add 2001:db8:bad::10/128 dev lo"},
		{i, "addr add " + VideoV4 + "/32 dev lo"},
		{i, "addr add " + VideoV6 + "/128 dev lo"},
		{i, "route add 2001:db8:1::/64 via 2001:db8:100::2"},
		{r, "route add default via 198.51.100.1"},
		{r, "route add 203.0.113.0/24 via 198.51.100.1"},
		{r, "-6 route add default via 2001:db8:100::1"},
	}
	for _, s := range steps {
		if err := l.ip(ctx, s.ns, s.cmd); err != nil {
			return err
		}
	}
	return nil
}

// hosts plugs the child, the parent and the guest into br-lan, each with
// its MAC and addresses.
func (l *Lab) hosts(ctx context.Context) error {
	r := l.Router
	for n, h := range []Host{l.Child, l.Parent, l.Guest} {
		port := fmt.Sprintf("lan%d", n)
		hs := []struct{ ns, cmd string }{
			{r, fmt.Sprintf("link add %s type veth peer name eth0 netns %s", port, h.NS)},
			{r, fmt.Sprintf("link set %s master br-lan up", port)},
			{h.NS, "link set eth0 address " + h.MAC},
			{h.NS, "addr add " + h.IPv4 + "/24 dev eth0"},
			{h.NS, "addr add " + h.IPv6 + "/64 dev eth0 nodad"},
			{h.NS, "link set eth0 up"},
			{h.NS, "route add default via " + RouterV4},
			{h.NS, "-6 route add default via " + RouterV6},
		}
		for _, s := range hs {
			if err := l.ip(ctx, s.ns, s.cmd); err != nil {
				return err
			}
		}
	}
	return nil
}

// forwarding makes the router route.
func (l *Lab) forwarding(ctx context.Context) error {
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if err := run(ctx, "ip", "netns", "exec", l.Router, "sysctl", "-qw", kv); err != nil {
			return err
		}
	}
	return nil
}

// fw4 loads a table shaped like OpenWrt's: established first, LAN to WAN
// allowed, NAT on WAN; with offload, established flows are offloaded to a
// software flowtable as fw4's `option flow_offloading '1'` does.
func (l *Lab) fw4(ctx context.Context, offload bool) error {
	base := `
table inet fw4 {
	%s
	chain forward {
		type filter hook forward priority filter; policy drop;
		%s
		ct state established,related accept
		iifname "br-lan" accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" meta nfproto ipv4 masquerade
	}
}
`
	if !offload {
		return l.nft(ctx, fmt.Sprintf(base, "", ""))
	}
	return l.nft(ctx, fmt.Sprintf("table inet fw4\ndelete table inet fw4\n"+base,
		"flowtable ft {\n\t\thook ingress priority filter\n\t\tdevices = { \"br-lan\", \"wan\" }\n\t}",
		`meta l4proto { tcp, udp } ct state established flow add @ft`))
}

// FlowOffload replaces the lab's fw4 table with one that offloads
// established flows to a software flowtable, as OpenWrt's fw4 does with
// `option flow_offloading '1'`: their packets then skip the forward hook.
// It fails on a kernel without nf_flow_table (the development machines';
// the VM lab's kernels have it).
func (l *Lab) FlowOffload(ctx context.Context) error { return l.fw4(ctx, true) }

func (l *Lab) nft(ctx context.Context, ruleset string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f in %s: %v: %s", l.Router, err, out)
	}
	return nil
}

// resolvers starts dnsmasq as the router's resolver and another one as an
// "outside" public resolver on the internet side.
func (l *Lab) resolvers(ctx context.Context) error {
	start := func(ns, name string, args ...string) error {
		pid := filepath.Join(l.dir, name+".pid")
		base := []string{"netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
			"--no-resolv", "--no-hosts", "--bind-interfaces", "--user=root", "--group=root", "--pid-file=" + pid,
			"--log-facility=" + filepath.Join(l.dir, name+".log")}
		cmd := exec.Command("ip", append(base, args...)...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start dnsmasq (%s): %w", name, err)
		}
		l.procs = append(l.procs, cmd)
		return nil
	}
	if err := start(l.Router, "router-dns",
		"--listen-address="+RouterV4, "--listen-address="+RouterV6, "--listen-address=127.0.0.1",
		"--address=/"+ProbeName+"/"+RouterAnswer,
		// Every other name under .test, and Google's safe-search host,
		// resolve to the internet namespace: the lab has no real upstream.
		"--address=/test/"+InternetV4, "--address=/forcesafesearch.google.com/"+SafeSearchAnswer,
		"--address=/captive.apple.com/"+CaptiveAnswer, "--address=/"+BlockedName+"/"+BlockedV4,
		"--address=/youtube.com/googlevideo.com/"+VideoV4, "--address=/youtube.com/googlevideo.com/"+VideoV6,
		"--txt-record="+BigName+","+strings.Repeat("a", 250)+","+strings.Repeat("b", 250)+","+strings.Repeat("c", 250),
		"--no-ping", "--interface=br-lan", "--dhcp-range=192.0.2.100,192.0.2.150,1h", "--dhcp-leasefile="+filepath.Join(l.dir, "leases"),
	); err != nil {
		return err
	}
	if err := start(l.Internet, "outside-dns",
		"--listen-address="+InternetV4, "--listen-address="+InternetV6,
		"--address=/"+ProbeName+"/"+OutsideAnswer,
	); err != nil {
		return err
	}
	// Wait until both answer.
	deadline := time.Now().Add(5 * time.Second)
	for _, probe := range []struct{ ns, addr string }{{l.Router, RouterV4}, {l.Internet, InternetV4}} {
		for {
			if err := l.In(probe.ns, func() error {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(probe.addr, "53"), 200*time.Millisecond)
				if err == nil {
					c.Close()
				}
				return err
			}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("dnsmasq in %s did not start", probe.ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Close stops the lab's processes and deletes its namespaces.
func (l *Lab) Close() {
	for _, p := range l.procs {
		if p.Process != nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	l.procs = nil
	for _, ns := range []string{l.Child.NS, l.Parent.NS, l.Guest.NS, l.Internet, l.Router} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

func (l *Lab) ip(ctx context.Context, ns, args string) error {
	return run(ctx, "ip", append([]string{"-n", ns}, strings.Fields(args)...)...)
}

// Exec runs a command inside a namespace and returns its combined output.
func (l *Lab) Exec(ctx context.Context, ns string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// In runs f on an OS thread switched into namespace ns. Sockets that f
// opens stay in that namespace after it returns, so a server started here
// keeps serving there.
func (l *Lab) In(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked and so discarded when this goroutine
		// ends: it must never run other goroutines in the lab namespace.
		runtime.LockOSThread()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Fd opens a namespace and returns its handle; close it when done.
func Fd(ns string) (netns.NsHandle, error) { return netns.GetFromName(ns) }

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Require skips a test that needs root and the ip/nft tools when they are
// missing, except under CI (CI=true), where it fails loudly instead: the
// kernel tests must run there.
func Require(t interface {
	Helper()
	Skip(...any)
	Fatal(...any)
}, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range append([]string{"ip", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "kernel test needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: these tests must run)")
	}
	t.Skip(msg)
}

// Start is how a kernel test begins: Require (root, ip, nft and tools), a
// lab named name that is removed when the test ends, also on failure, and
// its servers running until then.
func Start(t interface {
	Helper()
	Skip(...any)
	Fatal(...any)
	Cleanup(func())
}, name string, tools ...string) *Lab {
	t.Helper()
	Require(t, tools...)
	l, err := New(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := l.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

// SampleConfig is the lab's curfew config: a child ("Kid phone", profile
// kid, blocked from the lab's blocked prefixes, bedtime from start to stop
// every day), a parent without rules, and a guest profile for unknown
// devices; extra goes into the main section.
func (l *Lab) SampleConfig(start, stop, extra string) string {
	return fmt.Sprintf(`config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'guest'
%s
config profile 'kid'
	option name 'Kid'
	list block '%s'
	list block '%s'

config profile 'grownup'
	option name 'Parent'

config profile 'guest'
	option name 'Guests'
	list block '%s'

config device
	option mac '%s'
	option name 'Kid phone'
	option profile 'kid'

config device
	option mac '%s'
	option name 'Parent laptop'
	option profile 'grownup'

config schedule 'bedtime'
	option profile 'kid'
	option days 'daily'
	option start '%s'
	option stop '%s'
`, extra, BlockedNet4, BlockedNet6, BlockedNet4, l.Child.MAC, l.Parent.MAC, start, stop)
}

// RestartLAN does to the router's LAN what OpenWrt's network restart
// does: br-lan is deleted and created anew (with a new interface index),
// with its addresses, and the hosts' ports are put back in it.
func (l *Lab) RestartLAN(ctx context.Context) error {
	r := l.Router
	steps := []string{"link del br-lan", "link add br-lan type bridge", "link set br-lan up",
		"addr add 192.0.2.1/24 dev br-lan", "addr add 2001:db8:1::1/64 dev br-lan nodad"}
	for n := range []Host{l.Child, l.Parent, l.Guest} {
		steps = append(steps, fmt.Sprintf("link set lan%d master br-lan up", n))
	}
	for _, s := range steps {
		if err := l.ip(ctx, r, s); err != nil {
			return err
		}
	}
	return nil
}

// WaitFor polls cond every 50 ms until it holds or the timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RSSKB reads a process's resident set size in kB (0 if it cannot).
func RSSKB(pid int) int { return statusKB(pid, "VmRSS:") }

// PeakRSSKB is the most memory the process pid has had resident (VmHWM),
// in KiB: what a router must have free for it, not only what it keeps.
func PeakRSSKB(pid int) int { return statusKB(pid, "VmHWM:") }

func statusKB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int
			fmt.Sscanf(rest, "%d", &kb)
			return kb
		}
	}
	return 0
}
