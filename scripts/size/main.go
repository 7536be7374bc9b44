// Command size shows where the router binary's bytes go (`make size`): the
// file against its 6 MB budget, how much the code segment may still grow
// before the file grows by a whole 64 kB step (segments are aligned to 64
// kB on mips), and the code and read-only data of each package and the
// largest symbols, from a build with symbols made the way `make cross`
// builds (its -gcflags come in as arguments).
package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// budget is the mipsle binary's, as openwrt/package_test.go holds it.
const budget = 6 << 20

func main() {
	arch := flag.String("arch", "mipsle", "GOARCH (softfloat for mips)")
	top := flag.Int("top", 25, "largest symbols shown")
	flag.Parse()
	dir, err := os.MkdirTemp("", "curfew-size-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	stripped, full := filepath.Join(dir, "stripped"), filepath.Join(dir, "full")
	for _, b := range []struct {
		out     string
		ldflags string
	}{{stripped, "-s -w"}, {full, ""}} {
		args := append([]string{"build", "-trimpath", "-ldflags=" + b.ldflags}, flag.Args()...)
		cmd := exec.Command("go", append(args, "-o", b.out, "./cmd/curfew")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+*arch, "GOMIPS=softfloat")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fail(err)
		}
	}
	info, err := os.Stat(stripped)
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s binary: %d bytes, budget %d (%+d)\n", *arch, info.Size(), budget, budget-info.Size())
	f, err := elf.Open(stripped)
	if err != nil {
		fail(err)
	}
	// Every segment is padded to its alignment (64 kB on mips) and the
	// section names come after the last pad: the file grows by a step when
	// any segment crosses one, the read-only data (strings, tables, the
	// line tables of the code) as much as the code.
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		what := "read-only data segment"
		switch {
		case p.Flags&elf.PF_X != 0:
			what = "code segment"
		case p.Flags&elf.PF_W != 0:
			what = "data segment"
		}
		room := (p.Filesz+p.Align-1)/p.Align*p.Align - p.Filesz
		fmt.Printf("%s: %d bytes; %d more before the file grows by a %d kB step\n", what, p.Filesz, room, p.Align>>10)
	}
	f.Close()

	out, err := exec.Command("go", "tool", "nm", "-size", "-sort", "size", full).Output()
	if err != nil {
		fail(err)
	}
	type sym struct {
		size int
		kind string
		name string
	}
	var syms []sym
	byPkg := map[string][2]int{} // code, data
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		n, err := strconv.Atoi(fs[1])
		if err != nil || n == 0 {
			continue
		}
		s := sym{n, fs[2], strings.Join(fs[3:], " ")}
		syms = append(syms, s)
		v := byPkg[pkgOf(s.name)]
		if s.kind == "T" || s.kind == "t" {
			v[0] += n
		} else {
			v[1] += n
		}
		byPkg[pkgOf(s.name)] = v
	}
	pkgs := make([]string, 0, len(byPkg))
	for p := range byPkg {
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool {
		a, b := byPkg[pkgs[i]], byPkg[pkgs[j]]
		return a[0]+a[1] > b[0]+b[1]
	})
	fmt.Printf("\n%10s %10s  package\n", "code", "data")
	for _, p := range pkgs[:min(len(pkgs), 30)] {
		fmt.Printf("%10d %10d  %s\n", byPkg[p][0], byPkg[p][1], p)
	}
	fmt.Printf("\n%10s  largest symbols\n", "bytes")
	for _, s := range syms[:min(len(syms), *top)] {
		fmt.Printf("%10d  %s %s\n", s.size, s.kind, s.name)
	}
}

// pkgOf is the package of a symbol name: what precedes the first dot
// after the last slash ("curfew/pkg/daemon.(*Daemon).Run" → curfew/pkg/daemon).
func pkgOf(name string) string {
	i := strings.LastIndexByte(name, '/')
	if j := strings.IndexByte(name[i+1:], '.'); j >= 0 {
		return name[:i+1+j]
	}
	return name
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "size:", err)
	os.Exit(1)
}
