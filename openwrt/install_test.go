package openwrt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// The package managers of OpenWrt, built from their sources by
// `make openwrt-tools`: these tests install curfew's packages with them into
// scratch roots, as OpenWrt's image builder does, and check what lands.

const newer = "0.1.1-r1" // the version an upgrade installs

// tools returns the directory of OpenWrt's programs (bin/apk, bin/opkg).
func tools(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OPENWRT_TOOLS")
	if dir == "" {
		dir = "/var/cache/curfew-openwrt"
	}
	for _, p := range []string{"bin/apk", "bin/opkg"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: .ci/run builds OpenWrt's tools (make openwrt-tools)", filepath.Join(dir, p))
			}
			t.Skipf("OpenWrt's tools are not built (make openwrt-tools): %v", err)
		}
	}
	return dir
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing into a scratch root with owners and chroot needs root")
		}
		t.Skip("needs root")
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// systemDirs are what base-files, luci-base and rpcd give a router
// (SYSTEM_DIRS in scripts/pkgfiles.sh), some with unusual modes so that a
// package resetting them shows.
var systemDirs = map[string]os.FileMode{
	".": 0o755, "etc": 0o751, "etc/config": 0o755, "etc/init.d": 0o755, "etc/uci-defaults": 0o755,
	"etc/hotplug.d": 0o755, "lib": 0o755, "lib/upgrade": 0o755, "lib/upgrade/keep.d": 0o755,
	"usr": 0o750, "usr/sbin": 0o755, "usr/share": 0o755, "usr/libexec": 0o755,
	"usr/share/rpcd": 0o755, "usr/share/rpcd/acl.d": 0o755, "usr/share/luci": 0o755, "usr/share/luci/menu.d": 0o755,
	"www": 0o755, "www/luci-static": 0o705, "www/luci-static/resources": 0o755, "www/luci-static/resources/view": 0o755,
	"tmp": 0o777 | os.ModeSticky, "var": 0o755,
}

// makeDirs creates dirs under root with their modes, parents first.
func makeDirs(t *testing.T, root string, dirs map[string]os.FileMode) {
	t.Helper()
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		p := filepath.Join(root, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, dirs[d]); err != nil {
			t.Fatal(err)
		}
	}
}

// scratchRoot makes an empty system root whose directories have modes a
// package must not change (an unusual /etc and /usr make a reset visible).
func scratchRoot(t *testing.T) (string, map[string]os.FileMode) {
	t.Helper()
	root := t.TempDir()
	dirs := systemDirs
	makeDirs(t, root, dirs)
	// base-files' /lib/functions.sh, reduced to recording what the
	// packages' scripts ask of it (and running an .ipk's postinst-pkg as
	// the real default_postinst does)
	if err := os.WriteFile(filepath.Join(root, "lib/functions.sh"), []byte(functionsSh), 0o644); err != nil {
		t.Fatal(err)
	}
	// what other packages would have put there
	if err := os.WriteFile(filepath.Join(root, "etc/config/system"), []byte("config system\n\toption zonename 'Europe/Berlin'\n\toption timezone 'CET-1CEST,M3.5.0,M10.5.0/3'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, dirs
}

const functionsSh = `
log() { echo "$*" >>"${IPKG_INSTROOT}/tmp/scripts.log"; }
add_group_and_user() { log "add_group_and_user pkg=$pkgname"; }
default_postinst() {
	[ -n "$pkgname" ] || local pkgname="$(basename "${1%.*}")"
	log "default_postinst pkg=$pkgname root=$IPKG_INSTROOT upgrade=$PKG_UPGRADE"
	if [ -f "$IPKG_INSTROOT/usr/lib/opkg/info/$pkgname.postinst-pkg" ]; then
		( . "$IPKG_INSTROOT/usr/lib/opkg/info/$pkgname.postinst-pkg" )
	fi
}
default_prerm() {
	[ -n "$pkgname" ] || local pkgname="$(basename "${1%.*}")"
	log "default_prerm pkg=$pkgname root=$IPKG_INSTROOT"
	if [ -f "$IPKG_INSTROOT/usr/lib/opkg/info/$pkgname.prerm-pkg" ]; then
		( . "$IPKG_INSTROOT/usr/lib/opkg/info/$pkgname.prerm-pkg" )
	fi
}
`

// checkScripts: the scripts ran the standard steps for both packages
// (want, in the log of functions.sh) and touched nothing of the live
// system (no rm or killall outside the root); the log starts afresh.
func checkScripts(t *testing.T, root, rec, when string, want ...string) {
	t.Helper()
	p := filepath.Join(root, "tmp/scripts.log")
	log, _ := os.ReadFile(p)
	for _, w := range want {
		if !strings.Contains(string(log), w) {
			t.Errorf("%s: scripts did not run %q; they ran:\n%s", when, w, log)
		}
	}
	if live, err := os.ReadFile(rec); err == nil {
		t.Errorf("%s: an image build's scripts reached the live system:\n%s", when, live)
	}
	os.Remove(p)
}

// recorder returns a PATH whose rm and killall log their calls to LOG
// before doing their work: a script that reaches for the live system from
// an image build shows in LOG.
func recorder(t *testing.T, log string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"rm", "killall"} {
		real, _ := exec.LookPath(name)
		body := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\n", name, log)
		if real != "" {
			body += fmt.Sprintf("exec %s \"$@\"\n", real)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir + ":" + os.Getenv("PATH")
}

func checkDirModes(t *testing.T, root string, dirs map[string]os.FileMode, when string) {
	t.Helper()
	for d, want := range dirs {
		info, err := os.Stat(filepath.Join(root, d))
		if err != nil {
			t.Errorf("%s: /%s: %v", when, d, err)
			continue
		}
		if got := info.Mode().Perm() | info.Mode()&os.ModeSticky; got != want {
			t.Errorf("%s: /%s has mode %v, was %v", when, d, got, want)
		}
	}
}

// installed are the files both packages put on a router, with their modes.
var installed = map[string]os.FileMode{
	"usr/sbin/curfew":                                   0o755,
	"etc/init.d/curfew":                                 0o755,
	"etc/config/curfew":                                 0o600,
	"etc/uci-defaults/90-curfew":                        0o755,
	"etc/hotplug.d/ntp/25-curfew":                       0o644,
	"etc/capabilities/curfew.json":                      0o644,
	"usr/share/curfew/firewall.include":                 0o755,
	"etc/curfew":                                        0o700 | os.ModeDir,
	"lib/upgrade/keep.d/curfew":                         0o644,
	"usr/libexec/rpcd/curfew":                           0o755,
	"usr/share/rpcd/acl.d/luci-app-curfew.json":         0o644,
	"usr/share/luci/menu.d/luci-app-curfew.json":        0o644,
	"www/luci-static/resources/view/curfew/overview.js": 0o644,
	"www/luci-static/resources/curfew/dom.js":           0o644,
	"www/luci-static/resources/view/curfew/profiles.js": 0o644,
	"www/luci-static/resources/view/curfew/activity.js": 0o644,
	"www/luci-static/resources/view/curfew":             0o755 | os.ModeDir,
	"www/luci-static/resources/curfew":                  0o755 | os.ModeDir,
	"usr/share/curfew":                                  0o755 | os.ModeDir,
	"etc/hotplug.d/ntp":                                 0o755 | os.ModeDir,
	"usr/libexec/rpcd":                                  0o755 | os.ModeDir,
	"etc/capabilities":                                  0o755 | os.ModeDir,
}

func checkInstalled(t *testing.T, root string) {
	t.Helper()
	for name, want := range installed {
		info, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("not installed: /%s", name)
			continue
		}
		if got := info.Mode() & (os.ModeDir | os.ModePerm); got != want {
			t.Errorf("/%s: mode %v, want %v", name, got, want)
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("/%s owned by %d:%d, want root", name, st.Uid, st.Gid)
		}
	}
}

// checkRemoved: after removal nothing of the packages is left but the
// parent's edited config (and the directories other packages share).
func checkRemoved(t *testing.T, root, config string) {
	t.Helper()
	for name, mode := range installed {
		if mode&os.ModeDir != 0 || name == "etc/config/curfew" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
			t.Errorf("/%s left after removal", name)
		}
	}
	for _, d := range []string{"etc/curfew", "usr/share/curfew", "www/luci-static/resources/view/curfew", "www/luci-static/resources/curfew"} {
		if _, err := os.Lstat(filepath.Join(root, d)); err == nil {
			t.Errorf("/%s left after removal", d)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, "etc/config/curfew"))
	if err != nil || string(got) != config {
		t.Errorf("the parent's /etc/config/curfew did not survive removal (%v):\n%s", err, got)
	}
}

// editConfig changes the installed config as a parent (or LuCI) would.
func editConfig(t *testing.T, root string) string {
	t.Helper()
	p := filepath.Join(root, "etc/config/curfew")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "option enabled '0'", "option enabled '1'", 1) + "\nconfig device 'alice_phone'\n\toption mac 'aa:bb:cc:00:00:01'\n\toption profile 'family'\n"
	if edited == string(b) {
		t.Fatal("shipped config has no enabled option to edit")
	}
	if err := os.WriteFile(p, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	return edited
}

// runInstalled runs the installed binary for its architecture (qemu-user
// for the router ones) on the installed default config.
func runInstalled(t *testing.T, tg target, root string) {
	t.Helper()
	bin := filepath.Join(root, "usr/sbin/curfew")
	var argv []string
	if tg.qemu != "" {
		q, err := exec.LookPath(tg.qemu)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing (CI installs qemu-user-static)", tg.qemu)
			}
			t.Logf("%s missing: not running the installed binary", tg.qemu)
			return
		}
		argv = append(argv, q)
	}
	argv = append(argv, bin)
	out := run(t, nil, argv[0], append(argv[1:], "version")...)
	if !strings.HasPrefix(out, "curfew ") {
		t.Errorf("curfew version = %q", out)
	}
	run(t, nil, argv[0], append(argv[1:], "check", "--config", filepath.Join(root, "etc/config/curfew"))...)
}

// buildNewer builds the same packages at a newer version for the upgrade.
func buildNewer(t *testing.T, format string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), format)
	cmd := exec.Command("../scripts/"+format+".sh", newer, dir)
	cmd.Env = append(os.Environ(), "APK="+filepath.Join(tools(t), "bin/apk"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s.sh %s: %v\n%s", format, newer, err, out)
	}
	return dir
}

// imagePackages stand for what an OpenWrt image has before curfew: the
// system's directories (base-files), libc, the kernel modules, luci-base,
// rpcd. Only the first has content.
var imagePackages = []string{"base-files", "libc", "kmod-nft-core", "kmod-nft-nat", "kmod-nft-fib", "kmod-nf-conntrack-netlink", "kmod-sched-core", "luci-base", "rpcd"}

// apkStubs builds the image's packages with apk mkpkg.
func apkStubs(t *testing.T, apk string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, name := range imagePackages {
		files := filepath.Join(dir, name)
		if name == "base-files" {
			makeDirs(t, files, systemDirs)
		} else {
			os.Mkdir(files, 0o755)
		}
		p := filepath.Join(dir, name+".apk")
		run(t, nil, apk, "mkpkg", "--info", "name:"+name, "--info", "version:1-r1", "--info", "arch:noarch", "--files", files, "--output", p)
		out = append(out, p)
	}
	return out
}

func TestApkInstallUpgradeRemove(t *testing.T) {
	needRoot(t)
	apk := filepath.Join(tools(t), "bin/apk")
	packages(t)
	stubs := apkStubs(t, apk)
	upgrade := buildNewer(t, "apk")
	for _, tg := range targets {
		t.Run(tg.arch, func(t *testing.T) {
			root, dirs := scratchRoot(t)
			repo := filepath.Join("..", "dist", "apk", tg.arch)
			common := []string{"--root", root, "--allow-untrusted", "--no-network", "--arch", tg.arch, "--force-no-chroot", "--no-cache", "--preserve-env"}
			// as OpenWrt's image build runs apk (rootfs.mk: --preserve-env): scripts see IPKG_INSTROOT
			rec := filepath.Join(t.TempDir(), "live.log")
			env := []string{"IPKG_INSTROOT=" + root, "PATH=" + recorder(t, rec)}
			args := append([]string{"add", "--initdb"}, common...)
			args = append(append(args, stubs...), filepath.Join(repo, "curfew-"+version+".apk"), filepath.Join(repo, "luci-app-curfew-"+version+".apk"))
			run(t, env, apk, args...)
			checkInstalled(t, root)
			checkDirModes(t, root, dirs, "after install")
			checkScripts(t, root, rec, "after install", "default_postinst pkg=curfew root="+root+" upgrade=\n", "default_postinst pkg=luci-app-curfew root="+root+" upgrade=\n")
			list, err := os.ReadFile(filepath.Join(root, "lib/apk/packages/curfew.list"))
			if err != nil || !strings.Contains(string(list), "/etc/init.d/curfew\n") || !strings.Contains(string(list), "/etc/uci-defaults/90-curfew\n") {
				t.Errorf("curfew.list (what default_postinst enables and runs) = %q, %v", list, err)
			}
			static, _ := os.ReadFile(filepath.Join(root, "lib/apk/packages/curfew.conffiles_static"))
			if !strings.HasPrefix(string(static), "/etc/config/curfew ") {
				t.Errorf("curfew.conffiles_static = %q", static)
			}
			runInstalled(t, tg, root)

			config := editConfig(t, root)
			args = append(append([]string{"add"}, common...), filepath.Join(upgrade, tg.arch, "curfew-"+newer+".apk"), filepath.Join(upgrade, tg.arch, "luci-app-curfew-"+newer+".apk"))
			run(t, env, apk, args...)
			checkScripts(t, root, rec, "after upgrade", "default_postinst pkg=curfew root="+root+" upgrade=1\n", "default_postinst pkg=luci-app-curfew root="+root+" upgrade=1\n")
			if db, _ := os.ReadFile(filepath.Join(root, "lib/apk/db/installed")); !strings.Contains(string(db), "P:curfew\nV:"+newer+"\n") {
				t.Errorf("after upgrade, apk's database has no curfew %s:\n%s", newer, db)
			}
			if got, _ := os.ReadFile(filepath.Join(root, "etc/config/curfew")); string(got) != config {
				t.Errorf("upgrade replaced the parent's config:\n%s", got)
			}
			checkInstalled(t, root)
			checkDirModes(t, root, dirs, "after upgrade")

			run(t, env, apk, append(append([]string{"del"}, common...), "luci-app-curfew", "curfew")...)
			checkScripts(t, root, rec, "after removal", "default_prerm pkg=curfew root="+root+"\n", "default_prerm pkg=luci-app-curfew root="+root+"\n")
			checkRemoved(t, root, config)
			checkDirModes(t, root, dirs, "after removal")
		})
	}
}

// ipkStub writes an .ipk for NAME, standing for a package of the image;
// base-files carries the system's directories.
func ipkStub(t *testing.T, dir, name string) string {
	t.Helper()
	tgz := func(files map[string]string, dirs map[string]os.FileMode) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		var names []string
		for d := range dirs {
			if d != "." {
				names = append(names, d)
			}
		}
		sort.Strings(names)
		for _, d := range names {
			mode := int64(dirs[d].Perm())
			if dirs[d]&os.ModeSticky != 0 {
				mode |= 0o1000
			}
			tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Typeflag: tar.TypeDir, Mode: mode})
		}
		for n, body := range files {
			tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
		}
		tw.Close()
		zw.Close()
		return b.Bytes()
	}
	var dirs map[string]os.FileMode
	if name == "base-files" {
		dirs = systemDirs
	}
	p := filepath.Join(dir, name+".ipk")
	outer := tgz(map[string]string{
		"debian-binary":  "2.0\n",
		"control.tar.gz": string(tgz(map[string]string{"control": fmt.Sprintf("Package: %s\nVersion: 1-r1\nArchitecture: all\nDescription: stub\n", name)}, nil)),
		"data.tar.gz":    string(tgz(nil, dirs)),
	}, nil)
	if err := os.WriteFile(p, outer, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpkgInstallUpgradeRemove(t *testing.T) {
	needRoot(t)
	opkg := filepath.Join(tools(t), "bin/opkg")
	dir := packages(t)
	stubDir := t.TempDir()
	var stubs []string
	for _, name := range imagePackages {
		stubs = append(stubs, ipkStub(t, stubDir, name))
	}
	upgrade := buildNewer(t, "ipk")
	for _, tg := range targets {
		t.Run(tg.arch, func(t *testing.T) {
			root, dirs := scratchRoot(t)
			conf := filepath.Join(t.TempDir(), "opkg.conf")
			// as OpenWrt's image builder configures opkg for an image
			os.WriteFile(conf, []byte(fmt.Sprintf("dest root /\narch all 1\narch noarch 1\narch %s 10\n", tg.arch)), 0o644)
			rec := filepath.Join(t.TempDir(), "live.log")
			env := []string{"IPKG_INSTROOT=" + root, "PATH=" + recorder(t, rec)}
			op := func(args ...string) string {
				return run(t, env, opkg, append([]string{"-f", conf, "-o", root, "--force-postinstall"}, args...)...)
			}
			op(append(append([]string{"install"}, stubs...),
				filepath.Join(dir, tg.arch, fmt.Sprintf("curfew_%s_%s.ipk", version, tg.arch)),
				filepath.Join(dir, tg.arch, fmt.Sprintf("luci-app-curfew_%s_all.ipk", version)))...)
			checkInstalled(t, root)
			checkDirModes(t, root, dirs, "after install")
			checkScripts(t, root, rec, "after install", "default_postinst pkg=curfew root="+root+" upgrade=0\n", "default_postinst pkg=luci-app-curfew root="+root+" upgrade=0\n")
			runInstalled(t, tg, root)

			config := editConfig(t, root)
			op("install",
				filepath.Join(upgrade, tg.arch, fmt.Sprintf("curfew_%s_%s.ipk", newer, tg.arch)),
				filepath.Join(upgrade, tg.arch, fmt.Sprintf("luci-app-curfew_%s_all.ipk", newer)))
			if v := op("list-installed"); !strings.Contains(v, "curfew - "+newer) {
				t.Errorf("after upgrade: %s", v)
			}
			if got, _ := os.ReadFile(filepath.Join(root, "etc/config/curfew")); string(got) != config {
				t.Errorf("upgrade replaced the parent's config:\n%s", got)
			}
			checkInstalled(t, root)
			checkDirModes(t, root, dirs, "after upgrade")

			checkScripts(t, root, rec, "after upgrade", "default_postinst pkg=curfew root="+root+" upgrade=1\n", "default_postinst pkg=luci-app-curfew root="+root+" upgrade=1\n")
			op("remove", "luci-app-curfew", "curfew")
			checkScripts(t, root, rec, "after removal", "default_prerm pkg=curfew root="+root+"\n", "default_prerm pkg=luci-app-curfew root="+root+"\n")
			checkRemoved(t, root, config)
			checkDirModes(t, root, dirs, "after removal")
		})
	}
}

// hostProgram copies a program of this machine and the libraries it loads
// into root, at the same paths, so that root works as a chroot.
func hostProgram(t *testing.T, root, name, as string) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(path, filepath.Join(root, as))
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", path, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				copyFile(f, filepath.Join(root, f))
			}
		}
	}
}

// liveRoot is a scratch root that runs scripts as a router would: a shell,
// rm and basename, rpcd's init script (recording what it is asked to do)
// and LuCI's caches in /tmp.
func liveRoot(t *testing.T) string {
	t.Helper()
	root, _ := scratchRoot(t)
	hostProgram(t, root, "sh", "bin/sh")
	hostProgram(t, root, "rm", "bin/rm")
	hostProgram(t, root, "basename", "usr/bin/basename")
	// scripts send errors to /dev/null; a plain file serves them here
	// (no device node needed, whatever the test machine allows)
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "dev/null"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	rpcd := "#!/bin/sh\necho \"rpcd $*\" >>/tmp/scripts.log\n"
	if err := os.WriteFile(filepath.Join(root, "etc/init.d/rpcd"), []byte(rpcd), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "tmp/luci-indexcache.0123"), []byte("menu"), 0o644)
	os.MkdirAll(filepath.Join(root, "tmp/luci-modulecache"), 0o755)
	os.WriteFile(filepath.Join(root, "tmp/luci-modulecache/x"), []byte("module"), 0o644)
	return root
}

// checkLive: on a live router, installing luci-app-curfew reloads rpcd
// (so the curfew ubus object exists at once) and clears LuCI's caches.
func checkLive(t *testing.T, root string) {
	t.Helper()
	log, _ := os.ReadFile(filepath.Join(root, "tmp/scripts.log"))
	for _, w := range []string{"default_postinst pkg=curfew root= ", "default_postinst pkg=luci-app-curfew root= ", "rpcd reload\n"} {
		if !strings.Contains(string(log), w) {
			t.Errorf("live install did not run %q; scripts ran:\n%s", w, log)
		}
	}
	for _, p := range []string{"tmp/luci-indexcache.0123", "tmp/luci-modulecache"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("/%s survived a live install of luci-app-curfew", p)
		}
	}
}

// TestLiveInstallReloadsRpcd installs the packages on a "live" root: apk
// runs the scripts chrooted into it, as on the router; for the .ipk the
// installed postinst runs chrooted as opkg runs it on the router.
func TestLiveInstallReloadsRpcd(t *testing.T) {
	needRoot(t)
	dir := tools(t)
	ipkDir := packages(t)
	t.Run("apk", func(t *testing.T) {
		apk := filepath.Join(dir, "bin/apk")
		root := liveRoot(t)
		repo := filepath.Join("..", "dist", "apk", "x86_64")
		args := append([]string{"add", "--root", root, "--initdb", "--allow-untrusted", "--no-network", "--arch", "x86_64", "--no-cache"}, apkStubs(t, apk)...)
		run(t, nil, apk, append(args, filepath.Join(repo, "curfew-"+version+".apk"), filepath.Join(repo, "luci-app-curfew-"+version+".apk"))...)
		checkLive(t, root)
	})
	t.Run("opkg", func(t *testing.T) {
		opkg := filepath.Join(dir, "bin/opkg")
		root := liveRoot(t)
		conf := filepath.Join(t.TempDir(), "opkg.conf")
		os.WriteFile(conf, []byte("dest root /\narch all 1\narch noarch 1\narch x86_64 10\n"), 0o644)
		stubDir := t.TempDir()
		args := []string{"-f", conf, "-o", root, "install"}
		for _, name := range imagePackages {
			args = append(args, ipkStub(t, stubDir, name))
		}
		run(t, nil, opkg, append(args, filepath.Join(ipkDir, "x86_64", fmt.Sprintf("curfew_%s_x86_64.ipk", version)), filepath.Join(ipkDir, "x86_64", fmt.Sprintf("luci-app-curfew_%s_all.ipk", version)))...)
		for _, pkg := range []string{"curfew", "luci-app-curfew"} {
			cmd := exec.Command("chroot", root, "/bin/sh", "-c", "/usr/lib/opkg/info/"+pkg+".postinst configure")
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s.postinst: %v\n%s", pkg, err, out)
			}
		}
		checkLive(t, root)
	})
}

// TestFeeds installs from the repositories `make ipk` and `make apk` write,
// the way a parent does after adding one feed line: opkg from the Packages
// index, apk from a signed packages.adb whose key the router trusts (and
// refused while it does not).
func TestFeeds(t *testing.T) {
	needRoot(t)
	dir := tools(t)
	ipkDir := packages(t)
	t.Run("opkg", func(t *testing.T) {
		opkg := filepath.Join(dir, "bin/opkg")
		root, _ := scratchRoot(t)
		abs, _ := filepath.Abs(filepath.Join(ipkDir, "x86_64"))
		conf := filepath.Join(t.TempDir(), "opkg.conf")
		os.WriteFile(conf, []byte("dest root /\narch all 1\narch noarch 1\narch x86_64 10\nlists_dir ext /var/opkg-lists\nsrc/gz curfew file://"+abs+"\n"), 0o644)
		op := func(args ...string) string {
			return run(t, nil, opkg, append([]string{"-f", conf, "-o", root}, args...)...)
		}
		stubDir := t.TempDir()
		var stubs []string
		for _, name := range imagePackages {
			stubs = append(stubs, ipkStub(t, stubDir, name))
		}
		op(append([]string{"install"}, stubs...)...)
		op("update")
		op("install", "luci-app-curfew")
		if v := op("list-installed"); !strings.Contains(v, "curfew - "+version) || !strings.Contains(v, "luci-app-curfew - "+version) {
			t.Errorf("installed from the feed: %s", v)
		}
		checkInstalled(t, root)
	})
	t.Run("apk", func(t *testing.T) {
		apk := filepath.Join(dir, "bin/apk")
		keys := t.TempDir()
		priv := filepath.Join(keys, "curfew-feed.pem")
		run(t, nil, "openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", priv)
		repo := filepath.Join(t.TempDir(), "repo")
		cmd := exec.Command("../scripts/apk.sh", version, repo)
		cmd.Env = append(os.Environ(), "APK="+apk, "APK_SIGN_KEY="+priv)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("signed apk.sh: %v\n%s", err, out)
		}
		index := filepath.Join(repo, "x86_64", "packages.adb")
		common := []string{"--no-network", "--arch", "x86_64", "--force-no-chroot", "--no-cache", "--repository", index}
		image := func() string {
			root, _ := scratchRoot(t)
			run(t, nil, apk, append([]string{"add", "--root", root, "--initdb", "--allow-untrusted", "--no-network", "--arch", "x86_64", "--force-no-chroot"}, apkStubs(t, apk)...)...)
			return root
		}

		// not trusted yet: the feed's packages are refused
		root := image()
		out, err := exec.Command(apk, append([]string{"add", "--root", root}, append(common, "curfew")...)...).CombinedOutput()
		if err == nil {
			t.Errorf("apk installed from a feed signed by an unknown key:\n%s", out)
		}

		// the router trusts the key (README: /etc/apk/keys/)
		root = image()
		pub := filepath.Join(root, "etc/apk/keys/curfew-feed.pem")
		os.MkdirAll(filepath.Dir(pub), 0o755)
		run(t, nil, "openssl", "ec", "-in", priv, "-pubout", "-out", pub)
		run(t, nil, apk, append([]string{"add", "--root", root}, append(common, "curfew", "luci-app-curfew")...)...)
		checkInstalled(t, root)
	})
}

// TestFeedVersionSuitsBothManagers: the feed Makefiles' PKG_VERSION and
// PKG_RELEASE make the version the packages carry, and apk (stricter than
// opkg) accepts it, so the same Makefiles build for 24.10 and 25.12.
func TestFeedVersionSuitsBothManagers(t *testing.T) {
	apk := filepath.Join(tools(t), "bin/apk")
	for _, mk := range []string{"curfew/Makefile", "luci-app-curfew/Makefile"} {
		b, err := os.ReadFile(mk)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":="); ok {
				vars[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		v := vars["PKG_VERSION"] + "-r" + vars["PKG_RELEASE"]
		if v != version {
			t.Errorf("%s gives version %q, packages are built as %q", mk, v, version)
		}
		if out, err := exec.Command(apk, "version", "-c", v).CombinedOutput(); err != nil {
			t.Errorf("%s: apk refuses version %q: %v %s", mk, v, err, out)
		}
	}
}

// TestFirewallIncludeWithRealUCI runs the package's uci-defaults script and
// its removal lines against OpenWrt's own uci: the firewall gets an include
// that tells curfew about every reload (fw3 flushes curfew's jumps), once
// however often the script runs, and it goes when the package does.
func TestFirewallIncludeWithRealUCI(t *testing.T) {
	uci := filepath.Join(tools(t), "bin/uci")
	confDir, saveDir, bin := t.TempDir(), t.TempDir(), t.TempDir()
	for name, body := range map[string]string{
		"network":  "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n",
		"firewall": "config defaults\n\toption input 'REJECT'\n\nconfig include\n\toption path '/etc/firewall.user'\n",
		"curfew":   "config curfew 'main'\n\toption enabled '0'\n\tlist lan 'br-lan'\n",
	} {
		os.WriteFile(filepath.Join(confDir, name), []byte(body), 0o644)
	}
	// `uci` in PATH is the real one, pointed at the scratch config
	os.WriteFile(filepath.Join(bin, "uci"), []byte(fmt.Sprintf("#!/bin/sh\nexec %s -c %s -t %s \"$@\"\n", uci, confDir, saveDir)), 0o755)
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	get := func(key string) string {
		out, _ := exec.Command(uci, "-c", confDir, "-t", saveDir, "-q", "get", key).Output()
		return strings.TrimSpace(string(out))
	}
	for range 2 {
		run(t, env, "sh", "curfew/files/curfew.uci-defaults")
	}
	for key, want := range map[string]string{
		"firewall.curfew":                "include",
		"firewall.curfew.path":           "/usr/share/curfew/firewall.include",
		"firewall.curfew.reload":         "1",
		"firewall.curfew.type":           "script",
		"firewall.curfew.fw4_compatible": "1",
		"firewall.@include[0].path":      "/etc/firewall.user",
	} {
		if got := get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	show, _ := exec.Command(uci, "-c", confDir, "-t", saveDir, "show", "firewall").Output()
	if n := strings.Count(string(show), "=include"); n != 2 {
		t.Errorf("firewall has %d includes after two runs, want 2 (the user's and curfew's):\n%s", n, show)
	}

	// removal: the prerm lines of the .ipk (the .apk carries the same)
	_, control, _ := ipk(t, filepath.Join(packages(t), "x86_64", fmt.Sprintf("curfew_%s_x86_64.ipk", version)))
	prerm := filepath.Join(t.TempDir(), "prerm-pkg")
	os.WriteFile(prerm, control["prerm-pkg"].data, 0o755)
	run(t, append(env, "PKG_UPGRADE=1"), "sh", prerm)
	if get("firewall.curfew") != "include" {
		t.Error("an upgrade removed the firewall include")
	}
	run(t, env, "sh", prerm)
	if got := get("firewall.curfew"); got != "" {
		t.Errorf("after removal firewall.curfew = %q", got)
	}
	if get("firewall.@include[0].path") != "/etc/firewall.user" {
		t.Error("removal touched the user's own include")
	}
}
