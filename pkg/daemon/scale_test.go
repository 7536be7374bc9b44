package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/control"
)

// BenchmarkPause: what the daemon does for `curfew pause` (plan, ruleset,
// cuts, state file) without the kernel, at 1,000 and 5,000 devices in
// one profile blocking 100,000 prefixes, as bench/E2E.md's largest
// configs. Each pause is resumed, untimed, before the next. Compare the
// sizes side by side: the cost per device is what the structure decides.
func BenchmarkPause(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			var cfg strings.Builder
			cfg.WriteString("config curfew 'main'\n\tlist lan 'br-lan'\n\nconfig profile 'kid'\n\toption name 'Kid'\n")
			for i := range 100000 {
				fmt.Fprintf(&cfg, "\tlist block '10.%d.%d.%d/28'\n", i/4096, i/16%256, i%16*16)
			}
			fmt.Fprintf(&cfg, "\nconfig device\n\toption mac '%s'\n\toption name 'Kid phone'\n\toption profile 'kid'\n", childMAC)
			for i := range n - 1 {
				fmt.Fprintf(&cfg, "\nconfig device\n\toption mac '02:aa:00:00:%02x:%02x'\n\toption name 'device %d'\n\toption profile 'kid'\n", i/256, i%256, i)
			}
			write(b, dir, cfg.String())
			if err := os.WriteFile(filepath.Join(dir, "system"), []byte("config system\n\toption timezone 'UTC0'\n"), 0o644); err != nil {
				b.Fatal(err)
			}
			h := start(b, dir, time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
			ctx := context.Background()
			for b.Loop() {
				if _, err := h.d.Handle(ctx, &control.Request{Method: control.MethodPause, Target: "Kid phone", For: "10m"}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := h.d.Handle(ctx, &control.Request{Method: control.MethodResume, Target: "Kid phone"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
