// Command bench measures curfew's kernel enforcement in the namespace lab
// (root only) and writes bench/REPORT.md and bench/forwarding.svg, every
// figure a ratio against an anchor measured in the same run:
//
//  1. forwarded packets per second (small UDP, child → internet through
//     the router) for 10 to 5,000 devices and 0 to 100,000 blocked
//     prefixes, with no curfew table, with curfew, and with the rules that
//     fw4 time rules / access-control scripts generate for the same policy
//     (a rule per device and window, a rule per prefix) — variants
//     switched under one stream round by round, medians and quartiles;
//  2. the time to apply each ruleset and a one-device change, against
//     `nft -f` loading the fw4-style text;
//  3. cutoff latency: from a window's start, and from a pause, to the
//     first refused packet of an already-open TCP stream;
//  4. footprint: binary and package sizes, the idle daemon's memory and
//     start-up time.
//
// The DNS comparison with dnsmasq is scripts/dnsbench (bench/DNS.md).
// Packets are counted where they leave the router (the WAN interface's
// transmit counter), so the receiver's speed does not matter.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"curfew/pkg/firewall"
	"curfew/pkg/firewall/nft"
	"curfew/pkg/lab"
)

var windows = 8

func main() {
	out := flag.String("out", "bench/REPORT.md", "report file")
	rounds := flag.Int("rounds", 40, "alternating rounds per variant and size")
	sample := flag.Duration("sample", 200*time.Millisecond, "length of one sample of the forwarding rate")
	quick := flag.Bool("quick", false, "fewer sizes (a smoke run)")
	e2eOnly := flag.String("e2e", "", "only the end-to-end section, with this curfew binary; the table goes to stdout")
	e2eSVG := flag.String("e2e-chart", "bench/e2e-memory.svg", "where --e2e draws its memory chart")
	rulesOnly := flag.Bool("rules", false, "only what each rule costs; the table goes to stdout")
	servicesOnly := flag.Bool("services", false, "only what counting time per service costs; the table goes to stdout")
	flag.Parse()
	if *servicesOnly {
		if err := servicesAlone(*rounds, *sample); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *rulesOnly {
		if err := rulesAlone(*rounds, *sample); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *e2eOnly != "" {
		l, _, h, done, err := routerLab(context.Background(), "curfew-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		sctx, cancel := context.WithCancel(context.Background())
		if err := l.Serve(sctx); err != nil { // the child's connection that a pause cuts
			fmt.Fprintln(os.Stderr, "bench:", err)
			cancel()
			done() // os.Exit would leave the lab's namespaces behind
			os.Exit(1)
		}
		bin, _ := filepath.Abs(*e2eOnly)
		fmt.Printf("# curfew end to end: config file to kernel\n\n%s, %d CPUs, %s. `make bench` (or `go run ./scripts/bench --e2e bin/curfew`) writes this file.\n\n"+
			"The real daemon (GOGC=50, as the init script runs it) in the lab router on generated configs: one profile blocking P prefixes with D devices in it, or a blocklist file of N domains. "+
			"Exec → table: from starting the daemon to its table in the kernel (one netlink batch). Resident, settled: once it stops moving (within 2%% for 4 s, sampled every 250 ms). Peak: the most it ever had resident (VmHWM), building the table included. Pause: `curfew pause` of the lab child while it has a TCP connection open, from the command to its answer (the rules in the kernel and the connection cut; the bench checks that it is); the median of five, resumed in between. "+
			"The cut walks the kernel's whole conntrack hash once per address family, %s. "+
			"Forwarding: small UDP packets per second from the lab child (one of the devices) through the table the daemon left (killed, so that it does not remove it), switched dormant and back under one continuous stream, samples of %v, the order reversed every other round; "+
			"the median of %d interleaved round ratios, with their quartiles. "+
			"The times and memory are single runs on a shared machine: expect ±30%% between runs.\n\n", kernel(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"), conntrackBuckets(), *sample, *rounds)
		fmt.Print(endToEnd(context.Background(), l, h, bin, *e2eSVG, *rounds, *sample))
		cancel()
		done()
		return
	}
	if err := run(*out, *rounds, *sample, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// conntrackBuckets says how big the kernel's conntrack hash is here, for
// the report: a cut's time grows with it, and a router's is far smaller.
func conntrackBuckets() string {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_buckets")
	if err != nil {
		return "of a size this machine does not tell"
	}
	return strings.TrimSpace(string(b)) + " buckets on this machine (the kernel sizes it from RAM: 2,048-4,096 on a 32-bit router with 128-256 MB)"
}

type cell struct {
	devices, prefixes int
	none, curfew, fw4 []float64
	applyCurfew       time.Duration
	applyFw4          time.Duration
	changeCurfew      time.Duration
}

// routerLab builds a lab and a netlink handle in its router namespace;
// done closes all of it.
func routerLab(ctx context.Context, name string) (l *lab.Lab, fd netns.NsHandle, h *netlink.Handle, done func(), err error) {
	if l, err = lab.New(ctx, name); err != nil {
		return nil, 0, nil, nil, err
	}
	if fd, err = lab.Fd(l.Router); err != nil {
		l.Close()
		return nil, 0, nil, nil, err
	}
	if h, err = netlink.NewHandleAt(fd); err != nil {
		fd.Close()
		l.Close()
		return nil, 0, nil, nil, err
	}
	return l, fd, h, func() { h.Close(); fd.Close(); l.Close() }, nil
}

func run(out string, rounds int, sample time.Duration, quick bool) error {
	ctx := context.Background()
	l, fd, h, done, err := routerLab(ctx, "curfew-bench")
	if err != nil {
		return err
	}
	defer done()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := l.Serve(sctx); err != nil {
		return err
	}
	b := nft.New(nft.Options{NetNSFd: int(fd), Netlink: h})
	child, _ := net.ParseMAC(l.Child.MAC)
	dir, err := os.MkdirTemp("", "curfew-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	devCounts, prefixCounts := []int{10, 100, 1000, 5000}, []int{0, 10000, 100000}
	if quick {
		devCounts, prefixCounts = []int{10, 1000}, []int{0, 100000}
	}
	var cells []*cell
	for _, p := range prefixCounts {
		for _, n := range devCounts {
			c := &cell{devices: n, prefixes: p}
			rs := bigRuleset(child, n, p)
			text := fw4Text(rs)
			fw4File := filepath.Join(dir, "fw4.nft")
			if err := os.WriteFile(fw4File, []byte(text), 0o644); err != nil {
				return err
			}
			loadFw4 := func() (time.Duration, error) {
				t0 := time.Now()
				if out, err := l.Exec(ctx, l.Router, "nft", "-f", fw4File); err != nil {
					return 0, fmt.Errorf("nft -f: %v: %.300s", err, out)
				}
				return time.Since(t0), nil
			}
			dropFw4 := func() { l.Exec(ctx, l.Router, "nft", "delete", "table", "inet", "fw4time") }
			b.Remove(ctx)
			t0 := time.Now()
			if err := b.Apply(ctx, rs); err != nil {
				return fmt.Errorf("apply %d/%d: %w", n, p, err)
			}
			c.applyCurfew = time.Since(t0)
			// one device (not the child) paused
			other := &rs.Devices[0]
			if other.MAC.String() == child.String() {
				other = &rs.Devices[1]
			}
			other.Offline = append([]firewall.Interval{{From: time.Now(), To: time.Now().Add(time.Hour)}}, other.Offline...)
			t0 = time.Now()
			if err := b.Apply(ctx, rs); err != nil {
				return err
			}
			c.changeCurfew = time.Since(t0)
			b.Remove(ctx)
			if c.applyFw4, err = loadFw4(); err != nil {
				return err
			}
			dropFw4()
			// both tables loaded, switched in turn under one stream
			if err := b.Apply(ctx, rs); err != nil {
				return err
			}
			if _, err := loadFw4(); err != nil {
				return err
			}
			all := []string{"curfew", "fw4time"}
			rates, err := compare(l, h, rounds, sample, []func() error{
				func() error { return tables(ctx, l, nil, all...) },
				func() error { return tables(ctx, l, all[:1], all...) },
				func() error { return tables(ctx, l, all[1:], all...) },
			})
			if err != nil {
				return fmt.Errorf("forwarding %d/%d: %w", n, p, err)
			}
			c.none, c.curfew, c.fw4 = rates[0], rates[1], rates[2]
			b.Remove(ctx)
			dropFw4()
			fmt.Printf("%5d devices %6d prefixes: none %.0f curfew %.0f (%.2f) fw4-style %.0f (%.2f) pps\n", n, p,
				median(c.none), median(c.curfew), ratio(c.curfew, c.none), median(c.fw4), ratio(c.fw4, c.none))
			cells = append(cells, c)
		}
	}

	costs, err := ruleCost(ctx, l, h, dir, rounds, sample)
	if err != nil {
		return err
	}
	svcCost, err := serviceCost(ctx, l, h, b, child, rounds, sample)
	if err != nil {
		return err
	}
	cutWindow, cutPause, err := cutoff(ctx, l, b, child)
	if err != nil {
		return err
	}
	foot, err := footprint(ctx, l, dir)
	if err != nil {
		return err
	}

	host, _ := os.Hostname()
	var rep strings.Builder
	fmt.Fprintf(&rep, "# curfew benchmark report\n\n")
	fmt.Fprintf(&rep, "Run with `make bench` (root). Machine: %s, %d CPUs, %s/%s, kernel %s, %s. ",
		host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, kernel(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&rep, "Every ratio compares variants measured alternately in the same run. Forwarding: the variants' tables are all loaded and switched (dormant, awake) under one continuous stream; each round measures each variant for %v, the order reversed every other round, and a figure is the median of %d round ratios, with their quartiles.\n\n", sample, rounds)
	fmt.Fprintf(&rep, "## 1. Forwarding: small UDP packets per second, child → internet\n\n")
	fmt.Fprintf(&rep, "Policy: each device has a week of bedtime windows (none active now) and its profile blocks the prefixes (IPv4 and IPv6 each). *fw4-style* is what fw4 time rules and access-control scripts generate for that policy: one `ether saddr … meta hour … meta day … drop` rule per device and window, one `ip daddr … drop` rule per prefix.\n\n")
	fmt.Fprintf(&rep, "| devices | prefixes | no table (pps) | curfew (pps) | curfew / none | fw4-style (pps) | fw4-style / none |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range cells {
		q1, q3 := quartiles(c.curfew, c.none)
		fmt.Fprintf(&rep, "| %d | %d | %.0f | %.0f | **%.3f** (%.2f–%.2f) | %.0f | %.3f |\n", c.devices, c.prefixes,
			median(c.none), median(c.curfew), ratio(c.curfew, c.none), q1, q3,
			median(c.fw4), ratio(c.fw4, c.none))
	}
	fmt.Fprintf(&rep, "\n![forwarding rate against device count](forwarding.svg)\n\n")
	fmt.Fprintf(&rep, "The same through the real daemon, from generated config files, is in [E2E.md](E2E.md).\n\n")
	fmt.Fprintf(&rep, "### What each rule costs\n\nThe lab child's path through curfew's table built up rule by rule (nft text, one device with a week of offline intervals), each stage against no table in the same round; medians of %d rounds. Established packets of an online device stop at the first rule of the last three rows.\n\n%s\n", rounds, costs)
	fmt.Fprintf(&rep, "### What counting time per service costs\n\nA limited profile's established packets go from the fast path to its count chain: one lookup per service and family (`service_limit`). 1,000 devices, no prefixes; the three tables applied in turn under the one stream; medians of %d rounds. (Alone: `go run ./scripts/bench --services`.)\n\n%s\n", rounds, svcCost)
	fmt.Fprintf(&rep, "## 2. Applying rules\n\n| devices | prefixes | curfew full apply (netlink, one batch) | fw4-style `nft -f` | curfew one-device change |\n|---:|---:|---:|---:|---:|\n")
	for _, c := range cells {
		fmt.Fprintf(&rep, "| %d | %d | %v | %v | %v |\n", c.devices, c.prefixes, c.applyCurfew.Round(time.Millisecond), c.applyFw4.Round(time.Millisecond), c.changeCurfew.Round(time.Millisecond))
	}
	fmt.Fprintf(&rep, "\n## 3. Cutoff latency (open TCP stream, echo every millisecond)\n\n| event | first refused packet after it |\n|---|---:|\n")
	fmt.Fprintf(&rep, "| a window starts (kernel alone, no daemon) | %v |\n| a pause (apply + conntrack cut) | %v |\n\n", cutWindow.Round(time.Microsecond), cutPause.Round(time.Microsecond))
	fmt.Fprintf(&rep, "## 4. DNS\n\nSee [DNS.md](DNS.md): curfew's filter against dnsmasq with the same 300,000- and 1,000,000-domain lists.\n\n")
	fmt.Fprintf(&rep, "## 5. Footprint\n\n%s\n", foot)
	fmt.Fprintf(&rep, `## Reading the figures

- curfew's per-packet work does not grow with devices or prefixes: one hash
  lookup of the MAC, one lookup in the device's own few offline intervals,
  a conntrack-state test (destinations are checked on a flow's first
  packets). The fw4-style rules are walked one by one for every packet, so
  their rate falls with the size of the policy.
- Where curfew is below 1.0, that is its fixed path: a base chain at the
  forward hook and the fast path's one rule (the rule-by-rule table). On a
  shared virtual machine one round's ratio is within about ±5%% (the
  quartiles); the first row of the rule-by-rule table, a table without a
  hook against none, is how far the method itself is off.
- Full applies grow with the table (a chain and a set per device, the
  prefix elements); a one-device change sends only that device's elements.
`)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(out), "forwarding.svg"), []byte(chart(cells, prefixCounts[len(prefixCounts)-1])), 0o644); err != nil {
		return err
	}
	fmt.Print(rep.String())
	return os.WriteFile(out, []byte(rep.String()), 0o644)
}

// fw4Text renders the same policy the way fw4 time rules and
// access-control scripts do: a rule per device and window, a rule per
// blocked prefix, walked in order for every packet.
func fw4Text(rs *firewall.Ruleset) string {
	var b strings.Builder
	b.WriteString("table inet fw4time {\n\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n")
	hour := (time.Now().UTC().Hour() + 12) % 24 // never now
	for _, d := range rs.Devices {
		fmt.Fprintf(&b, "\t\tiifname \"br-lan\" ether saddr %s meta day { \"Sunday\", \"Monday\", \"Tuesday\", \"Wednesday\", \"Thursday\" } meta hour >= \"%02d:00\" meta hour < \"%02d:59\" drop\n", d.MAC, hour, hour)
		fmt.Fprintf(&b, "\t\tiifname \"br-lan\" ether saddr %s meta day { \"Friday\", \"Saturday\" } meta hour >= \"%02d:00\" meta hour < \"%02d:59\" drop\n", d.MAC, hour, hour)
	}
	for _, p := range rs.Profiles {
		for _, pr := range p.Block {
			if pr.Addr().Is4() {
				fmt.Fprintf(&b, "\t\tiifname \"br-lan\" ip daddr %s drop\n", pr)
			} else {
				fmt.Fprintf(&b, "\t\tiifname \"br-lan\" ip6 daddr %s drop\n", pr)
			}
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// cutoff measures how long an open TCP stream from the child keeps working
// after a window starts (the kernel alone) and after a pause is applied.
func cutoff(ctx context.Context, l *lab.Lab, b *nft.Backend, child net.HardwareAddr) (time.Duration, time.Duration, error) {
	rs := bigRuleset(child, 10, 0)
	dev := func() *firewall.Device {
		for i := range rs.Devices {
			if rs.Devices[i].MAC.String() == child.String() {
				return &rs.Devices[i]
			}
		}
		return nil
	}
	stream := func() (net.Conn, error) {
		c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second)
		if err != nil {
			return nil, err
		}
		return c, lab.Echo(c, "warm")
	}
	firstFailure := func(c net.Conn, since time.Time) time.Duration {
		for time.Since(since) < 5*time.Second {
			if lab.Echo(c, "x") != nil {
				return time.Since(since)
			}
			time.Sleep(time.Millisecond)
		}
		return -1
	}
	start := time.Now().Add(500 * time.Millisecond)
	dev().Offline = []firewall.Interval{{From: start, To: start.Add(time.Minute)}}
	if err := b.Apply(ctx, rs); err != nil {
		return 0, 0, err
	}
	c, err := stream()
	if err != nil {
		return 0, 0, err
	}
	for time.Now().Before(start) {
		lab.Echo(c, "x")
		time.Sleep(time.Millisecond)
	}
	window := firstFailure(c, start)
	c.Close()
	dev().Offline = nil
	if err := b.Apply(ctx, rs); err != nil {
		return 0, 0, err
	}
	time.Sleep(200 * time.Millisecond)
	if c, err = stream(); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	dev().Offline = []firewall.Interval{{From: t0, To: t0.Add(time.Minute)}}
	if err := b.Apply(ctx, rs); err != nil {
		return 0, 0, err
	}
	b.Cutoff(ctx, []net.HardwareAddr{child}, firewall.Flows{})
	pause := firstFailure(c, t0)
	c.Close()
	b.Remove(ctx)
	return window, pause, nil
}

// footprint reports sizes from dist/ (make cross, make ipk) and runs the
// amd64 daemon in the router with the lab's config: memory and start-up.
func footprint(ctx context.Context, l *lab.Lab, dir string) (string, error) {
	var b strings.Builder
	b.WriteString("| what | size |\n|---|---:|\n")
	for _, a := range []string{"mips", "mipsle", "armv7", "arm64", "amd64"} {
		if info, err := os.Stat(filepath.Join("dist", "curfew-"+a)); err == nil {
			fmt.Fprintf(&b, "| stripped binary, %s | %.2f MB |\n", a, float64(info.Size())/1e6)
		}
	}
	ipks, _ := filepath.Glob(filepath.Join("dist", "ipk", "*.ipk"))
	sort.Strings(ipks)
	for _, f := range ipks {
		if info, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "| %s | %.2f MB |\n", filepath.Base(f), float64(info.Size())/1e6)
		}
	}
	bin := filepath.Join("dist", "curfew-amd64")
	if _, err := os.Stat(bin); err != nil {
		return b.String() + "\n(run make ipk first for sizes and the daemon figures)\n", nil
	}
	abs, _ := filepath.Abs(bin)
	cfg := filepath.Join(dir, "curfew")
	os.WriteFile(cfg, []byte(l.SampleConfig("03:00", "03:01", "")), 0o644)
	os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	t0 := time.Now()
	cmd := exec.Command("ip", "netns", "exec", l.Router, abs, "daemon", "--config", cfg, "--system", filepath.Join(dir, "system"),
		"--state-dir", dir, "--socket", filepath.Join(dir, "sock"), "--trust-clock")
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	if !lab.WaitFor(10*time.Second, func() bool {
		_, err := l.Exec(ctx, l.Router, "nft", "list", "table", "inet", "curfew")
		return err == nil
	}) {
		return "", fmt.Errorf("daemon did not start")
	}
	startup := time.Since(t0)
	time.Sleep(3 * time.Second)
	fmt.Fprintf(&b, "| idle daemon, resident (amd64, lab config) | %.1f MB |\n", float64(lab.RSSKB(cmd.Process.Pid))/1024)
	fmt.Fprintf(&b, "| start-up: exec to rules in the kernel | %v |\n", startup.Round(time.Millisecond))
	b.WriteString("| resident with a 1,000,000-domain list | see DNS.md |\n")
	return b.String(), nil
}

// chart draws pps against device count for one prefix count, one line per
// variant, as a self-contained SVG.
func chart(cells []*cell, prefixes int) string {
	var pts []*cell
	maxV := 1.0
	for _, c := range cells {
		if c.prefixes == prefixes {
			pts = append(pts, c)
			for _, v := range []float64{median(c.none), median(c.curfew), median(c.fw4)} {
				maxV = max(maxV, v)
			}
		}
	}
	const w, h, pad = 560, 320, 50
	x := func(i int) float64 { return pad + float64(i)*(w-2*pad)/float64(max(len(pts)-1, 1)) }
	y := func(v float64) float64 { return h - pad - v/maxV*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20">Forwarded packets/s with %d blocked prefixes, by device count</text>`+"\n", pad, prefixes)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`+"\n", pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`+"\n", pad, pad, pad, h-pad)
	for i, c := range pts {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), h-pad+16, c.devices)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">0</text><text x="5" y="%.0f">%.0fk</text>`+"\n", pad-15, h-pad, y(maxV)+4, maxV/1000)
	for vi, v := range []struct {
		name, color string
		get         func(*cell) float64
	}{
		{"no table", "#888888", func(c *cell) float64 { return median(c.none) }},
		{"curfew", "#2e7d32", func(c *cell) float64 { return median(c.curfew) }},
		{"fw4-style rules", "#c62828", func(c *cell) float64 { return median(c.fw4) }},
	} {
		var path []string
		for i, c := range pts {
			path = append(path, fmt.Sprintf("%.0f,%.0f", x(i), y(v.get(c))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", v.color, strings.Join(path, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", w-pad-110, pad+16*vi, v.color, v.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// ratios are the round-by-round ratios a[i]/b[i]: each round measures
// both variants back to back, so a slow moment of the machine affects both
// sides of one ratio.
func ratios(a, b []float64) []float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	return r
}

// ratio is the median of the round ratios.
func ratio(a, b []float64) float64 { return median(ratios(a, b)) }

// quartiles are the first and third quartiles of the round ratios: the
// spread of one round's figure, which the median of many rounds narrows.
func quartiles(a, b []float64) (q1, q3 float64) {
	r := ratios(a, b)
	sort.Float64s(r)
	return r[len(r)/4], r[(3*len(r))/4]
}

// bigRuleset is a ruleset with n devices (the lab's child among them, in
// a profile with every blocked prefix) and p blocked prefixes per family,
// taken from never-routed space (240.0.0.0/4, 2001:db8::/32).
func bigRuleset(child net.HardwareAddr, n, p int) *firewall.Ruleset {
	var v []netip.Prefix
	for i := 0; i < p; i++ {
		var a4 [4]byte
		binary.BigEndian.PutUint32(a4[:], 0xf0000000|uint32(i)<<4)
		v = append(v, netip.PrefixFrom(netip.AddrFrom4(a4), 28))
		var a6 [16]byte
		copy(a6[:], []byte{0x20, 0x01, 0x0d, 0xb8})
		binary.BigEndian.PutUint32(a6[4:], uint32(i))
		v = append(v, netip.PrefixFrom(netip.AddrFrom16(a6), 64))
	}
	rs := &firewall.Ruleset{LAN: []string{"br-lan"}, DNSPort: 53,
		Profiles: []firewall.Profile{{ID: "kids", Block: v}, {ID: "teens"}}}
	now := time.Now()
	for i := 0; i < n; i++ {
		mac := net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)}
		if i == 0 {
			mac = child
		}
		var off []firewall.Interval
		for d := 1; d <= windows; d++ {
			s := now.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Second)
			off = append(off, firewall.Interval{From: s, To: s.Add(10 * time.Hour)})
		}
		prof := "kids"
		if i%2 == 1 {
			prof = "teens"
		}
		rs.Devices = append(rs.Devices, firewall.Device{MAC: mac, Profile: prof, Offline: off})
	}
	sort.Slice(rs.Devices, func(i, j int) bool { return rs.Devices[i].MAC.String() < rs.Devices[j].MAC.String() })
	return rs
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
