package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"curfew/pkg/lab"
)

// check --kernel loads the config's table into a scratch namespace: this
// machine's kernel takes it (the VM lab runs the same load, nft.Try, on
// the kernels routers run).
func TestCheckKernelLoadsTheTable(t *testing.T) {
	lab.Require(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "curfew")
	system := filepath.Join(dir, "system")
	os.WriteFile(system, []byte("config system\n\toption timezone 'UTC0'\n"), 0o644)
	os.WriteFile(cfg, []byte(`config curfew 'main'
	list lan 'br-lan'
	option unknown_profile 'kid'

config profile 'kid'
	option daily_limit '2h'
	list block '203.0.113.0/24'
	list block 'tiktok.com'

config device
	option mac '02:c0:00:00:00:0a'
	option name 'Kid phone'
	option profile 'kid'

config schedule
	option profile 'kid'
	option days 'daily'
	option start '21:00'
	option stop '07:00'
`), 0o600)
	code, out, stderr := run(t, "check", "--kernel", "--system", system, cfg)
	if code != ExitOK || !strings.Contains(out, "kernel: ok, it takes curfew's nftables table") {
		t.Errorf("check --kernel: %d\n%s%s", code, out, stderr)
	}
	code, out, _ = run(t, "check", "--kernel", "--json", "--system", system, cfg)
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != ExitOK || res.Kernel != "ok" || !res.OK {
		t.Errorf("check --kernel --json: %d %+v %v", code, res, err)
	}
	if code, out, _ := run(t, "check", "--system", system, cfg); code != ExitOK || strings.Contains(out, "kernel") {
		t.Errorf("check without --kernel: %d\n%s", code, out)
	}
}
