package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"curfew/pkg/lab"
)

// ruleStep is one stage of curfew's per-packet path, written as nft text:
// each stage adds one rule's work to the one before, so that the drop in
// rate from one stage to the next is what that rule costs.
type ruleStep struct {
	what, text string
}

// ruleSteps builds curfew's path for the lab child (a device with a week of
// offline intervals, none now) rule by rule, then the same with the fast
// path in front, as the backend writes it.
func ruleSteps(mac string) []ruleStep {
	// nft reads instants as local dates, in the zone this process has too
	const date = `"2006-01-02 15:04:05"`
	now := time.Now().Truncate(time.Second)
	var iv []string
	for d := 1; d <= 8; d++ {
		from := now.Add(time.Duration(d) * 24 * time.Hour)
		iv = append(iv, from.Format(date)+"-"+from.Add(10*time.Hour).Format(date))
	}
	sets := "counter usage { }\n" +
		"set off { typeof meta time; flags interval; elements = { " + strings.Join(iv, ", ") + " } }\n" +
		"map dc { type ether_addr : verdict; size 65536; elements = { " + mac + " : goto dev } }\n"
	hook := "chain forward { type filter hook forward priority -10; policy accept; %s }\n"
	chains := "chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\n" +
		"chain dev { meta time @off drop; counter name usage goto prof; }\n" +
		"chain prof { ct state established,related return; }\n"
	return []ruleStep{
		{"an empty base chain at the forward hook", fmt.Sprintf(hook, "")},
		{"+ `iifname \"br-lan\" jump managed`", fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + "chain managed { }\n"},
		{"+ `oifname \"br-lan\" return` (LAN-internal traffic)", fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + "chain managed { oifname \"br-lan\" return; }\n"},
		{"+ `ether saddr vmap @device_chain` (hash lookup, goto the device's chain)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) +
			"chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\nchain dev { }\n"},
		{"+ `meta time @offline_M` (the device's intervals)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) +
			"chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\nchain dev { meta time @off drop; }\n"},
		{"+ named counter, goto the profile's `ct state established,related return` (the chains, whole)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + chains},
		{"the chains with the fast path in front (`ct state established,related oifname != \"br-lan\" ether saddr @online accept`): curfew's table", sets +
			"set online { type ether_addr; size 65536; flags timeout; counter; elements = { " + mac + " timeout 1d } }\n" +
			fmt.Sprintf(hook, `ct state established,related oifname != "br-lan" ether saddr @online accept; iifname "br-lan" jump managed;`) + chains},
	}
}

// ruleCost measures each step against no table, alternating round by
// round, and returns the report section.
func ruleCost(ctx context.Context, l *lab.Lab, h *netlink.Handle, dir string, rounds int, sample time.Duration) (string, error) {
	steps := ruleSteps(l.Child.MAC)
	ratios := make([][]float64, len(steps))
	file := filepath.Join(dir, "step.nft")
	for r := 0; r < rounds; r++ {
		for i, st := range steps {
			none, err := pps(l, h, sample)
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(file, []byte("table inet curfew_step {\n"+st.text+"}\n"), 0o644); err != nil {
				return "", err
			}
			if out, err := l.Exec(ctx, l.Router, "nft", "-f", file); err != nil {
				return "", fmt.Errorf("step %q: %v: %.300s", st.what, err, out)
			}
			v, err := pps(l, h, sample)
			l.Exec(ctx, l.Router, "nft", "delete", "table", "inet", "curfew_step")
			if err != nil {
				return "", err
			}
			ratios[i] = append(ratios[i], v/none)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| path | rate / no table (median) | this step costs |\n|---|---:|---:|\n")
	prev := 1.0
	for i, st := range steps {
		m := median(ratios[i])
		cost := fmt.Sprintf("%+.1f%%", (m-prev)*100)
		if i == len(steps)-1 {
			cost = fmt.Sprintf("%+.1f%% against the chains alone", (m-median(ratios[i-1]))*100)
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s |\n", st.what, m, cost)
		if i < len(steps)-1 {
			prev = m
		}
	}
	return b.String(), nil
}

// rulesAlone prints the rule-cost table by itself (a few minutes instead
// of the whole report's twenty).
func rulesAlone(rounds int, sample time.Duration) error {
	ctx := context.Background()
	l, _, h, done, err := routerLab(ctx, "curfew-rules")
	if err != nil {
		return err
	}
	defer done()
	dir, err := os.MkdirTemp("", "curfew-rules-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err := ruleCost(ctx, l, h, dir, rounds, sample)
	fmt.Print(out)
	return err
}
