// Package openwrt holds the OpenWrt feed (curfew, luci-app-curfew); its
// tests check the packages that `make ipk` builds the way opkg and a router
// would see them.
package openwrt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const version = "0.1.0-r1"

// Budgets from the packaging issue; sizes are deterministic, so a test
// holds them.
const (
	maxMipsleBinary = 6 << 20
	maxIPK          = 5 << 19 // 2.5 MB
)

type target struct {
	arch    string // OpenWrt package architecture
	dist    string // dist/curfew-<dist>
	machine elf.Machine
	order   string // "big" or "little"
	class   elf.Class
	qemu    string // qemu-user binary name
}

var targets = []target{
	{"mips_24kc", "mips", elf.EM_MIPS, "big", elf.ELFCLASS32, "qemu-mips-static"},
	{"mipsel_24kc", "mipsle", elf.EM_MIPS, "little", elf.ELFCLASS32, "qemu-mipsel-static"},
	{"arm_cortex-a7_neon-vfpv4", "armv7", elf.EM_ARM, "little", elf.ELFCLASS32, "qemu-arm-static"},
	{"aarch64_cortex-a53", "arm64", elf.EM_AARCH64, "little", elf.ELFCLASS64, "qemu-aarch64-static"},
	{"x86_64", "amd64", elf.EM_X86_64, "little", elf.ELFCLASS64, ""},
}

var build struct {
	once sync.Once
	err  error
}

// packages runs `make ipk apk` once (go's build cache makes it cheap after
// `make cross`) and returns dist/ipk; the .apk files are in dist/apk.
func packages(t *testing.T) string {
	t.Helper()
	tools(t)
	build.once.Do(func() {
		out, err := exec.Command("make", "-C", "..", "ipk", "apk", "PKG_VERSION="+version).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("make ipk apk: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return filepath.Join("..", "dist", "ipk")
}

type entry struct {
	mode os.FileMode
	data []byte
}

// untar reads a (gzip'd) tar into a map of cleaned names.
func untar(t *testing.T, data []byte, gz bool) map[string]entry {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimPrefix(h.Name, "./")] = entry{mode: os.FileMode(h.Mode).Perm(), data: b}
	}
}

// ipk opens a package: its outer members, control files and data files.
func ipk(t *testing.T, path string) (outer, control, data map[string]entry) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	outer = untar(t, raw, true)
	for _, want := range []string{"debian-binary", "control.tar.gz", "data.tar.gz"} {
		if _, ok := outer[want]; !ok {
			t.Fatalf("%s lacks ./%s (has %v)", path, want, keys(outer))
		}
	}
	if len(outer) != 3 {
		t.Errorf("%s has %d members, want 3", path, len(outer))
	}
	if string(outer["debian-binary"].data) != "2.0\n" {
		t.Errorf("debian-binary = %q", outer["debian-binary"].data)
	}
	return outer, untar(t, outer["control.tar.gz"].data, true), untar(t, outer["data.tar.gz"].data, true)
}

func keys(m map[string]entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func fields(control []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(control), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			out[k] = v
		}
	}
	return out
}

func TestCurfewPackages(t *testing.T) {
	dir := packages(t)
	for _, tg := range targets {
		t.Run(tg.arch, func(t *testing.T) {
			path := filepath.Join(dir, tg.arch, fmt.Sprintf("curfew_%s_%s.ipk", version, tg.arch))
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size() > maxIPK {
				t.Errorf(".ipk is %d bytes, budget %d", info.Size(), maxIPK)
			}
			_, control, data := ipk(t, path)
			f := fields(control["control"].data)
			for k, want := range map[string]string{"Package": "curfew", "Version": version, "Architecture": tg.arch} {
				if f[k] != want {
					t.Errorf("control %s = %q, want %q", k, f[k], want)
				}
			}
			for _, k := range []string{"Depends", "Installed-Size", "Description"} {
				if f[k] == "" {
					t.Errorf("control lacks %s", k)
				}
			}
			if !strings.Contains(f["Depends"], "kmod-nft-core") || !strings.Contains(f["Depends"], "kmod-nf-conntrack-netlink") {
				t.Errorf("Depends = %q: kernel modules missing", f["Depends"])
			}
			if got := strings.TrimSpace(string(control["conffiles"].data)); got != "/etc/config/curfew" {
				t.Errorf("conffiles = %q", got)
			}
			for _, s := range []string{"postinst", "prerm"} {
				c, ok := control[s]
				if !ok || c.mode != 0o755 || !strings.Contains(string(c.data), "default_"+s) {
					t.Errorf("%s: present %v mode %v", s, ok, c.mode)
				}
			}
			wantFiles := map[string]os.FileMode{
				"usr/sbin/curfew":                   0o755,
				"etc/init.d/curfew":                 0o755,
				"etc/config/curfew":                 0o600,
				"etc/uci-defaults/90-curfew":        0o755,
				"etc/hotplug.d/ntp/25-curfew":       0o644,
				"etc/capabilities/curfew.json":      0o644,
				"etc/curfew/":                       0o700,
				"lib/upgrade/keep.d/curfew":         0o644,
				"usr/share/curfew/firewall.include": 0o755,
			}
			// Directories: none of the system's (opkg would reset its mode).
			carried := map[string]bool{"etc/curfew/": true, "etc/capabilities/": true, "etc/hotplug.d/ntp/": true, "usr/share/curfew/": true}
			for name := range data {
				if (strings.HasSuffix(name, "/") || name == "") && !carried[name] {
					t.Errorf("data carries directory %q, which is the system's", name)
				}
			}
			if got := string(data["lib/upgrade/keep.d/curfew"].data); got != "/etc/curfew/\n" {
				t.Errorf("keep.d/curfew = %q, want /etc/curfew/ (sysupgrade keeps the overrides)", got)
			}
			for name, mode := range wantFiles {
				e, ok := data[name]
				if !ok {
					t.Errorf("data lacks %s", name)
					continue
				}
				if e.mode != mode {
					t.Errorf("%s mode %v, want %v", name, e.mode, mode)
				}
			}
			bin := data["usr/sbin/curfew"].data
			ef, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("binary is not ELF: %v", err)
			}
			order := "little"
			if ef.ByteOrder.String() == "BigEndian" {
				order = "big"
			}
			if ef.Machine != tg.machine || ef.Class != tg.class || order != tg.order {
				t.Errorf("binary is %v %v %s-endian, want %v %v %s-endian", ef.Machine, ef.Class, order, tg.machine, tg.class, tg.order)
			}
			if tg.machine == elf.EM_MIPS {
				// e_flags of an ELF32 header: the architecture nibble must
				// be MIPS32 or MIPS32r2 (what a 24Kc runs), the ABI o32.
				flags := ef.ByteOrder.Uint32(bin[36:40])
				if arch := flags & 0xf0000000; arch != 0x50000000 && arch != 0x70000000 {
					t.Errorf("MIPS e_flags %#x: architecture is not MIPS32", flags)
				}
				if flags&0x0000f000 != 0x00001000 {
					t.Errorf("MIPS e_flags %#x: ABI is not o32", flags)
				}
			}
			if ef.Section(".symtab") != nil {
				t.Error("binary is not stripped")
			}
			if tg.dist == "mipsle" && len(bin) > maxMipsleBinary {
				t.Errorf("mipsle binary is %d bytes, budget %d", len(bin), maxMipsleBinary)
			}
			t.Logf("%s: binary %d bytes, .ipk %d bytes", tg.arch, len(bin), info.Size())
		})
	}
}

func TestLuciPackage(t *testing.T) {
	dir := packages(t)
	_, control, data := ipk(t, filepath.Join(dir, "x86_64", fmt.Sprintf("luci-app-curfew_%s_all.ipk", version)))
	f := fields(control["control"].data)
	if f["Architecture"] != "all" || f["Package"] != "luci-app-curfew" || !strings.Contains(f["Depends"], "curfew") {
		t.Errorf("control = %v", f)
	}
	// LuCI apps reload rpcd after a live install (luci.mk), or the pages
	// find no curfew object until the next reboot.
	pkg := string(control["postinst-pkg"].data)
	if !strings.Contains(pkg, "/etc/init.d/rpcd reload") || !strings.Contains(pkg, "luci-indexcache") || !strings.Contains(pkg, `[ -n "${IPKG_INSTROOT}" ] ||`) {
		t.Errorf("postinst-pkg does not reload rpcd on live systems only:\n%s", pkg)
	}
	carried := map[string]bool{"www/luci-static/resources/curfew/": true, "www/luci-static/resources/view/curfew/": true, "usr/libexec/rpcd/": true}
	for name := range data {
		if (strings.HasSuffix(name, "/") || name == "") && !carried[name] {
			t.Errorf("data carries directory %q, which is the system's", name)
		}
	}
}

// TestCrossBuiltBinariesAgree runs the router builds under qemu-user and
// compares their output with this machine's build: version, check and plan
// on the sample config.
func TestCrossBuiltBinariesAgree(t *testing.T) {
	packages(t)
	runs := [][]string{
		{"version"},
		{"check", "--config", "../examples/curfew.conf"},
		{"plan", "--config", "../examples/curfew.conf", "--system", "../examples/system.conf", "--at", "2026-03-29T06:30:00+01:00", "--seen", "5a:00:00:00:00:09", "--json"},
		{"plan", "--config", "../examples/curfew.conf", "--system", "../examples/system.conf", "--at", "2026-10-25T01:30:00+01:00"},
	}
	native := map[int]string{}
	for i, args := range runs {
		out, err := exec.Command(filepath.Join("..", "dist", "curfew-amd64"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("amd64 %v: %v %s", args, err, out)
		}
		native[i] = string(out)
	}
	for _, tg := range targets {
		if tg.qemu == "" {
			continue
		}
		t.Run(tg.arch, func(t *testing.T) {
			qemu, err := exec.LookPath(tg.qemu)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s missing (CI installs qemu-user-static)", tg.qemu)
				}
				t.Skipf("%s missing: apt-get install qemu-user-static", tg.qemu)
			}
			for i, args := range runs {
				out, err := exec.Command(qemu, append([]string{filepath.Join("..", "dist", "curfew-"+tg.dist)}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %v %s", args, err, out)
				}
				if string(out) != native[i] {
					t.Errorf("%v differs from amd64:\n%s\nwant\n%s", args, out, native[i])
				}
			}
		})
	}
}
