// Package cli implements curfew's command line: one binary, subcommands,
// spf13/pflag flags, a readable default output and --json everywhere.
//
// Run takes its arguments and output streams as parameters and returns the
// exit status, so that tests drive it exactly as a shell would.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"curfew/pkg/config"
	"curfew/pkg/firewall"
	"curfew/pkg/firewall/nft"
	"curfew/pkg/plan"
	"curfew/pkg/services"
	"curfew/pkg/tz"
	"curfew/pkg/wifi"
)

// Version is stamped at build time with -ldflags "-X curfew/pkg/cli.Version=...".
var Version = "dev"

// Defaults from SPEC.md.
const (
	DefaultConfig   = "/etc/config/curfew"
	DefaultSystem   = "/etc/config/system"
	DefaultStateDir = "/etc/curfew"
	DefaultSocket   = "/var/run/curfew.sock"
)

// Exit statuses.
const (
	ExitOK        = 0
	ExitFailure   = 1 // the command ran and found a problem (e.g. a bad config)
	ExitNoDaemon  = 2 // the daemon is not running
	ExitUsage     = 64
	exitUnhandled = 70
)

// Env is what a command needs from the outside world.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Now reads the clock; tests replace it.
	Now func() time.Time
	// Daemon runs `curfew daemon` (wired by cmd/curfew, so that this
	// package does not pull in the kernel backends for tests of the rest).
	Daemon func(ctx context.Context, args []string, version string, stdout, stderr io.Writer) int
	// Log receives diagnostics of long-running commands.
	Log *slog.Logger
}

type command struct {
	name string
	// args names the positional arguments for help ("TARGET DURATION",
	// "[FILE]"); min and max bound their number.
	args     string
	min, max int
	summary  string
	run      func(ctx context.Context, args []string, env *Env) int
}

func commands() []command {
	return append([]command{
		{"daemon", "", 0, 0, "run the enforcing daemon (the init script starts it)", func(ctx context.Context, args []string, env *Env) int {
			if env.Daemon == nil {
				fmt.Fprintln(env.Stderr, "curfew: daemon not available in this build")
				return ExitFailure
			}
			return env.Daemon(ctx, args, Version, env.Stdout, env.Stderr)
		}},
		{"check", "[FILE]", 0, 1, "validate the config (FILE, or --config); exit 1 with every error; --kernel: does this kernel take its table", runCheck},
		{"plan", "", 0, 0, "show what would be enforced at a given time, without the daemon", runPlan},
		{"services", "", 0, 0, "list the services block_service and service_limit can name", runServices},
		{"version", "", 0, 0, "print the version", runVersion},
	}, clientCommands()...)
}

// hidden are commands for the router's own scripts, not for people.
func hidden() []command {
	return []command{{"clock-synced", "", 0, 0, "", runClockSynced}, {"rpcd", "", 0, 2, "", runRpcd}}
}

func lookup(name string) (command, bool) {
	for _, c := range append(commands(), hidden()...) {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, env *Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 2 && args[0] == "help" {
			return Run(ctx, []string{args[1], "--help"}, env)
		}
		usage(env.Stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	if c, ok := lookup(args[0]); ok {
		return c.run(ctx, args[1:], env)
	}
	fmt.Fprintf(env.Stderr, "curfew: unknown command %q\n\n", Printable(args[0]))
	usage(env.Stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "curfew: parental controls in the router\n\nUsage: curfew COMMAND [ARGUMENTS] [flags]\n\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nTARGET is a profile id, a device name or a MAC. Every command takes --json\nand --help (curfew help COMMAND).")
}

// flags makes a flag set for command name that reports errors instead of
// exiting; its help says what the command does and what it takes.
func flags(name string, env *Env) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	fs.Usage = func() { commandUsage(env.Stdout, fs) }
	return fs
}

// commandUsage is a command's help: usage line, what it does, its flags.
func commandUsage(w io.Writer, fs *pflag.FlagSet) {
	c, _ := lookup(fs.Name())
	line := "curfew " + c.name
	if c.args != "" {
		line += " " + c.args
	}
	fmt.Fprintf(w, "Usage: %s [flags]\n\n", line)
	if c.summary != "" {
		fmt.Fprintf(w, "%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	}
	if strings.Contains(c.args, "TARGET") {
		fmt.Fprintln(w, "TARGET is a profile id, a device name or a MAC.")
	}
	fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
}

// negative matches an argument that is a negative number or duration, which
// pflag would take for a cluster of one-letter flags ("-5m").
var negative = regexp.MustCompile(`^-[0-9]`)

// parse parses the flags and checks the number of positional arguments.
// On a usage error it says what was wrong, then the command's usage, and
// returns false with the exit status; on --help it returns false, ExitOK.
func parse(fs *pflag.FlagSet, args []string) (int, bool) {
	c, _ := lookup(fs.Name())
	fail := func(format string, a ...any) (int, bool) {
		w := fs.Output()
		fmt.Fprintf(w, "curfew %s: %s\n\n", c.name, Printable(fmt.Sprintf(format, a...)))
		commandUsage(w, fs)
		return ExitUsage, false
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		if negative.MatchString(a) {
			if i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") {
				a = args[i-1] + " " + a
			}
			return fail("%s: negative values are not accepted", a)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK, false
		}
		return fail("%v", err)
	}
	switch n := fs.NArg(); {
	case n < c.min && c.args != "":
		return fail("missing %s", strings.Join(strings.Fields(c.args)[n:c.min], " "))
	case n > c.max && c.max == 0:
		return fail("takes no arguments, got %q", strings.Join(fs.Args(), " "))
	case n > c.max:
		return fail("too many arguments: %q", strings.Join(fs.Args()[c.max:], " "))
	}
	return 0, true
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // a broken stdout has nowhere to be reported
}

func runVersion(_ context.Context, args []string, env *Env) int {
	fs := flags("version", env)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *asJSON {
		writeJSON(env.Stdout, map[string]string{"version": Version})
	} else {
		fmt.Fprintln(env.Stdout, "curfew", Version)
	}
	return ExitOK
}

// checkResult is `curfew check --json`.
type checkResult struct {
	OK   bool   `json:"ok"`
	File string `json:"file"`
	// Zone is the time zone schedules follow, as read from --system.
	Zone     string   `json:"zone"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
	// Kernel, with --kernel, is "ok" when this kernel took the config's
	// table in a scratch namespace, else what it said.
	Kernel string `json:"kernel,omitempty"`
}

// LoadConfig loads and validates a config with the built-in service
// catalogue; on failure it returns the problems as lines for people.
func LoadConfig(path string) (*config.Config, []string, []string) {
	c, warns, err := config.Load(path, services.Builtin())
	var ws []string
	for _, w := range warns {
		ws = append(ws, "warning: "+w.String())
	}
	if err != nil {
		return nil, config.Problems(err), ws
	}
	return c, nil, ws
}

func runCheck(_ context.Context, args []string, env *Env) int {
	fs := flags("check", env)
	path := fs.String("config", DefaultConfig, "config file")
	system := fs.String("system", DefaultSystem, "the router's system config: says which time zone schedules follow")
	asJSON := fs.Bool("json", false, "print JSON")
	wireless := fs.String("wireless", "", "OpenWrt's wireless config, checked where profiles have Wi-Fi keys (default: the file 'wireless' beside the config)")
	kernel := fs.Bool("kernel", false, "also load the config's nftables table into a scratch network namespace: does this kernel take it? (root)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 1 {
		if fs.Changed("config") && *path != fs.Arg(0) {
			return usageError(fs, fmt.Errorf("two files to check: --config %s and %s", *path, fs.Arg(0)))
		}
		*path = fs.Arg(0)
	}
	c, errs, warns := LoadConfig(*path)
	if c != nil {
		for _, w := range checkWireless(c, *path, *wireless) {
			warns = append(warns, "warning: "+w.String())
		}
	}
	zone := "UTC"
	if fs.Changed("system") {
		if _, err := os.Stat(*system); err != nil {
			return usageError(fs, fmt.Errorf("--system: %w", err))
		}
	}
	z, err := tz.FromSystemFile(*system)
	if err != nil {
		errs = append(errs, err.Error())
	} else {
		zone = z.Source
		if z.Warning != "" {
			warns = append(warns, "warning: "+z.Warning)
		}
	}
	res := checkResult{File: *path, Zone: zone}
	if *kernel && len(errs) == 0 {
		res.Kernel = "ok"
		if err := tryKernel(c, z.Loc, env.Now()); err != nil {
			res.Kernel = err.Error()
			errs = append(errs, "kernel: this kernel refuses curfew's table, so nothing would be enforced: "+err.Error())
		}
	}
	res.OK, res.Errors, res.Warnings = len(errs) == 0, nonNil(errs), nonNil(warns)
	if *asJSON {
		writeJSON(env.Stdout, res)
	} else {
		for _, w := range warns {
			fmt.Fprintln(env.Stderr, w)
		}
		for _, e := range errs {
			fmt.Fprintln(env.Stderr, e)
		}
		if len(errs) == 0 {
			fmt.Fprintf(env.Stdout, "%s: ok; schedules follow the router's time zone: %s\n", *path, zone)
			if res.Kernel == "ok" {
				fmt.Fprintln(env.Stdout, "kernel: ok, it takes curfew's nftables table (loaded into a scratch namespace and gone)")
			}
		} else {
			fmt.Fprintf(env.Stderr, "%s: %d error(s); nothing applied\n", *path, len(errs))
		}
	}
	if len(errs) > 0 {
		return ExitFailure
	}
	return ExitOK
}

// checkWireless warns where the profiles' Wi-Fi keys cannot say whose a
// device is (wifi.CheckWireless), reading OpenWrt's wireless config:
// path, or the file beside the config (/etc/config/wireless).
func checkWireless(c *config.Config, configPath, path string) []config.Diag {
	if path == "" {
		path = wifi.WirelessBeside(configPath)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		src = nil
	}
	diags := wifi.CheckWireless(c, path, src)
	if fi, err := os.Stat(configPath); err == nil {
		diags = append(diags, wifi.CheckConfigMode(c, configPath, fi.Mode())...)
	}
	return diags
}

// tryKernel loads the table the daemon would load now into a scratch
// network namespace (nft.Try): whether this kernel takes it.
func tryKernel(c *config.Config, loc *time.Location, now time.Time) error {
	p := plan.Compute(plan.Input{Config: c, Loc: loc, At: now, ClockTrusted: true})
	return nft.Try(firewall.Render(p, c, 53, &firewall.PrefixCache{}))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func runPlan(_ context.Context, args []string, env *Env) int {
	fs := flags("plan", env)
	path := fs.String("config", DefaultConfig, "config file")
	system := fs.String("system", DefaultSystem, "OpenWrt system config (time zone)")
	at := fs.String("at", "", "instant to plan for, RFC 3339 (default now)")
	seen := fs.StringSlice("seen", nil, "MACs present on the network, comma-separated")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	// the command line first: its mistakes are usage errors
	if fs.Changed("system") {
		if _, err := os.Stat(*system); err != nil {
			return usageError(fs, fmt.Errorf("--system: %w", err))
		}
	}
	when := env.Now()
	if *at != "" {
		var err error
		when, err = time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageError(fs, fmt.Errorf("--at %q: want RFC 3339, e.g. 2026-03-29T06:30:00+01:00", *at))
		}
	}
	var macs []net.HardwareAddr
	for _, s := range *seen {
		m, err := config.ParseDeviceMAC(strings.TrimSpace(s))
		if err != nil {
			return usageError(fs, fmt.Errorf("--seen: %w", err))
		}
		macs = append(macs, m)
	}
	c, errs, warns := LoadConfig(*path)
	for _, w := range warns {
		fmt.Fprintln(env.Stderr, w)
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(env.Stderr, e)
		}
		return ExitFailure
	}
	zone, err := tz.FromSystemFile(*system)
	if err != nil {
		fmt.Fprintln(env.Stderr, "curfew:", err)
		return ExitFailure
	}
	p := plan.Compute(plan.Input{Config: c, Loc: zone.Loc, At: when, Seen: macs, ClockTrusted: true})
	if *asJSON {
		writeJSON(env.Stdout, p)
		return ExitOK
	}
	PrintPlan(env.Stdout, p, zone.Loc)
	return ExitOK
}

// PrintPlan writes a plan as a table for people.
func PrintPlan(w io.Writer, p *plan.Plan, loc *time.Location) {
	fmt.Fprintf(w, "at %s", p.At.In(loc).Format("Mon 2006-01-02 15:04 MST"))
	if p.NextChange != nil {
		fmt.Fprintf(w, "; next change %s", plan.When(*p.NextChange, p.At, loc))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tMAC\tPROFILE\tSTATE\tUNTIL\tREASON")
	for _, d := range p.Devices {
		name := d.Name
		if d.Unknown {
			name = "(unknown)"
		}
		until := "-"
		if d.Until != nil {
			until = plan.When(*d.Until, p.At, loc)
		}
		prof := d.Profile
		if prof == "" {
			prof = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, d.MAC, prof, d.State, until, d.Reason)
	}
	tw.Flush()
	// each profile's allowances once (its devices share them)
	var svcs []string
	shown := map[string]bool{}
	for _, d := range p.Devices {
		if len(d.Services) == 0 || shown[d.Profile] {
			continue
		}
		shown[d.Profile] = true
		var parts []string
		for _, st := range d.Services {
			parts = append(parts, fmt.Sprintf("%s %s left of %s", st.Title, plan.Short(time.Duration(st.Left)), plan.Short(time.Duration(st.Limit))))
		}
		svcs = append(svcs, fmt.Sprintf("  profile %s: %s", d.Profile, strings.Join(parts, ", ")))
	}
	if len(svcs) > 0 {
		fmt.Fprintln(w, "time per service today:")
		fmt.Fprintln(w, strings.Join(svcs, "\n"))
	}
	var blocked []string
	for _, r := range p.Profiles {
		if r.Count() > 0 {
			blocked = append(blocked, fmt.Sprintf("  profile %s: %s", r.ID, listSome(r.Some(20), r.Count())))
		}
	}
	if len(blocked) > 0 {
		fmt.Fprintln(w, "blocked destinations:")
		fmt.Fprintln(w, strings.Join(blocked, "\n"))
	}
}

// listSome joins the first 20 of items, and says how many of total it
// left out (items may be only the first few of them).
func listSome(items []string, total int) string {
	const n = 20
	items = items[:min(len(items), n)]
	if total <= len(items) {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s … and %d more", strings.Join(items, ", "), total-len(items))
}

func label(d plan.Device) string {
	if d.Name != "" {
		return d.Name
	}
	return d.MAC
}

func runServices(_ context.Context, args []string, env *Env) int {
	fs := flags("services", env)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	all := services.Builtin().All()
	if *asJSON {
		writeJSON(env.Stdout, all)
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tNAME\tDOMAINS")
	for _, s := range all {
		d := append([]string(nil), s.Domains...)
		sort.Strings(d)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Title, strings.Join(d, " "))
	}
	tw.Flush()
	return ExitOK
}
