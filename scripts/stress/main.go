// Command stress runs the kernel-facing tests over and over on a loaded
// machine and reports each test's flake rate: how a new test is judged
// before it lands (`make stress`, as root).
//
// A fresh-clone CI run once failed on a window that began "now + 2 s" and
// once on one packet more than a test expected; both passed alone. So the
// tests run here as CI runs them (the packages at once, go test's own
// parallelism) and beside a CPU hog on every core, several times, and any
// failure fails the run.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	count := flag.Int("count", 5, "runs of each test")
	hogs := flag.Int("hogs", runtime.NumCPU(), "busy threads beside the tests")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./pkg/firewall/...", "./e2e", "./pkg/daemon"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var spin atomic.Bool
	spin.Store(true)
	for range *hogs {
		go func() {
			runtime.LockOSThread()
			for x := 0; spin.Load(); x++ {
			}
		}()
	}
	began := time.Now()
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json", "-count", fmt.Sprint(*count), "-timeout", "120m"}, pkgs...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	type tally struct{ pass, fail, skip int }
	tests := map[string]*tally{}
	failed := map[string][]string{} // test -> its output lines of failing runs
	lines := map[string][]string{}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Action, Package, Test, Output string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		name := ev.Package + " " + ev.Test
		if strings.Contains(ev.Test, "/") {
			continue // subtests count with their parent
		}
		t := tests[name]
		if t == nil {
			t = &tally{}
			tests[name] = t
		}
		switch ev.Action {
		case "output":
			lines[name] = append(lines[name], ev.Output)
		case "pass":
			t.pass++
			delete(lines, name)
		case "skip":
			t.skip++
			delete(lines, name)
		case "fail":
			t.fail++
			failed[name] = append(failed[name], lines[name]...)
			delete(lines, name)
		}
	}
	werr := cmd.Wait()
	spin.Store(false)

	names := make([]string, 0, len(tests))
	for n := range tests {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Printf("%d runs of each test in %s beside %d busy threads, %v\n\n", *count, strings.Join(pkgs, " "), *hogs, time.Since(began).Round(time.Second))
	fmt.Println("| test | passed | failed | skipped | flake rate |")
	fmt.Println("|---|---|---|---|---|")
	bad := 0
	for _, n := range names {
		t := tests[n]
		rate := 0.0
		if runs := t.pass + t.fail; runs > 0 {
			rate = float64(t.fail) / float64(runs)
		}
		fmt.Printf("| %s | %d | %d | %d | %.0f%% |\n", n, t.pass, t.fail, t.skip, 100*rate)
		if t.fail > 0 {
			bad++
		}
	}
	for _, n := range names {
		if ls := failed[n]; len(ls) > 0 {
			fmt.Printf("\n%s failed:\n%s", n, strings.Join(ls, ""))
		}
	}
	if bad > 0 || werr != nil {
		fmt.Printf("\n%d of %d tests failed at least once (go test: %v)\n", bad, len(names), werr)
		os.Exit(1)
	}
	fmt.Printf("\nevery one of %d tests passed every run\n", len(names))
}
