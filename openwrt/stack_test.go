package openwrt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"curfew/pkg/lab"
)

// stack is OpenWrt's web and bus stack, for real: ubusd, rpcd with
// curfew's plugin and ACL where rpcd looks for them, uhttpd with its /ubus
// JSON-RPC endpoint serving LuCI's client side and curfew's views, and a
// curfew daemon — in the router namespace of a lab, in a private mount
// namespace whose /etc, /usr/sbin and /run are the router's (overlays and a
// tmpfs), so that nothing of the host changes.
type stack struct {
	t      *testing.T
	l      *lab.Lab
	dir    string
	port   string
	shell  *exec.Cmd
	client *http.Client
	log    *bytes.Buffer
}

// hostileName is markup in a device name (a parent may paste anything; a
// DHCP name is chosen by the device): it must reach a page as text.
const hostileName = `<img src=x onerror="window.__pwned=1">Tablet`

// hostileMessage is markup in a child's request for more time.
const hostileMessage = `<img src=x onerror="window.__pwned=1">please`

// weekOfHistory is the six days before today as the daemon keeps them
// in its state dir (the router's zone is UTC; today is left to the
// tests' own screen time): the child's minutes, lookups and blocks, and
// a new device whose DHCP name is markup. The week view and `curfew
// report` show it.
func weekOfHistory(child string) []byte {
	days := map[string]any{}
	for i := 1; i < 7; i++ {
		date := time.Now().UTC().AddDate(0, 0, -i).Format(time.DateOnly)
		day := map[string]any{
			"profiles": map[string]int{"kid": 100 + 10*i},
			"devices": map[string]any{child: map[string]any{"name": "Kid phone", "profile": "kid", "minutes": 100 + 10*i,
				"blocked": 7, "top_blocked": map[string]int{"tiktok.com": 7}, "services": map[string]int{"youtube": 50}}},
		}
		if i == 1 {
			day["new_devices"] = []map[string]string{{"mac": "5a:00:00:00:00:07", "hostname": hostileName, "time": time.Now().UTC().AddDate(0, 0, -1).Format(time.RFC3339)}}
		}
		days[date] = day
	}
	b, _ := json.Marshal(map[string]any{"days": days})
	return b
}

// The logins of /etc/config/rpcd: a parent with every right, and one who
// may only look (LuCI's read ACL of curfew).
const (
	fullUser, readUser, password = "parent", "viewer", "secret-for-tests"
)

// startStack starts the stack; kidOptions are further lines of the kid
// profile ("\tlist block '…'").
func startStack(t *testing.T, name string, kidOptions ...string) *stack {
	t.Helper()
	needRoot(t)
	tdir := tools(t)
	l := lab.Start(t, name, "dnsmasq", "dig", "conntrack", "unshare")

	s := &stack{t: t, l: l, dir: t.TempDir(), port: "8089", log: &bytes.Buffer{}}
	d := s.dir
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"etc-up/config", "etc-work", "sbin-up", "sbin-work", "plugins", "acl", "state", "www"} {
		must(os.MkdirAll(filepath.Join(d, sub), 0o755))
	}
	// curfew's binary, its rpcd plugin and ACL, as luci-app-curfew installs them
	bin := filepath.Join(d, "sbin-up", "curfew")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/curfew").CombinedOutput(); err != nil {
		t.Fatalf("build curfew: %v\n%s", err, out)
	}
	copyTree(t, filepath.Join(luci, "root/usr/libexec/rpcd"), filepath.Join(d, "plugins"))
	copyTree(t, filepath.Join(luci, "root/usr/share/rpcd/acl.d"), filepath.Join(d, "acl"))
	copyTree(t, filepath.Join(tdir, "share/luci-root/usr/share/rpcd/acl.d"), filepath.Join(d, "acl"))
	// LuCI's web root with curfew's views in it
	copyTree(t, filepath.Join(tdir, "share/luci"), filepath.Join(d, "www"))
	copyTree(t, filepath.Join(luci, "htdocs"), filepath.Join(d, "www"))

	hash, err := exec.Command("openssl", "passwd", "-1", password).Output()
	must(err)
	rpcd := fmt.Sprintf(`config rpcd
	option socket /var/run/ubus/ubus.sock
	option timeout 30

config login
	option username '%s'
	option password '%s'
	list read '*'
	list write '*'

config login
	option username '%s'
	option password '%s'
	list read 'luci-app-curfew'
	list read 'unauthenticated'
`, fullUser, strings.TrimSpace(string(hash)), readUser, strings.TrimSpace(string(hash)))
	must(os.WriteFile(filepath.Join(d, "etc-up/config/rpcd"), []byte(rpcd), 0o600))
	// A bedtime of eight hours that begins 11 to 12 hours from now (the
	// router's zone is UTC): the tests start with the child online,
	// whatever the hour they run at.
	bed := time.Now().UTC().Add(12 * time.Hour).Truncate(time.Hour)
	cfg := strings.Replace(l.SampleConfig(bed.Format("15:04"), bed.Add(8*time.Hour).Format("15:04"), ""), "config profile 'kid'\n\toption name 'Kid'\n", "config profile 'kid'\n\toption name 'Kid'\n\toption daily_limit '2h'\n\tlist service_limit 'youtube 1h'\n"+strings.Join(kidOptions, ""), 1)
	// a device whose name is markup: the pages must show it as text
	cfg += "\nconfig device\n\toption mac '02:c0:00:00:00:99'\n\toption name '" + hostileName + "'\n\toption profile 'kid'\n"
	must(os.WriteFile(filepath.Join(d, "etc-up/config/curfew"), []byte(cfg), 0o600))
	must(os.WriteFile(filepath.Join(d, "state/usage.json"), weekOfHistory(l.Child.MAC), 0o600))
	must(os.WriteFile(filepath.Join(d, "etc-up/config/system"), []byte("config system\n\toption hostname 'router'\n\toption zonename 'UTC'\n\toption timezone 'UTC0'\n"), 0o644))
	luciConf, _ := os.ReadFile(filepath.Join(tdir, "share/luci-root/etc/config/luci"))
	must(os.WriteFile(filepath.Join(d, "etc-up/config/luci"), luciConf, 0o644))
	// rpcd's compiled-in plugin and ACL directories, covered by the test's own
	for _, p := range []string{"libexec/rpcd", "share/rpcd/acl.d"} {
		must(os.MkdirAll(filepath.Join(tdir, p), 0o755))
	}

	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/ubus
mount -t overlay overlay -o lowerdir=/etc,upperdir=%[1]s/etc-up,workdir=%[1]s/etc-work /etc
mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir=%[1]s/sbin-up,workdir=%[1]s/sbin-work /usr/sbin
mount --bind %[1]s/plugins %[2]s/libexec/rpcd
mount --bind %[1]s/acl %[2]s/share/rpcd/acl.d
ip link set lo up
%[2]s/sbin/ubusd -s /var/run/ubus/ubus.sock &
sleep 0.2
%[2]s/sbin/rpcd -s /var/run/ubus/ubus.sock &
ln -s %[1]s/curfew.sock /run/curfew.sock
/usr/sbin/curfew daemon --config /etc/config/curfew --system /etc/config/system --state-dir %[1]s/state --socket %[1]s/curfew.sock --trust-clock &
echo $! >%[1]s/daemon.pid
%[2]s/bin/uhttpd -f -p 127.0.0.1:%[3]s -h %[1]s/www -u /ubus -U /var/run/ubus/ubus.sock -t 20 &
wait
`, d, tdir, s.port)
	s.shell = exec.Command("ip", "netns", "exec", l.Router, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	s.shell.Stdout, s.shell.Stderr = s.log, s.log
	s.shell.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(s.shell.Start())
	t.Cleanup(func() {
		syscall.Kill(-s.shell.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.shell.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-s.shell.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("stack output:\n%s", s.log)
		}
	})
	s.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.Dial(l.Router, network, addr, 5*time.Second)
		},
	}}
	// up when the daemon answers through rpcd
	if !lab.WaitFor(15*time.Second, func() bool {
		sid, err := s.login(fullUser)
		if err != nil {
			return false
		}
		code, res, err := s.call(sid, "curfew", "status", nil)
		return err == nil && code == 0 && res["version"] != nil
	}) {
		t.Fatalf("the stack did not come up:\n%s", s.log)
	}
	// a guest the config does not know, and DNS for the log
	l.TCP(l.Guest.NS, lab.InternetV4)
	l.Query(context.Background(), l.Child.NS, lab.RouterV4, "example.test", "A")
	return s
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from+"/.", to+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v %s", from, err, out)
	}
}

// url is an address of uhttpd in the router.
func (s *stack) url(path string) string { return "http://127.0.0.1:" + s.port + path }

// rpc is one JSON-RPC request to /ubus, as LuCI's rpc.js sends it.
func (s *stack) rpc(params ...any) (json.RawMessage, *struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "call", "params": params})
	resp, err := s.client.Post(s.url("/ubus"), "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("%v: %s", err, raw)
	}
	return out.Result, out.Error, nil
}

// login returns a session id for user.
func (s *stack) login(user string) (string, error) {
	res, rpcErr, err := s.rpc("00000000000000000000000000000000", "session", "login", map[string]string{"username": user, "password": password})
	if err != nil || rpcErr != nil {
		return "", fmt.Errorf("login %s: %v %v", user, err, rpcErr)
	}
	var r []json.RawMessage
	var sess struct {
		Session string `json:"ubus_rpc_session"`
	}
	if err := json.Unmarshal(res, &r); err != nil || len(r) < 2 || json.Unmarshal(r[1], &sess) != nil || sess.Session == "" {
		return "", fmt.Errorf("login %s: %s", user, res)
	}
	return sess.Session, nil
}

// call calls object.method with the session's rights: ubus's status code
// and the result object; a JSON-RPC error (access denied) is an error.
func (s *stack) call(sid, object, method string, args map[string]any) (int, map[string]any, error) {
	if args == nil {
		args = map[string]any{}
	}
	res, rpcErr, err := s.rpc(sid, object, method, args)
	if err != nil {
		return 0, nil, err
	}
	if rpcErr != nil {
		return 0, nil, fmt.Errorf("JSON-RPC error %d: %s", rpcErr.Code, rpcErr.Message)
	}
	var r []json.RawMessage
	if err := json.Unmarshal(res, &r); err != nil || len(r) == 0 {
		return 0, nil, fmt.Errorf("result %s", res)
	}
	var code int
	json.Unmarshal(r[0], &code)
	obj := map[string]any{}
	if len(r) > 1 {
		if err := json.Unmarshal(r[1], &obj); err != nil {
			return code, nil, fmt.Errorf("result object %s: %v", r[1], err)
		}
	}
	return code, obj, nil
}

// curfew runs the curfew CLI against the stack's daemon.
func (s *stack) curfew(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(filepath.Join(s.dir, "sbin-up", "curfew"), append(args, "--socket", filepath.Join(s.dir, "curfew.sock"))...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("curfew %v: %v %s", args, err, out)
	}
	return string(out)
}

// stopDaemon kills the curfew daemon of the stack (rpcd and uhttpd stay).
func (s *stack) stopDaemon() {
	b, err := os.ReadFile(filepath.Join(s.dir, "daemon.pid"))
	if err != nil {
		s.t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	syscall.Kill(pid, syscall.SIGTERM)
	lab.WaitFor(5*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
}
