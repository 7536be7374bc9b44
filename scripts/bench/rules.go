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
	// the backend's online set is typed ether_addr; the kernel sees only a
	// 6-byte key, nft's parser wants the raw load's own type
	online := "set online { typeof @ll,48,48; size 65536; flags timeout; counter; elements = { 0x" +
		strings.ReplaceAll(mac, ":", "") + " timeout 1d } }\n"
	chains := "chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\n" +
		"chain dev { meta time @off drop; counter name usage goto prof; }\n" +
		"chain prof { ct state established,related return; }\n"
	return []ruleStep{
		{"a table with no chain (no hook: the same as none, so this row is the method's own error)", ""},
		{"an empty base chain at the forward hook", fmt.Sprintf(hook, "")},
		{"+ `iifname \"br-lan\" jump managed`", fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + "chain managed { }\n"},
		{"+ `oifname \"br-lan\" return` (LAN-internal traffic)", fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + "chain managed { oifname \"br-lan\" return; }\n"},
		{"+ `ether saddr vmap @device_chain` (hash lookup, goto the device's chain)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) +
			"chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\nchain dev { }\n"},
		{"+ `meta time @offline_M` (the device's intervals)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) +
			"chain managed { oifname \"br-lan\" return; ether saddr vmap @dc; }\nchain dev { meta time @off drop; }\n"},
		{"+ named counter, goto the profile's `ct state established,related return` (the chains, whole)", sets + fmt.Sprintf(hook, `iifname "br-lan" jump managed;`) + chains},
		{"the chains with a fast path in front, `ct state established,related oifname != \"br-lan\" ether saddr @online accept` (`ether saddr` checks the input's link type first)", sets +
			"set online { type ether_addr; size 65536; flags timeout; counter; elements = { " + mac + " timeout 1d } }\n" +
			fmt.Sprintf(hook, `ct state established,related oifname != "br-lan" ether saddr @online accept; iifname "br-lan" jump managed;`) + chains},
		{"the same, reading the source MAC as raw link-layer bytes (`@ll,48,48 @online`, no link-type check)", sets + online +
			fmt.Sprintf(hook, `ct state established,related oifname != "br-lan" @ll,48,48 @online accept; iifname "br-lan" jump managed;`) + chains},
		{"the same, comparing the output interface by index (`oif != \"br-lan\"`): curfew's table", sets + online +
			fmt.Sprintf(hook, `ct state established,related oif != "br-lan" @ll,48,48 @online accept; iifname "br-lan" jump managed;`) + chains},
	}
}

// ruleCost measures each step against no table: all the steps are
// loaded as dormant tables, and each in turn is compared with none on one
// stream, round by round. It returns the report section.
func ruleCost(ctx context.Context, l *lab.Lab, h *netlink.Handle, dir string, rounds int, sample time.Duration) (string, error) {
	steps := ruleSteps(l.Child.MAC)
	names := make([]string, len(steps))
	var text strings.Builder
	for i, st := range steps {
		names[i] = fmt.Sprintf("curfew_step%d", i)
		fmt.Fprintf(&text, "table inet %s {\nflags dormant\n%s}\n", names[i], st.text)
	}
	file := filepath.Join(dir, "steps.nft")
	if err := os.WriteFile(file, []byte(text.String()), 0o644); err != nil {
		return "", err
	}
	if out, err := l.Exec(ctx, l.Router, "nft", "-f", file); err != nil {
		return "", fmt.Errorf("steps: %v: %.300s", err, out)
	}
	defer func() {
		for _, n := range names {
			l.Exec(ctx, l.Router, "nft", "delete", "table", "inet", n)
		}
	}()
	ratios := make([]float64, len(steps))
	for i := range steps {
		rates, err := compare(l, h, rounds, sample, []func() error{
			func() error { return tables(ctx, l, nil, names...) },
			func() error { return tables(ctx, l, names[i:i+1], names...) },
		})
		if err != nil {
			return "", fmt.Errorf("step %q: %w", steps[i].what, err)
		}
		ratios[i] = ratio(rates[1], rates[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| path | rate / no table (median) | this step costs |\n|---|---:|---:|\n")
	prev := 1.0
	for i, st := range steps {
		cost := fmt.Sprintf("%+.1f%%", (ratios[i]-prev)*100)
		if i >= len(steps)-3 {
			cost = fmt.Sprintf("%+.1f%% against the row above", (ratios[i]-ratios[i-1])*100)
		}
		fmt.Fprintf(&b, "| %s | %.3f | %s |\n", st.what, ratios[i], cost)
		// the first row is the error; the path's costs count from 1
		if i > 0 && i < len(steps)-3 {
			prev = ratios[i]
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
