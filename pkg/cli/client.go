package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"curfew/pkg/control"
	"curfew/pkg/plan"
	"curfew/pkg/report"
	"curfew/pkg/tz"
)

// clientCommands are the commands that talk to the daemon.
func clientCommands() []command {
	return []command{
		{"status", "", 0, 0, "what is enforced now, and why", runStatus},
		{"devices", "", 0, 0, "devices seen on the network and configured", runDevices},
		{"explain", "TARGET", 1, 1, "why TARGET is online or offline, and what changes next", runExplain},
		{"pause", "TARGET", 1, 1, "take TARGET offline now: until resumed, or --for D / --until HH:MM", runAction(control.MethodPause)},
		{"resume", "TARGET", 1, 1, "end TARGET's pauses (a profile's: its devices' too)", runAction(control.MethodResume)},
		{"allow", "TARGET", 1, 1, "keep TARGET online despite schedules, pauses and budget, --for D or --until HH:MM", runAction(control.MethodAllow)},
		{"grant", "TARGET DURATION", 2, 2, "add DURATION (e.g. 30m) to TARGET's screen time today (--service S: to its time on S)", runAction(control.MethodGrant)},
		{"reload", "", 0, 0, "re-read the config (a bad one is refused, the old one stays)", runReload},
		{"log", "[TARGET]", 0, 1, "recent DNS queries, of TARGET's devices if given", runLog},
		{"usage", "[TARGET]", 0, 1, "screen time and activity per day", runUsage},
		{"report", "", 0, 0, "the week at a glance per child (--week, the default) or --days N, as the weekly notification has it", runReport},
		{"assign", "MAC PROFILE", 2, 2, "add a device to a profile in the config", runAssign},
		{"requests", "", 0, 0, "children's requests for more time (from the bedtime page), open ones first", runRequests},
		{"approve", "ID", 1, 1, "grant request ID: the minutes asked (or --minutes N), to the device (or --profile)", runAnswer(control.MethodApprove)},
		{"deny", "ID", 1, 1, "turn request ID down", runAnswer(control.MethodDeny)},
	}
}

// runClockSynced is the hidden command the NTP hotplug hook runs.
func runClockSynced(ctx context.Context, args []string, env *Env) int {
	fs := flags("clock-synced", env)
	socket := fs.String("socket", DefaultSocket, "control socket")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return call(ctx, env, *socket, false, control.Request{Method: control.MethodClockSynced}, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}

// call performs one request and prints the result with show, or as JSON.
// A daemon that is not running is exit status 2 with a plain sentence; an
// answer that says something is wrong (Failing: the kernel refused the
// rules) is exit status 1, so that a script or a monitor sees it too.
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
	code := ExitOK
	if f, ok := any(res).(interface{ Failing() bool }); ok && f.Failing() {
		code = ExitFailure
	}
	if asJSON {
		writeJSON(env.Stdout, res)
		return code
	}
	escapeStrings(reflect.ValueOf(&res).Elem())
	show(env.Stdout, res)
	return code
}

// client is what every command that talks to the daemon takes.
type client struct {
	fs     *pflag.FlagSet
	socket *string
	asJSON *bool
	system *string
}

func clientFlags(name string, env *Env) client {
	fs := flags(name, env)
	c := client{fs: fs,
		socket: fs.String("socket", DefaultSocket, "control socket"),
		asJSON: fs.Bool("json", false, "print JSON"),
	}
	switch name {
	case "status", "devices", "log": // the commands that print times themselves
		c.system = fs.String("system", DefaultSystem, "the router's system config: times are shown in its time zone")
	}
	return c
}

// zone is the router's time zone, which every time a person reads is in:
// the CLI may run with another zone (a router without zoneinfo has UTC)
// than the router's configured one. An unreadable --system given on the
// command line is an error; the default one missing means UTC, as for the
// daemon.
func (c client) zone(env *Env) (*time.Location, bool) {
	if c.fs.Changed("system") {
		if _, err := os.Stat(*c.system); err != nil {
			fmt.Fprintf(env.Stderr, "curfew: --system: %v\n", err)
			return nil, false
		}
	}
	z, err := tz.FromSystemFile(*c.system)
	if err != nil {
		fmt.Fprintln(env.Stderr, "curfew:", err)
		return nil, false
	}
	return z.Loc, true
}

func runStatus(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("status", env)
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	loc, ok := c.zone(env)
	if !ok {
		return ExitUsage
	}
	return call(ctx, env, *c.socket, *c.asJSON, control.Request{Method: control.MethodStatus}, func(w io.Writer, st control.Status) {
		// Times in the zone the daemon keeps time by, the one the
		// header names, not one read here: the daemon may have been
		// started with another --system. (A daemon that reads no zone
		// from its system config says none: then the one read here.)
		if st.Zonename != "" || st.Timezone != "" {
			if z, err := tz.Resolve("the daemon's zone", st.Zonename, st.Timezone); err == nil {
				loc = z.Loc
			}
		}
		clock := "clock trusted"
		if !st.ClockTrusted {
			clock = "CLOCK NOT YET SYNCHRONISED"
		}
		fmt.Fprintf(w, "curfew %s · backend %s · %s · %s\n", st.Version, st.Backend, clock, st.Zone)
		if e := st.Enforcement; e.Error != "" {
			fmt.Fprintf(w, "NOTHING IS ENFORCED: the kernel refused curfew's rules (since %s; next try %s):\n  %s\n",
				e.Since.In(loc).Format("2006-01-02 15:04:05 MST"), e.NextTry.In(loc).Format("15:04:05"), e.Error)
		}
		if st.Config.OK {
			fmt.Fprintf(w, "config %s: ok (loaded %s)\n", st.Config.File, st.Config.LoadedAt.In(loc).Format("2006-01-02 15:04:05 MST"))
		} else {
			fmt.Fprintf(w, "config %s: NOT APPLIED, the last good config stays in force:\n", st.Config.File)
			for _, e := range st.Config.Errors {
				fmt.Fprintln(w, "  "+e)
			}
		}
		if st.StateError != "" {
			fmt.Fprintln(w, "PARENT OVERRIDES: "+st.StateError)
		}
		if st.Plan != nil {
			PrintPlan(w, st.Plan, loc)
		}
		for _, n := range st.Notes {
			fmt.Fprintln(w, "note: "+n)
		}
		if len(st.Overrides) > 0 {
			fmt.Fprintln(w, "parent overrides:")
			for _, o := range st.Overrides {
				fmt.Fprintln(w, "  "+describeOverride(o, st.Plan, loc))
			}
		}
	})
}

// describeOverride is one parent override for people, its end in the
// router's zone relative to the plan's instant.
func describeOverride(o plan.Override, p *plan.Plan, loc *time.Location) string {
	kind, target, until, amount := o.Kind, o.Target, o.Until, o.Amount
	if p != nil {
		// LuCI and approvals act on a device's MAC; people know its name
		for _, d := range p.Devices {
			if d.MAC == target && d.Name != "" {
				target = d.Name
			}
		}
	}
	switch {
	case kind == "grant" && o.Service != "":
		return fmt.Sprintf("grant %s +%s of %s today", target, plan.Short(amount), o.Service)
	case kind == "grant":
		return fmt.Sprintf("grant %s +%s today", target, plan.Short(amount))
	case until.IsZero():
		return fmt.Sprintf("%s %s until resumed", kind, target)
	}
	at := until
	if p != nil {
		at = p.At
	}
	return fmt.Sprintf("%s %s until %s", kind, target, plan.When(until, at, loc)+until.In(loc).Format(" MST"))
}

func runDevices(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("devices", env)
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	loc, ok := c.zone(env)
	if !ok {
		return ExitUsage
	}
	return call(ctx, env, *c.socket, *c.asJSON, control.Request{Method: control.MethodDevices}, func(w io.Writer, devs []control.Device) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MAC\tNAME\tDHCP NAME\tPROFILE\tWI-FI KEY\tSTATE\tADDRESSES\tLAST SEEN")
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
				seen = d.LastSeen.In(loc).Format("15:04:05 MST")
			}
			addrs := strings.Join(d.Addresses, " ")
			if addrs == "" {
				addrs = "-"
			}
			host := d.Hostname
			if host == "" {
				host = "-"
			}
			// The key column names the profile whose key the device
			// joined Wi-Fi with, never the key.
			key := d.WifiKey
			if key == "" {
				key = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.MAC, name, host, prof, key, d.State, addrs, seen)
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
	c := clientFlags("explain", env)
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	return call(ctx, env, *c.socket, *c.asJSON, control.Request{Method: control.MethodExplain, Target: c.fs.Arg(0)}, func(w io.Writer, ex control.Explanation) {
		for _, d := range ex.Devices {
			name := d.Name
			if name == "" {
				name = "unknown device"
			}
			fmt.Fprintf(w, "%s (%s, profile %s): %s\n", name, d.MAC, d.Profile, d.Text)
			if len(d.Blocked) > 0 {
				fmt.Fprintf(w, "  blocked: %s\n", listSome(d.Blocked, max(d.BlockedCount, len(d.Blocked))))
			}
			for _, b := range d.DNSBlocked {
				fmt.Fprintf(w, "  dns: %s\n", b)
			}
			for _, r := range d.Requests {
				fmt.Fprintf(w, "  %s\n", r)
			}
			if d.DNS.BypassAttempts > 0 {
				fmt.Fprintf(w, "  dns: %d attempts to bypass curfew's DNS\n", d.DNS.BypassAttempts)
			}
			if d.FlowsDropped > 0 {
				fmt.Fprintf(w, "  kernel: %d new connections dropped today: opened faster than flow_limit (%d a second)\n", d.FlowsDropped, d.FlowLimit)
			}
		}
	})
}

func runAction(method string) func(context.Context, []string, *Env) int {
	return func(ctx context.Context, args []string, env *Env) int {
		c := clientFlags(method, env)
		var forArg, untilArg, service *string
		if method == control.MethodPause || method == control.MethodAllow {
			forArg = c.fs.String("for", "", "duration, e.g. 30m or 1h30m")
			untilArg = c.fs.String("until", "", "the router's local time HH:MM (the next one) or RFC 3339")
		}
		if method == control.MethodGrant {
			service = c.fs.String("service", "", "add to this service's allowance (service_limit), e.g. youtube, not to the screen time")
		}
		if code, ok := parse(c.fs, args); !ok {
			return code
		}
		req := control.Request{V: control.Version, Method: method, Target: c.fs.Arg(0)}
		if forArg != nil {
			req.For, req.Until = *forArg, *untilArg
		}
		if method == control.MethodGrant {
			req.Amount, req.Service = c.fs.Arg(1), strings.ToLower(*service)
		}
		// The same checks as the daemon's, before asking it: a mistyped
		// value is a usage error whether the daemon runs or not.
		if err := req.Validate(); err != nil {
			return usageError(c.fs, err)
		}
		return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, r control.ActionResult) {
			fmt.Fprintln(w, r.Message)
		})
	}
}

// usageError reports a bad argument value as parse reports a bad flag.
func usageError(fs *pflag.FlagSet, err error) int {
	fmt.Fprintf(fs.Output(), "curfew %s: %s\n\n", fs.Name(), Printable(err.Error()))
	commandUsage(fs.Output(), fs)
	return ExitUsage
}

func runReload(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("reload", env)
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	return call(ctx, env, *c.socket, *c.asJSON, control.Request{Method: control.MethodReload}, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}

func runLog(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("log", env)
	n := c.fs.IntP("lines", "n", 50, "newest entries to show (0: all kept)")
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	loc, ok := c.zone(env)
	if !ok {
		return ExitUsage
	}
	req := control.Request{V: control.Version, Method: control.MethodLog, Target: c.fs.Arg(0), Limit: *n}
	if err := req.Validate(); err != nil {
		return usageError(c.fs, err)
	}
	return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, entries []control.LogEntry) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "TIME (%s)\tDEVICE\tNAME\tTYPE\tVERDICT\n", env.Now().In(loc).Format("MST"))
		for _, e := range entries {
			dev := e.Device
			if dev == "" {
				dev = e.MAC
			}
			verdict := e.Verdict
			if e.By != "" {
				verdict += " (" + e.By + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.In(loc).Format("15:04:05"), dev, e.Name, e.Type, verdict)
		}
		tw.Flush()
	})
}

func runUsage(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("usage", env)
	days := c.fs.Int("days", 7, "days of history (kept: 30)")
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	req := control.Request{V: control.Version, Method: control.MethodUsage, Target: c.fs.Arg(0), Limit: *days}
	if err := req.Validate(); err != nil {
		return usageError(c.fs, err)
	}
	return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, ds []control.UsageDay) {
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
		var extra []string
		for _, d := range ds {
			for _, r := range d.Requests {
				if r.Status == control.RequestApproved && r.AnsweredAt != nil {
					extra = append(extra, fmt.Sprintf("%s %s  %s: %d min extra (%s of the %s; request %s, asked %s)", d.Date,
						r.AnsweredAt.Local().Format("15:04"), r.Device, r.Granted, r.Override, r.Scope, r.ID, r.AskedAt.Local().Format("15:04")))
				}
			}
		}
		if len(extra) > 0 {
			fmt.Fprintln(w, "\nExtra time approved:")
			for _, e := range extra {
				fmt.Fprintln(w, "  "+e)
			}
		}
	})
}

func runReport(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("report", env)
	week := c.fs.Bool("week", false, "the last seven days, today included (the default)")
	days := c.fs.Int("days", 0, "the last N days, today included (1 to 30)")
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	if *week && *days != 0 {
		return usageError(c.fs, errors.New("--week or --days, not both"))
	}
	n := *days
	if c.fs.Changed("days") && n < 1 {
		return usageError(c.fs, fmt.Errorf("--days %d: want 1 to %d", n, control.MaxReportDays))
	}
	req := control.Request{V: control.Version, Method: control.MethodReport, Limit: n}
	if err := req.Validate(); err != nil {
		return usageError(c.fs, err)
	}
	return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, r report.Report) {
		fmt.Fprint(w, r.Text())
	})
}

func runAssign(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("assign", env)
	name := c.fs.String("name", "", "device name (default: its DHCP host name)")
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	req := control.Request{V: control.Version, Method: control.MethodAssign, Target: c.fs.Arg(0), Profile: c.fs.Arg(1), Name: *name}
	if err := req.Validate(); err != nil {
		return usageError(c.fs, err)
	}
	return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, r control.ActionResult) {
		fmt.Fprintln(w, r.Message)
	})
}

func runRequests(ctx context.Context, args []string, env *Env) int {
	c := clientFlags("requests", env)
	if code, ok := parse(c.fs, args); !ok {
		return code
	}
	return call(ctx, env, *c.socket, *c.asJSON, control.Request{V: control.Version, Method: control.MethodRequests}, func(w io.Writer, rs []control.TimeRequest) {
		if len(rs) == 0 {
			fmt.Fprintln(w, "No requests for more time.")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tASKED\tDEVICE\tMINUTES\tSTATUS\tMESSAGE")
		for _, r := range rs {
			status := r.Status
			if r.Status == control.RequestApproved {
				status = fmt.Sprintf("approved %d min", r.Granted)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.AskedAt.Local().Format("Mon 15:04"), r.Device, r.Minutes, status, r.Message)
		}
		tw.Flush()
	})
}

func runAnswer(method string) func(context.Context, []string, *Env) int {
	return func(ctx context.Context, args []string, env *Env) int {
		c := clientFlags(method, env)
		var minutes *int
		var profile *bool
		if method == control.MethodApprove {
			minutes = c.fs.Int("minutes", 0, "give this many minutes instead of what was asked")
			profile = c.fs.Bool("profile", false, "give the time to every device of the profile, not only the one that asked")
		}
		if code, ok := parse(c.fs, args); !ok {
			return code
		}
		req := control.Request{V: control.Version, Method: method, ID: c.fs.Arg(0)}
		if minutes != nil {
			req.Minutes, req.WholeProfile = *minutes, *profile
			if *minutes < 0 || (c.fs.Changed("minutes") && *minutes == 0) {
				return usageError(c.fs, fmt.Errorf("--minutes %d: want 1 to %d", *minutes, control.MaxApprove))
			}
		}
		if err := req.Validate(); err != nil {
			return usageError(c.fs, err)
		}
		return call(ctx, env, *c.socket, *c.asJSON, req, func(w io.Writer, r control.ActionResult) {
			fmt.Fprintln(w, r.Message)
		})
	}
}
