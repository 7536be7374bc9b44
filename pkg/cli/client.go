package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"curfew/pkg/control"
)

// clientCommands are the commands that talk to the daemon.
func clientCommands() []command {
	return []command{
		{"status", "what is enforced now, and why", runStatus},
		{"devices", "devices seen on the network and configured", runDevices},
		{"explain", "why TARGET is online or offline, and what changes next", runExplain},
		{"pause", "take TARGET offline now [--for D | --until HH:MM]", runAction(control.MethodPause)},
		{"resume", "end a pause of TARGET", runAction(control.MethodResume)},
		{"allow", "keep TARGET online despite schedules and budget --for D | --until HH:MM", runAction(control.MethodAllow)},
		{"grant", "add D to TARGET's screen time today: grant TARGET D", runAction(control.MethodGrant)},
		{"reload", "re-read the config (a bad one is refused, the old one stays)", runReload},
		{"log", "recent DNS queries [TARGET] [-n N]", runLog},
		{"usage", "screen time and activity per day [TARGET] [--days N]", runUsage},
		{"assign", "add a device to a profile in the config: assign MAC PROFILE [--name N]", runAssign},
	}
}

// clockSynced is the hidden command the NTP hotplug hook runs.
var clockSynced = command{"clock-synced", "", func(ctx context.Context, args []string, env *Env) int {
	fs := flags("clock-synced", env)
	socket := fs.String("socket", DefaultSocket, "control socket")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return call(ctx, env, *socket, false, control.Request{Method: control.MethodClockSynced}, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}}

// call performs one request and prints the result with show, or as JSON.
// A daemon that is not running is exit status 2 with a plain sentence.
func call[T any](ctx context.Context, env *Env, socket string, asJSON bool, req control.Request, show func(io.Writer, T)) int {
	var res T
	err := control.Call(ctx, socket, req, &res)
	if err != nil {
		if asJSON {
			writeJSON(env.Stdout, map[string]any{"ok": false, "error": err.Error()})
		}
		if errors.Is(err, control.ErrNotRunning) {
			fmt.Fprintln(env.Stderr, "curfew: the daemon is not running (start it with: /etc/init.d/curfew start)")
			return ExitNoDaemon
		}
		fmt.Fprintln(env.Stderr, "curfew:", Printable(err.Error()))
		return ExitFailure
	}
	if asJSON {
		writeJSON(env.Stdout, res)
		return ExitOK
	}
	escapeStrings(reflect.ValueOf(&res).Elem())
	show(env.Stdout, res)
	return ExitOK
}

func clientFlags(name string, env *Env) (*pflag.FlagSet, *string, *bool) {
	fs := flags(name, env)
	socket := fs.String("socket", DefaultSocket, "control socket")
	asJSON := fs.Bool("json", false, "print JSON")
	return fs, socket, asJSON
}

func runStatus(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("status", env)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodStatus}, func(w io.Writer, st control.Status) {
		clock := "clock trusted"
		if !st.ClockTrusted {
			clock = "CLOCK NOT YET SYNCHRONISED"
		}
		fmt.Fprintf(w, "curfew %s · backend %s · %s · %s\n", st.Version, st.Backend, clock, st.Zone)
		if st.Config.OK {
			fmt.Fprintf(w, "config %s: ok (loaded %s)\n", st.Config.File, st.Config.LoadedAt.Local().Format("2006-01-02 15:04:05"))
		} else {
			fmt.Fprintf(w, "config %s: NOT APPLIED, the last good config stays in force:\n", st.Config.File)
			for _, e := range st.Config.Errors {
				fmt.Fprintln(w, "  "+e)
			}
		}
		if st.Plan != nil {
			PrintPlan(w, st.Plan, st.Plan.At.Location())
		}
		for _, n := range st.Notes {
			fmt.Fprintln(w, "note: "+n)
		}
		if len(st.Overrides) > 0 {
			fmt.Fprintln(w, "parent overrides:")
			for _, o := range st.Overrides {
				fmt.Fprintln(w, "  "+describeOverride(o.Kind, o.Target, o.Until, o.Amount))
			}
		}
	})
}

func describeOverride(kind, target string, until time.Time, amount time.Duration) string {
	switch {
	case kind == "grant":
		return fmt.Sprintf("grant %s +%s today", target, amount)
	case until.IsZero():
		return fmt.Sprintf("%s %s until resumed", kind, target)
	}
	return fmt.Sprintf("%s %s until %s", kind, target, until.Local().Format("Mon 15:04"))
}

func runDevices(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("devices", env)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodDevices}, func(w io.Writer, devs []control.Device) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MAC\tNAME\tDHCP NAME\tPROFILE\tSTATE\tADDRESSES\tLAST SEEN")
		for _, d := range devs {
			name := d.Name
			if !d.Configured {
				name = "(unknown)"
			}
			prof := d.Profile
			if prof == "" {
				prof = "-"
			}
			seen := "not seen"
			if d.LastSeen != nil {
				seen = d.LastSeen.Local().Format("15:04:05")
			}
			addrs := strings.Join(d.Addresses, " ")
			if addrs == "" {
				addrs = "-"
			}
			host := d.Hostname
			if host == "" {
				host = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.MAC, name, host, prof, d.State, addrs, seen)
		}
		tw.Flush()
		for _, d := range devs {
			if d.Note != "" {
				fmt.Fprintln(w, "note: "+d.Note)
			}
		}
	})
}

func runExplain(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("explain", env)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(env.Stderr, "usage: curfew explain TARGET (a profile id, device name or MAC)")
		return ExitUsage
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodExplain, Target: fs.Arg(0)}, func(w io.Writer, ex control.Explanation) {
		for _, d := range ex.Devices {
			name := d.Name
			if name == "" {
				name = "unknown device"
			}
			fmt.Fprintf(w, "%s (%s, profile %s): %s\n", name, d.MAC, d.Profile, d.Text)
			if len(d.Blocked) > 0 {
				fmt.Fprintf(w, "  blocked: %s\n", strings.Join(d.Blocked, ", "))
			}
			for _, b := range d.DNSBlocked {
				fmt.Fprintf(w, "  dns: %s\n", b)
			}
			if d.DNS.BypassAttempts > 0 {
				fmt.Fprintf(w, "  dns: %d attempts to bypass curfew's DNS\n", d.DNS.BypassAttempts)
			}
		}
	})
}

func runAction(method string) func(context.Context, []string, *Env) int {
	return func(ctx context.Context, args []string, env *Env) int {
		fs, socket, asJSON := clientFlags(method, env)
		var forArg, untilArg *string
		if method == control.MethodPause || method == control.MethodAllow {
			forArg = fs.String("for", "", "duration, e.g. 30m or 1h30m")
			untilArg = fs.String("until", "", "local time HH:MM (the next one) or RFC 3339")
		}
		if code, ok := parse(fs, args); !ok {
			return code
		}
		want := 1
		if method == control.MethodGrant {
			want = 2
		}
		if fs.NArg() != want {
			fmt.Fprintf(env.Stderr, "usage: curfew %s TARGET%s\n", method, map[bool]string{true: " DURATION", false: ""}[want == 2])
			return ExitUsage
		}
		req := control.Request{V: control.Version, Method: method, Target: fs.Arg(0)}
		if forArg != nil {
			req.For, req.Until = *forArg, *untilArg
		}
		if want == 2 {
			req.Amount = fs.Arg(1)
		}
		if err := req.Validate(); err != nil {
			fmt.Fprintln(env.Stderr, "curfew:", err)
			return ExitUsage
		}
		return call(ctx, env, *socket, *asJSON, req, func(w io.Writer, r control.ActionResult) {
			fmt.Fprintln(w, r.Message)
		})
	}
}

func runReload(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("reload", env)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodReload}, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}

func runLog(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("log", env)
	n := fs.IntP("lines", "n", 50, "newest entries to show (0: all kept)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(env.Stderr, "usage: curfew log [TARGET] [-n N]")
		return ExitUsage
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodLog, Target: fs.Arg(0), Limit: *n}, func(w io.Writer, entries []control.LogEntry) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tDEVICE\tNAME\tTYPE\tVERDICT")
		for _, e := range entries {
			dev := e.Device
			if dev == "" {
				dev = e.MAC
			}
			verdict := e.Verdict
			if e.By != "" {
				verdict += " (" + e.By + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05"), dev, e.Name, e.Type, verdict)
		}
		tw.Flush()
	})
}

func runUsage(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("usage", env)
	days := fs.Int("days", 7, "days of history (kept: 30)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(env.Stderr, "usage: curfew usage [TARGET] [--days N]")
		return ExitUsage
	}
	return call(ctx, env, *socket, *asJSON, control.Request{Method: control.MethodUsage, Target: fs.Arg(0), Limit: *days}, func(w io.Writer, ds []control.UsageDay) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tWHO\tONLINE\tSENT\tBLOCKED\tBYPASS TRIES")
		for _, d := range ds {
			var profs []string
			for p := range d.Profiles {
				profs = append(profs, p)
			}
			sort.Strings(profs)
			for _, p := range profs {
				fmt.Fprintf(tw, "%s\tprofile %s\t%dm\t\t\t\n", d.Date, p, d.Profiles[p])
			}
			var macs []string
			for m := range d.Devices {
				macs = append(macs, m)
			}
			sort.Strings(macs)
			for _, m := range macs {
				du := d.Devices[m]
				name := du.Name
				if name == "" {
					name = m
				}
				fmt.Fprintf(tw, "%s\t  %s\t%dm\t%d kB\t%d\t%d\n", d.Date, name, du.Minutes, du.BytesUp/1024, du.Blocked, du.BypassAttempts)
			}
		}
		tw.Flush()
	})
}

func runAssign(ctx context.Context, args []string, env *Env) int {
	fs, socket, asJSON := clientFlags("assign", env)
	name := fs.String("name", "", "device name (default: its DHCP host name)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(env.Stderr, "usage: curfew assign MAC PROFILE [--name N]")
		return ExitUsage
	}
	req := control.Request{V: control.Version, Method: control.MethodAssign, Target: fs.Arg(0), Profile: fs.Arg(1), Name: *name}
	if err := req.Validate(); err != nil {
		fmt.Fprintln(env.Stderr, "curfew:", err)
		return ExitUsage
	}
	return call(ctx, env, *socket, *asJSON, req, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}
