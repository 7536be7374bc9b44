package e2e

import (
	"strings"
	"testing"
	"time"

	"curfew/pkg/lab"
)

// TestWindDown walks a real wind-down from the config: a minute before
// the child's bedtime its downloads (IPv4 and IPv6, opened before) slow
// to the profile's rate while the parent's do not, and at bedtime they
// stop. With nftables the daemon runs and explain says so; with iptables
// it is killed before the wind-down begins, and the kernel does it alone.
func TestWindDown(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, extra string
		args                []string
		kill                bool
	}{
		{name: "nftables", prefix: "cfe7"},
		{name: "iptables, the daemon killed before", prefix: "cfe8", extra: "\toption backend 'iptables'\n", args: []string{"--iptables-legacy"}, kill: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.args != nil {
				lab.Require(t, "iptables-legacy", "ip6tables-legacy")
			}
			l := newLab(t, tc.prefix)
			bed := nextMinute(75 * time.Second) // the wind-down begins 15-75 s from now
			wind := bed.Add(-time.Minute)
			cfg := l.SampleConfig(bed.In(london).Format("15:04"), bed.Add(time.Minute).In(london).Format("15:04"), tc.extra)
			cfg = strings.Replace(cfg, "option name 'Kid'", "option name 'Kid'\n\toption wind_down '1m'\n\toption wind_down_rate '1mbit'", 1)
			d := startIn(t, l, t.TempDir(), cfg, tc.args...)
			var streams []*lab.Stream
			for _, s := range []struct{ ns, addr string }{{l.Child.NS, lab.InternetV4}, {l.Child.NS, lab.InternetV6}, {l.Parent.NS, lab.InternetV4}} {
				st, err := l.Stream(s.ns, s.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				streams = append(streams, st)
			}
			const fast = 20_000_000
			if r := lab.Rates(300*time.Millisecond, streams...); r[0] < fast || r[1] < fast || r[2] < fast {
				t.Fatalf("before the wind-down: %.2f, %.2f and %.2f Mbit/s, want each above 20", r[0]/1e6, r[1]/1e6, r[2]/1e6)
			}
			if tc.kill {
				d.cmd.Process.Kill()
				d.cmd.Wait()
			}

			time.Sleep(time.Until(wind) + time.Second)
			r := lab.Rates(3*time.Second, streams...)
			kid := (r[0] + r[1]) * 1514 / 1448 // in frames, as the shaper counts (see fwtest.WindDown)
			t.Logf("winding down: the child's downloads %.3f Mbit/s in frames (IPv4 %.3f, IPv6 %.3f of payload), the parent's %.0f", kid/1e6, r[0]/1e6, r[1]/1e6, r[2]/1e6)
			if kid < 0.9e6 || kid > 1.1e6 {
				t.Errorf("winding down: the child's downloads got %.3f Mbit/s, want 1 ±10%%", kid/1e6)
			}
			if r[2] < fast {
				t.Errorf("winding down: the parent's download got %.2f Mbit/s", r[2]/1e6)
			}
			if !tc.kill {
				out, _ := d.cli(t, "explain", "Kid phone")
				if want := "winding down until " + bed.In(london).Format("15:04"); !strings.Contains(out, want) {
					t.Errorf("explain lacks %q:\n%s", want, out)
				}
			}

			time.Sleep(time.Until(bed) + 2*time.Second)
			// The parent's download is measured up to three times, as in
			// fwtest.WindDown: a second in which a loaded machine ran
			// nothing of the lab moves no bytes for anyone.
			for try := 1; ; try++ {
				r := lab.Rates(time.Second, streams...)
				if r[0] > 0 || r[1] > 0 {
					t.Errorf("at bedtime: the child's downloads %.3f and %.3f Mbit/s, want none", r[0]/1e6, r[1]/1e6)
				}
				if r[2] >= fast {
					break
				}
				if try == 3 {
					t.Errorf("at bedtime: the parent's download %.2f Mbit/s in the third second measured, want above 20", r[2]/1e6)
					break
				}
			}
		})
	}
}
