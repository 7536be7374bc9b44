package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"curfew/pkg/control"
	"curfew/pkg/services"
)

// rpcdMethod is one method of the ubus object "curfew" that LuCI calls:
// its argument types as rpcd's `list` shows them, and how it maps onto the
// control API.
type rpcdMethod struct {
	args map[string]string // name -> example value (its type for rpcd)
	call func(ctx context.Context, socket string, in rpcdArgs) (any, error)
	// list: the answer is a JSON array, which rpcd takes only wrapped
	// in an object ({"result": [...]}).
	list bool
}

type rpcdArgs struct {
	Target  string `json:"target"`
	MAC     string `json:"mac"`
	Profile string `json:"profile"`
	Name    string `json:"name"`
	For     string `json:"for"`
	Until   string `json:"until"`
	Amount  string `json:"amount"`
	Service string `json:"service"`
	Limit   int    `json:"limit"`
	Days    int    `json:"days"`
	// ID, Minutes and WholeProfile answer a child's request.
	ID           string `json:"id"`
	Minutes      int    `json:"minutes"`
	WholeProfile bool   `json:"whole_profile"`
}

// forward maps rpcd's arguments onto req and passes the daemon's answer on
// as the JSON it is: decoding it into its type only to encode it again
// cost the router's binary about 2 kB per method.
func forward(req control.Request) func(context.Context, string, rpcdArgs) (any, error) {
	return func(ctx context.Context, socket string, in rpcdArgs) (any, error) {
		r := req
		r.V = control.Version
		switch r.Method {
		case control.MethodExplain, control.MethodResume:
			r.Target = in.Target
		case control.MethodPause, control.MethodAllow:
			r.Target, r.For, r.Until = in.Target, in.For, in.Until
		case control.MethodGrant:
			r.Target, r.Amount, r.Service = in.Target, in.Amount, in.Service
		case control.MethodLog:
			r.Target, r.Limit = in.Target, in.Limit
		case control.MethodUsage:
			r.Target, r.Limit = in.Target, in.Days
		case control.MethodReport:
			r.Limit = in.Days
		case control.MethodAssign:
			r.Target, r.Profile, r.Name = in.MAC, in.Profile, in.Name
		case control.MethodApprove:
			r.ID, r.Minutes, r.WholeProfile = in.ID, in.Minutes, in.WholeProfile
		case control.MethodDeny:
			r.ID = in.ID
		}
		if err := r.Validate(); err != nil {
			return nil, err
		}
		var out json.RawMessage
		if err := control.Call(ctx, socket, r, &out); err != nil {
			return nil, err
		}
		return out, nil
	}
}

// rpcdMethods are the methods the LuCI app may call; the ACL file grants
// them, and a test checks that the views, this list and the ACL agree.
func rpcdMethods() map[string]rpcdMethod {
	return map[string]rpcdMethod{
		"status":   {nil, forward(control.Request{Method: control.MethodStatus}), false},
		"devices":  {nil, forward(control.Request{Method: control.MethodDevices}), true},
		"explain":  {map[string]string{"target": "str"}, forward(control.Request{Method: control.MethodExplain}), false},
		"log":      {map[string]string{"target": "str", "limit": "int"}, forward(control.Request{Method: control.MethodLog}), true},
		"usage":    {map[string]string{"target": "str", "days": "int"}, forward(control.Request{Method: control.MethodUsage}), true},
		"report":   {map[string]string{"days": "int"}, forward(control.Request{Method: control.MethodReport}), false},
		"pause":    {map[string]string{"target": "str", "for": "str", "until": "str"}, forward(control.Request{Method: control.MethodPause}), false},
		"resume":   {map[string]string{"target": "str"}, forward(control.Request{Method: control.MethodResume}), false},
		"allow":    {map[string]string{"target": "str", "for": "str", "until": "str"}, forward(control.Request{Method: control.MethodAllow}), false},
		"grant":    {map[string]string{"target": "str", "amount": "str", "service": "str"}, forward(control.Request{Method: control.MethodGrant}), false},
		"assign":   {map[string]string{"mac": "str", "profile": "str", "name": "str"}, forward(control.Request{Method: control.MethodAssign}), false},
		"requests": {nil, forward(control.Request{Method: control.MethodRequests}), true},
		"approve":  {map[string]string{"id": "str", "minutes": "int", "whole_profile": "bool"}, forward(control.Request{Method: control.MethodApprove}), false},
		"deny":     {map[string]string{"id": "str"}, forward(control.Request{Method: control.MethodDeny}), false},
		"services": {nil, func(context.Context, string, rpcdArgs) (any, error) { return services.Builtin().All(), nil }, true},
	}
}

// runRpcd speaks rpcd's exec protocol (the plugin /usr/libexec/rpcd/curfew
// runs `curfew rpcd "$@"`): `list` prints the methods and their arguments
// as JSON; `call METHOD` reads the arguments as JSON on stdin and prints
// the result as JSON. Every failure — the daemon down, bad arguments — is a
// JSON object with an "error", never a crash or bare text, so that LuCI can
// show it.
func runRpcd(ctx context.Context, args []string, env *Env) int {
	fs := flags("rpcd", env)
	socket := fs.String("socket", DefaultSocket, "control socket")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	methods := rpcdMethods()
	switch fs.Arg(0) {
	case "list":
		out := map[string]map[string]any{}
		for name, m := range methods {
			a := map[string]any{}
			for k, typ := range m.args {
				switch typ {
				case "int":
					a[k] = 0
				case "bool":
					a[k] = false
				default:
					a[k] = "str"
				}
			}
			out[name] = a
		}
		writeRpcd(env.Stdout, out)
		return ExitOK
	case "call":
		m, ok := methods[fs.Arg(1)]
		if !ok {
			writeRpcd(env.Stdout, map[string]string{"error": fmt.Sprintf("unknown method %q", fs.Arg(1))})
			return ExitOK
		}
		var in rpcdArgs
		data, err := io.ReadAll(io.LimitReader(env.Stdin, control.MaxRequest))
		if err == nil && len(strings.TrimSpace(string(data))) > 0 {
			err = json.Unmarshal(data, &in)
		}
		if err != nil {
			writeRpcd(env.Stdout, map[string]string{"error": "bad arguments: " + err.Error()})
			return ExitOK
		}
		res, err := m.call(ctx, *socket, in)
		if err != nil {
			msg := err.Error()
			if errors.Is(err, control.ErrNotRunning) {
				msg = "the curfew daemon is not running"
			}
			writeRpcd(env.Stdout, map[string]string{"error": msg})
			return ExitOK
		}
		// rpcd wants a JSON object; lists are wrapped.
		if m.list {
			res = map[string]any{"result": res}
		}
		writeRpcd(env.Stdout, res)
		return ExitOK
	}
	fmt.Fprintln(env.Stderr, "usage: curfew rpcd list | call METHOD (arguments as JSON on stdin)")
	return ExitUsage
}

// writeRpcd prints an answer for rpcd without indentation: rpcd reads it
// into one ubus message (at most 1 MB), and nobody reads it as text; with
// 1,000 devices, status is 287 kB indented and 172 kB compact.
func writeRpcd(w io.Writer, v any) {
	json.NewEncoder(w).Encode(v) //nolint:errcheck // rpcd reports a broken pipe itself
}
