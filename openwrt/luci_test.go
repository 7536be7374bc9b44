package openwrt

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite po/templates/curfew.pot")

const luci = "luci-app-curfew"

func views(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(luci, "htdocs/luci-static/resources/view/curfew/*.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no views: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

func TestViewsParse(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node missing (CI installs nodejs)")
		}
		t.Skip("node missing")
	}
	for f, src := range views(t) {
		// LuCI loads a view as the body of a function (hence its top-level
		// return): check it the same way.
		tmp := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(tmp, []byte("(function(view, rpc, ui, poll, form, E, _, L) {\n"+src+"\n});\n"), 0o644)
		if out, err := exec.Command(node, "--check", tmp).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

func TestMenuACLAndPluginAgree(t *testing.T) {
	var menu map[string]struct {
		Action struct {
			Type, Path string
		}
		Depends struct {
			ACL []string
		}
	}
	readJSON(t, filepath.Join(luci, "root/usr/share/luci/menu.d/luci-app-curfew.json"), &menu)
	for entry, m := range menu {
		if m.Action.Type == "view" {
			if _, err := os.Stat(filepath.Join(luci, "htdocs/luci-static/resources/view", m.Action.Path+".js")); err != nil {
				t.Errorf("menu %s names a missing view %s", entry, m.Action.Path)
			}
		}
	}
	var acl map[string]struct {
		Read, Write struct {
			Ubus map[string][]string
			UCI  []string `json:"uci"`
		}
	}
	readJSON(t, filepath.Join(luci, "root/usr/share/rpcd/acl.d/luci-app-curfew.json"), &acl)
	a, ok := acl["luci-app-curfew"]
	if !ok {
		t.Fatal("ACL luci-app-curfew missing")
	}
	if menu["admin/services/curfew"].Depends.ACL[0] != "luci-app-curfew" {
		t.Error("menu does not depend on the ACL")
	}
	if strings.Join(a.Read.UCI, ",") != "curfew" || strings.Join(a.Write.UCI, ",") != "curfew" {
		t.Errorf("ACL grants UCI %v / %v, want only curfew", a.Read.UCI, a.Write.UCI)
	}
	granted := map[string]bool{}
	for _, m := range append(a.Read.Ubus["curfew"], a.Write.Ubus["curfew"]...) {
		granted[m] = true
	}
	if len(a.Read.Ubus) != 1 || len(a.Write.Ubus) != 1 {
		t.Errorf("ACL grants other ubus objects: %v %v", a.Read.Ubus, a.Write.Ubus)
	}
	for _, w := range a.Write.Ubus["curfew"] {
		switch w {
		case "pause", "resume", "allow", "grant", "assign", "approve", "deny":
		default:
			t.Errorf("ACL grants write to %s", w)
		}
	}

	packages(t)
	out, err := exec.Command(filepath.Join("..", "dist", "curfew-amd64"), "rpcd", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var listed map[string]map[string]any
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("rpcd list is not JSON: %v\n%s", err, out)
	}
	for m := range granted {
		if _, ok := listed[m]; !ok {
			t.Errorf("ACL grants %s, which the plugin does not list", m)
		}
	}
	declare := regexp.MustCompile(`rpc\.declare\(\{\s*object:\s*'curfew',\s*method:\s*'([a-z_]+)'(?:,\s*params:\s*\[([^\]]*)\])?`)
	for f, src := range views(t) {
		for _, m := range declare.FindAllStringSubmatch(src, -1) {
			method := m[1]
			if _, ok := listed[method]; !ok {
				t.Errorf("%s declares %s, which the plugin does not list", f, method)
			}
			if !granted[method] {
				t.Errorf("%s declares %s, which the ACL does not grant", f, method)
			}
			for _, p := range strings.Split(m[2], ",") {
				p = strings.Trim(strings.TrimSpace(p), "'")
				if _, ok := listed[method][p]; p != "" && !ok {
					t.Errorf("%s passes %s to %s, which does not take it", f, p, method)
				}
			}
		}
	}
	plugin := filepath.Join(luci, "root/usr/libexec/rpcd/curfew")
	if info, err := os.Stat(plugin); err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Errorf("rpcd plugin missing or not executable: %v", err)
	}
	if out, err := exec.Command("sh", "-n", plugin).CombinedOutput(); err != nil {
		t.Errorf("rpcd plugin: %v %s", err, out)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestTranslationTemplate checks that po/templates/curfew.pot holds every
// string the views pass to _() (run with -update to regenerate it).
func TestTranslationTemplate(t *testing.T) {
	re := regexp.MustCompile(`_\('((?:[^'\\]|\\.)*)'\)`)
	set := map[string]bool{}
	for _, src := range views(t) {
		for _, m := range re.FindAllStringSubmatch(src, -1) {
			set[strings.ReplaceAll(m[1], `\'`, `'`)] = true
		}
	}
	// LuCI translates the menu's titles with the same catalogue
	var menu map[string]struct{ Title string }
	readJSON(t, filepath.Join(luci, "root/usr/share/luci/menu.d/luci-app-curfew.json"), &menu)
	for _, m := range menu {
		set[m.Title] = true
	}
	var msgs []string
	for m := range set {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	var b strings.Builder
	b.WriteString("msgid \"\"\nmsgstr \"Content-Type: text/plain; charset=UTF-8\"\n")
	for _, m := range msgs {
		b.WriteString("\nmsgid " + strconv.Quote(m) + "\nmsgstr \"\"\n")
	}
	path := filepath.Join(luci, "po/templates/curfew.pot")
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, []byte(b.String()), 0o644)
		return
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != b.String() {
		t.Errorf("%s is out of date (go test ./openwrt -run TestTranslationTemplate -update): %v", path, err)
	}
	if len(msgs) < 50 {
		t.Errorf("only %d strings found: the _() pattern missed some", len(msgs))
	}
}

// TestViewsGiveLuCIOnlyTextNodes guards against script injection: LuCI's
// E(tag, attrs, content) sets a bare string content as innerHTML, and the
// views show strings a child's device chose (DNS names, DHCP host names).
// Content must be an array, an element, a translation or a literal — never
// a bare value; data goes through curfew.dom, which makes text nodes.
func TestViewsGiveLuCIOnlyTextNodes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(luci, "htdocs/luci-static/resources/view/curfew/*.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("views: %v", err)
	}
	// E('tag', {attrs}, X) or E('tag', X) where X does not start with
	// [, E(, _(, a quote or a closing parenthesis.
	bare := regexp.MustCompile(`\bE\('[a-z0-9]+'\s*,\s*(?:\{[^{}]*\}\s*,\s*)?([^\s\[{'"_E)][^,)]*)`)
	// E('tag', {attrs}, _('… %s …').format(value)): a translation that
	// carries a value is a value.
	formatted := regexp.MustCompile(`\bE\('[a-z0-9]+'\s*,\s*(?:\{[^{}]*\}\s*,\s*)?(_\('[^']*'\)\.format\()`)
	// LuCI's ui calls that take a title or content and make a bare string
	// HTML the same way (showModal's title through E('h4', {}, title)).
	uiCall := regexp.MustCompile(`\bui\.(showModal|addNotification|addTimeLimitedNotification)\(`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src, name := string(b), filepath.Base(f)
		for _, m := range bare.FindAllStringSubmatch(src, -1) {
			t.Errorf("%s: %s gives LuCI %q as HTML; use dom.el or an array", name, m[0], m[1])
		}
		for _, m := range formatted.FindAllStringSubmatch(src, -1) {
			t.Errorf("%s: %s gives LuCI a value as HTML; put it in an array", name, m[0])
		}
		for _, at := range uiCall.FindAllStringSubmatchIndex(src, -1) {
			for i, arg := range callArgs(src[at[1]:], 2) {
				if !textOnly(arg) {
					t.Errorf("%s: ui.%s's argument %d, %q, may be a bare string, which LuCI makes HTML; use null, an array, E(…) or dom.el", name, src[at[2]:at[3]], i+1, arg)
				}
			}
		}
	}
}

// callArgs returns the first n arguments of the call whose argument list
// starts src (just after its opening parenthesis), split at top-level
// commas; string literals are skipped whole.
func callArgs(src string, n int) []string {
	var args []string
	depth, start := 0, 0
	for i := 0; i < len(src) && len(args) < n; i++ {
		switch c := src[i]; c {
		case '\'', '"', '`':
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth == 0 {
				return append(args, strings.TrimSpace(src[start:i]))
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(src[start:i]))
				start = i + 1
			}
		}
	}
	return args
}

// textOnly reports whether a ui call's title or content argument cannot be
// a bare string: null, an array, an element, or a translation without a
// value.
func textOnly(arg string) bool {
	switch {
	case arg == "null", strings.HasPrefix(arg, "["), strings.HasPrefix(arg, "E("), strings.HasPrefix(arg, "dom.el("):
		return true
	}
	return regexp.MustCompile(`^_\('[^']*'\)$`).MatchString(arg)
}
