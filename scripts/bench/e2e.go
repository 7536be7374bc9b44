package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"curfew/pkg/lab"
)

// The daemon path end to end: a generated config file → parse → plan →
// ruleset → netlink, with the real daemon in the lab router. For each size:
// the time from exec to the table in the kernel, the resident memory once
// settled, and the time of a pause (the CLI returns when the kernel has it
// and the paused device's connections are cut). The sizes are one profile
// blocking P prefixes with D devices in it, and one profile with a
// blocklist file of N domains.

type e2eSize struct {
	devices, prefixes, domains int
}

var e2eSizes = []e2eSize{{10, 0, 0}, {100, 10000, 0}, {1000, 0, 0}, {1000, 100000, 0}, {5000, 100000, 0}, {100, 0, 1000000}}

type e2eResult struct {
	e2eSize
	toTable time.Duration
	rssMB   float64
	// peakMB is the most the daemon had resident (VmHWM), building the
	// table included.
	peakMB float64
	pause  time.Duration
	// none and curfew are the forwarding rates (packets per second) of
	// the lab child without and with the daemon's table, round by round.
	none, curfew []float64
	err          error
}

// e2eConfig writes the config (and the blocklist file) for one size; the
// lab child (child, its MAC) is one of the devices, so that forwarding is
// measured through the daemon's own table.
func e2eConfig(dir string, s e2eSize, child string) (string, error) {
	var b strings.Builder
	b.WriteString("config curfew 'main'\n\tlist lan 'br-lan'\n\nconfig profile 'kid'\n\toption name 'Kid'\n")
	for i := 0; i < s.prefixes; i++ {
		// distinct /28s inside 10.0.0.0/8 (the lab never routes there),
		// up to a million of them
		fmt.Fprintf(&b, "\tlist block '10.%d.%d.%d/28'\n", i/4096, i/16%256, i%16*16)
	}
	if s.domains > 0 {
		list := filepath.Join(dir, "list.txt")
		f, err := os.Create(list)
		if err != nil {
			return "", err
		}
		for i := 0; i < s.domains; i++ {
			fmt.Fprintf(f, "0.0.0.0 host%d.blocked.test\n", i)
		}
		f.Close()
		fmt.Fprintf(&b, "\tlist blocklist '%s'\n", list)
	}
	fmt.Fprintf(&b, "\nconfig device\n\toption mac '%s'\n\toption name 'lab child'\n\toption profile 'kid'\n", child)
	for i := 0; i < s.devices; i++ {
		fmt.Fprintf(&b, "\nconfig device\n\toption mac '02:aa:00:00:%02x:%02x'\n\toption name 'dev%d'\n\toption profile 'kid'\n", i/256, i%256, i)
	}
	path := filepath.Join(dir, "curfew")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func e2eRun(ctx context.Context, l *lab.Lab, h *netlink.Handle, bin, dir string, s e2eSize, rounds int, sample time.Duration) e2eResult {
	r := e2eResult{e2eSize: s}
	cfg, err := e2eConfig(dir, s, l.Child.MAC)
	if err != nil {
		r.err = err
		return r
	}
	system := filepath.Join(dir, "system")
	os.WriteFile(system, []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	sock := filepath.Join(dir, "sock")
	l.Exec(ctx, l.Router, "nft", "delete", "table", "inet", "curfew")
	t0 := time.Now()
	cmd := exec.Command("ip", "netns", "exec", l.Router, bin, "daemon", "--config", cfg, "--system", system,
		"--state-dir", dir, "--socket", sock, "--trust-clock")
	// as the init script runs it on a router (procd: GOGC=50)
	cmd.Env = append(os.Environ(), "GOGC=50")
	if r.err = cmd.Start(); r.err != nil {
		return r
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	// the table goes in as one batch: its last chain there means all of it
	if !lab.WaitFor(120*time.Second, func() bool {
		_, err := l.Exec(ctx, l.Router, "nft", "list", "chain", "inet", "curfew", "forward")
		return err == nil
	}) {
		r.err = fmt.Errorf("no table within 120 s")
		return r
	}
	r.toTable = time.Since(t0)
	r.rssMB = settledRSS(cmd.Process.Pid)
	r.peakMB = float64(lab.PeakRSSKB(cmd.Process.Pid)) / 1024
	if r.pause, r.err = e2ePause(l, bin, sock); r.err != nil {
		return r
	}
	// Forwarding: the daemon is killed (a clean stop would remove its
	// table) and the table it left is switched off and on between rounds
	// (a dormant table's hooks are unregistered).
	cmd.Process.Kill()
	cmd.Wait()
	rates, err := compare(l, h, rounds, sample, []func() error{
		func() error { return tables(ctx, l, nil, "curfew") },
		func() error { return tables(ctx, l, []string{"curfew"}, "curfew") },
	})
	if err != nil {
		r.err = err
		return r
	}
	r.none, r.curfew = rates[0], rates[1]
	l.Exec(ctx, l.Router, "nft", "delete", "table", "inet", "curfew")
	return r
}

// e2ePause pauses the lab child while it has a connection open, as a
// parent would, and returns the median of five: from the command to its
// answer, which comes once the rules are in the kernel and the child's
// connections are cut. Each pause is resumed, untimed, before the next.
func e2ePause(l *lab.Lab, bin, sock string) (time.Duration, error) {
	var pauses []float64
	for range 5 {
		d, err := e2ePauseOnce(l, bin, sock)
		if err != nil {
			return 0, err
		}
		pauses = append(pauses, float64(d))
		if out, err := exec.Command(bin, "resume", "lab child", "--socket", sock).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("resume: %v %s", err, out)
		}
	}
	return time.Duration(median(pauses)), nil
}

func e2ePauseOnce(l *lab.Lab, bin, sock string) (time.Duration, error) {
	c, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), time.Second)
	if err != nil {
		return 0, fmt.Errorf("the child before a pause: %w", err)
	}
	defer c.Close()
	if err := lab.Echo(c, "before the pause"); err != nil {
		return 0, fmt.Errorf("the child before a pause: %w", err)
	}
	t := time.Now()
	if out, err := exec.Command(bin, "pause", "lab child", "--for", "10m", "--socket", sock).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pause: %v %s", err, out)
	}
	d := time.Since(t)
	if lab.Echo(c, "after the pause") == nil {
		return 0, fmt.Errorf("the child's open connection carried data after the pause")
	}
	return d, nil
}

// settledRSS waits until the daemon's resident memory has stopped
// moving — the daemon hands back what building the table took once its
// cuts are done, and once more 2 s later, which can take seconds on a
// busy machine — and returns it in MB: samples 250 ms apart that stay
// within 2% for 4 s, or what there is after 60 s.
func settledRSS(pid int) float64 {
	const window = 16
	var last []int
	deadline := time.Now().Add(60 * time.Second)
	for {
		time.Sleep(250 * time.Millisecond)
		last = append(last, lab.RSSKB(pid))
		if n := len(last); n >= window {
			lo, hi := slices.Min(last[n-window:]), slices.Max(last[n-window:])
			if float64(hi-lo) <= 0.02*float64(hi) || time.Now().After(deadline) {
				return float64(last[n-1]) / 1024
			}
		}
	}
}

// memoryChart draws the resident memory of each size as bars, a
// self-contained SVG.
func memoryChart(rs []e2eResult) string {
	const w, h, pad, top = 640, 260, 40, 20
	max := 40.0 // the target for 1,000 devices × 100,000 prefixes
	for _, r := range rs {
		if r.rssMB > max {
			max = r.rssMB
		}
	}
	bw := float64(w-2*pad) / float64(len(rs))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="10">`, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="12">resident memory of the daemon, MB (line: 40 MB)</text>`, pad)
	y40 := float64(h-pad) - float64(h-pad-top)*40/max
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4"/>`, pad, w-pad, y40, y40)
	for i, r := range rs {
		bh := float64(h-pad-top) * r.rssMB / max
		x := float64(pad) + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#5b9bd5"/>`, x+6, float64(h-pad)-bh, bw-12, bh)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.1f</text>`, x+bw/2, float64(h-pad)-bh-3, r.rssMB)
		label := fmt.Sprintf("%dd %dp", r.devices, r.prefixes)
		if r.domains > 0 {
			label = fmt.Sprintf("%dd %dk dom", r.devices, r.domains/1000)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+bw/2, h-pad+14, label)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// endToEnd measures every size and returns the report section; with svg
// set, it also writes the memory chart there.
func endToEnd(ctx context.Context, l *lab.Lab, h *netlink.Handle, bin, svg string, rounds int, sample time.Duration) string {
	var results []e2eResult
	var b strings.Builder
	b.WriteString("| devices | prefixes | blocklist domains | exec → table in kernel | resident, settled | peak | pause, command → kernel | forwarding, table / none |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range e2eSizes {
		dir, err := os.MkdirTemp("", "curfew-e2e-")
		if err != nil {
			return err.Error()
		}
		r := e2eRun(ctx, l, h, bin, dir, s, rounds, sample)
		os.RemoveAll(dir)
		results = append(results, r)
		if r.err != nil {
			fmt.Fprintf(&b, "| %d | %d | %d | failed: %v | | | | |\n", s.devices, s.prefixes, s.domains, r.err)
			continue
		}
		q1, q3 := quartiles(r.curfew, r.none)
		fmt.Fprintf(&b, "| %d | %d | %d | %v | %.1f MB | %.1f MB | %v | **%.3f** (%.2f–%.2f) |\n", s.devices, s.prefixes, s.domains,
			r.toTable.Round(time.Millisecond), r.rssMB, r.peakMB, r.pause.Round(time.Millisecond),
			ratio(r.curfew, r.none), q1, q3)
		fmt.Fprintf(os.Stderr, "e2e %+v: %v, %.1f MB (peak %.1f), pause %v, forwarding %.2f\n", s, r.toTable, r.rssMB, r.peakMB, r.pause, ratio(r.curfew, r.none))
	}
	if svg != "" {
		if err := os.WriteFile(svg, []byte(memoryChart(results)), 0o644); err == nil {
			fmt.Fprintf(&b, "\n![resident memory against size](%s)\n", filepath.Base(svg))
		}
	}
	return b.String()
}
