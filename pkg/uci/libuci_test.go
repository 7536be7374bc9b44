package uci

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests hold the parser against OpenWrt's own `uci` (libuci), built
// from ../shared/openwrt by `make openwrt-tools`: for each input, curfew's
// reading must equal `uci -c DIR show`, or both must refuse the file.

// uciBinary is the real uci; under CI=true its absence fails the test.
func uciBinary(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("OPENWRT_TOOLS")
	if dir == "" {
		dir = "/var/cache/curfew-openwrt"
	}
	bin := filepath.Join(dir, "bin", "uci")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: make openwrt-tools builds OpenWrt's uci", bin)
		}
		t.Skipf("OpenWrt's uci is not built (make openwrt-tools): %v", err)
	}
	return bin
}

// show renders a parsed file as `uci show PKG` prints it.
func show(f *File, pkg string) string {
	var b strings.Builder
	quote := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
	seen := map[string]int{}
	for _, s := range f.Sections {
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("@%s[%d]", s.Type, seen[s.Type])
		}
		seen[s.Type]++
		fmt.Fprintf(&b, "%s.%s=%s\n", pkg, name, s.Type)
		for _, o := range s.Resolved() {
			q := make([]string, len(o.Values))
			for i, v := range o.Values {
				q[i] = quote(v)
			}
			fmt.Fprintf(&b, "%s.%s.%s=%s\n", pkg, name, o.Name, strings.Join(q, " "))
		}
	}
	return b.String()
}

// libuci runs the real `uci show` on src; ok is false when it refuses it.
func libuci(t testing.TB, bin, dir string, src []byte) (out string, ok bool) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "c"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", dir, "show", "c")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("uci did not finish reading %q in 10 s", src)
		}
		if _, exit := err.(*exec.ExitError); !exit {
			t.Fatalf("uci: %v", err)
		}
		return stderr.String(), false
	}
	return stdout.String(), true
}

// compare reports a difference between curfew's reading of src and libuci's.
func compare(t testing.TB, bin, dir string, src []byte) {
	t.Helper()
	want, uciOK := libuci(t, bin, dir, src)
	f, err := Parse("c", src)
	switch {
	case !uciOK && err != nil:
	case !uciOK:
		t.Errorf("uci refuses (%s), curfew reads:\n%s", strings.TrimSpace(want), show(f, "c"))
	case err != nil:
		t.Errorf("uci reads:\n%scurfew refuses: %v", want, err)
	default:
		if got := show(f, "c"); got != want {
			t.Errorf("readings differ\ncurfew:\n%suci:\n%s", got, want)
		}
	}
}

func TestCorpusReadsAsLibuciReadsIt(t *testing.T) {
	bin := uciBinary(t)
	files, err := filepath.Glob("testdata/corpus/*.conf")
	if err != nil || len(files) < 30 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	dir := t.TempDir()
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, bin, dir, src)
		})
	}
}

// FuzzMatchesLibuci compares the two readings on generated input, NUL
// bytes included.
func FuzzMatchesLibuci(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*.conf")
	for _, path := range files {
		if src, err := os.ReadFile(path); err == nil {
			f.Add(src)
		}
	}
	bin := uciBinary(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 4096 {
			return
		}
		compare(t, bin, dir, src)
	})
}
