// Command demo shows curfew's main job on a virtual home network (root
// only): it builds the namespace lab, starts the curfew daemon in the
// router with a sample config whose bedtime begins at the next whole minute
// at least 20 s away, and prints whether the child's and the parent's
// devices reach the internet — including a connection the child opened
// before bedtime — whenever that changes (and a countdown meanwhile). It
// ends by itself once bedtime is over; everything is torn down then or on
// Ctrl-C.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"curfew/pkg/lab"
)

func main() {
	bin := flag.String("curfew", "bin/curfew", "curfew binary to run")
	window := flag.Duration("bedtime", 90*time.Second, "length of the demo bedtime (rounded up to whole minutes: schedules are HH:MM)")
	flag.Parse()
	if err := run(*bin, *window); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const system = "config system\n\toption hostname 'demo'\n\toption zonename 'UTC'\n\toption timezone 'UTC0'\n"

func run(bin string, window time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the demo creates network namespaces")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("building the virtual home network (network namespaces)")
	l, err := lab.New(ctx, "curfew-demo")
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down the virtual network")
		l.Close()
	}()
	if err := l.Serve(ctx); err != nil {
		return err
	}
	fmt.Printf("  child    %s  %s  %s  \"Kid phone\", profile kid: bedtime\n", l.Child.MAC, l.Child.IPv4, l.Child.IPv6)
	fmt.Printf("  parent   %s  %s  %s  \"Parent laptop\", profile grownup: no rules\n", l.Parent.MAC, l.Parent.IPv4, l.Parent.IPv6)
	fmt.Printf("  guest    %s  %s  %s  not in the config: gets unknown_profile 'guest'\n", l.Guest.MAC, l.Guest.IPv4, l.Guest.IPv6)
	fmt.Printf("  internet %s, %s (a server the devices connect to)\n", lab.InternetV4, lab.InternetV6)

	dir, err := os.MkdirTemp("", "curfew-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bed := time.Now().UTC().Add(20 * time.Second).Truncate(time.Minute).Add(time.Minute)
	wake := bed.Add(roundUp(window, time.Minute))
	cfg := l.SampleConfig(bed.Format("15:04"), wake.Format("15:04"), "")
	cfgPath, sysPath := filepath.Join(dir, "curfew"), filepath.Join(dir, "system")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sysPath, []byte(system), 0o644); err != nil {
		return err
	}
	step("sample config (/etc/config/curfew on a router)")
	fmt.Print(indent(cfg))

	step("curfew plan: what will be enforced at bedtime")
	show(bin, "plan", "--config", cfgPath, "--system", sysPath, "--at", bed.Add(time.Second).Format(time.RFC3339))

	step("starting curfew daemon in the router")
	d := exec.Command("ip", "netns", "exec", l.Router, bin, "daemon", "--config", cfgPath, "--system", sysPath,
		"--state-dir", dir, "--socket", filepath.Join(dir, "sock"), "--trust-clock")
	logs, err := d.StderrPipe()
	if err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	go prefix(logs, "    [curfew] ")

	conn, err := l.Dial(l.Child.NS, "tcp", net.JoinHostPort(lab.InternetV4, lab.EchoPort), 2*time.Second)
	if err != nil {
		return fmt.Errorf("child's long-lived connection: %w", err)
	}
	defer conn.Close()

	step(fmt.Sprintf("bedtime for the child is %s-%s UTC; a line whenever something changes (Ctrl-C stops early)", bed.Format("15:04"), wake.Format("15:04")))
	shown := false
	last, lastAt := "", time.Time{}
	for tick := time.NewTicker(2 * time.Second); ; {
		now := time.Now()
		line := fmt.Sprintf("child: %-34s open connection: %-8s parent: %s",
			status(l.TCP(l.Child.NS, lab.InternetV4), l.TCP(l.Child.NS, lab.InternetV6)),
			ok(lab.Echo(conn, "ping")),
			status(l.TCP(l.Parent.NS, lab.InternetV4), l.TCP(l.Parent.NS, lab.InternetV6)))
		switch {
		case line != last:
			fmt.Printf("  %s  %s\n", now.UTC().Format("15:04:05"), line)
			last, lastAt = line, now
		case now.Sub(lastAt) >= 10*time.Second:
			fmt.Printf("  %s  (no change; %s)\n", now.UTC().Format("15:04:05"), countdown(now, bed, wake))
			lastAt = now
		}
		if !shown && now.After(bed.Add(5*time.Second)) {
			shown = true
			step("the child's part of curfew's nftables table (in the router)")
			id := strings.ReplaceAll(l.Child.MAC, ":", "")
			for _, obj := range [][]string{{"chain", "inet", "curfew", "device_" + id}, {"set", "inet", "curfew", "offline_" + id}} {
				out, _ := l.Exec(ctx, l.Router, "nft", append([]string{"list"}, obj...)...)
				fmt.Print(indent(out))
			}
			fmt.Printf("    (the whole table: ip netns exec %s nft list table inet curfew)\n", l.Router)
			step("curfew plan now")
			show(bin, "plan", "--config", cfgPath, "--system", sysPath)
			askForMoreTime(l, bin, filepath.Join(dir, "sock"))
			fmt.Println()
		}
		if now.After(wake.Add(6 * time.Second)) {
			step("bedtime is over: the child is back online; done")
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// countdown says how long until bedtime starts or ends.
func countdown(now, bed, wake time.Time) string {
	switch {
	case now.Before(bed):
		return fmt.Sprintf("bedtime in %d s", int(bed.Sub(now).Round(time.Second).Seconds()))
	case now.Before(wake):
		return fmt.Sprintf("bedtime ends in %d s", int(wake.Sub(now).Round(time.Second).Seconds()))
	}
	return "bedtime is over"
}

// roundUp rounds d up to a whole multiple of unit (at least one).
func roundUp(d, unit time.Duration) time.Duration {
	n := (d + unit - 1) / unit
	return max(n, 1) * unit
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func status(v4, v6 error) string {
	if v4 == nil && v6 == nil {
		return "ONLINE  (IPv4 and IPv6)"
	}
	if v4 != nil && v6 != nil {
		return "OFFLINE (" + short(v4) + ")"
	}
	return fmt.Sprintf("partial (v4: %s, v6: %s)", ok(v4), ok(v6))
}

func ok(err error) string {
	if err == nil {
		return "works"
	}
	return "cut"
}

func short(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func show(bin string, args ...string) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil {
		fmt.Println("  ", err)
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func prefix(r io.Reader, p string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Println(p + sc.Text())
	}
}

// askForMoreTime shows the bedtime page: the child's phone checks for the
// internet and gets the page, asks for more time, and a parent approves
// a minute of it.
func askForMoreTime(l *lab.Lab, bin, sock string) {
	probe := "http://" + lab.InternetV4 + "/generate_204"
	step("the child's phone checks for the internet (" + probe + ") and gets the bedtime page instead")
	code, body, err := l.Get(l.Child.NS, probe)
	if err != nil {
		fmt.Println("  ", err)
		return
	}
	fmt.Printf("  HTTP %d (not the 204 the phone expects: it shows \"sign in to network\")\n", code)
	for _, m := range pageText.FindAllStringSubmatch(body, -1) {
		if t := strings.TrimSpace(html.UnescapeString(m[2])); t != "" && !strings.Contains(t, "<") && !strings.HasPrefix(t, "This page comes") {
			fmt.Println("    | " + t)
		}
	}
	step("the child taps \"Ask for more time\": 15 minutes, \"homework!\"")
	if code, _, err := l.Do(l.Child.NS, "POST", "http://"+lab.InternetV4+"/request", "minutes=15&message=homework%21"); err != nil || code != 303 {
		fmt.Println("   request:", code, err)
		return
	}
	step("a parent sees it (and gets it on a phone with list notify): curfew requests")
	show(bin, "requests", "--socket", sock)
	step("and gives one minute of it: curfew approve 1 --minutes 1")
	show(bin, "approve", "1", "--minutes", "1", "--socket", sock)
}

// pageText finds the headline and paragraphs of the bedtime page.
var pageText = regexp.MustCompile(`(?s)<(h1|p|q)[^>]*>(.*?)</`)
