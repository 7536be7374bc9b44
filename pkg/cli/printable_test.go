package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"curfew/pkg/control"
	"curfew/pkg/report"
)

func TestPrintableEscapesWhatWouldDriveATerminal(t *testing.T) {
	for in, want := range map[string]string{
		"tiktok.com":              "tiktok.com",
		"evil\x1b[2J.example":     `evil\x1b[2J.example`,
		"line\rover":              `line\x0dover`,
		"rtl\u202eexe.gpj":        `rtl\u202eexe.gpj`,
		"bad\xffutf8":             `bad\xffutf8`,
		"back\\slash":             `back\\slash`,
		"Alice's iPad":            "Alice's iPad",
		strings.Repeat("x", 1000): strings.Repeat("x", maxShown) + "…",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLogPrintsChildNamesEscaped runs `curfew log` against a control
// socket that reports a query name full of terminal escapes.
func TestLogPrintsChildNamesEscaped(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the control socket answers root only; CI runs as root")
		}
		t.Skip("the control socket answers root only")
	}
	sock := filepath.Join(t.TempDir(), "sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go control.Serve(ctx, ln, func(context.Context, *control.Request) (any, error) {
		return []control.LogEntry{{Time: time.Now(), MAC: "02:00:00:00:00:01", Device: "Kid\x07phone",
			Name: "\x1b]0;owned\x07x.example", Type: "A", Verdict: "allowed"}}, nil
	}, slog.New(slog.DiscardHandler))
	code, out, stderr := run(t, "log", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `\x1b]0;owned\x07x.example`) {
		t.Errorf("log output:\n%q", out)
	}
}

// TestReportPrintsTheWeeksTextWithDeviceWordsQuoted runs `curfew report`
// against a control socket whose report has a new device whose DHCP name
// carries terminal escapes: printed quoted, never raw.
func TestReportPrintsTheWeeksTextWithDeviceWordsQuoted(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the control socket answers root only; CI runs as root")
		}
		t.Skip("the control socket answers root only")
	}
	sock := filepath.Join(t.TempDir(), "sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := report.Report{From: "2026-11-30", To: "2026-12-06", Profiles: []report.Profile{{ID: "kid", Name: "Kid", Minutes: 90,
		Days: []report.Day{{Date: "2026-12-06", Minutes: 90}}}},
		NewDevices: []control.SeenDevice{{MAC: "5a:00:00:00:00:01", Hostname: "\x1b]0;owned\x07", Time: time.Date(2026, 12, 5, 19, 2, 0, 0, time.UTC)}}}
	var days int
	go control.Serve(ctx, ln, func(_ context.Context, req *control.Request) (any, error) {
		days = req.Limit
		return r, nil
	}, slog.New(slog.DiscardHandler))
	code, out, stderr := run(t, "report", "--days", "3", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "2026-11-30 to 2026-12-06\n\nKid: 1h 30m online\n  Sun 1h 30m\n") || days != 3 ||
		strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "5a:00:00:00:00:01 ") || !strings.Contains(out, "]0;owned") {
		t.Errorf("report for %d days:\n%q", days, out)
	}
}
