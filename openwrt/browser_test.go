package openwrt

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"curfew/pkg/lab"
)

// The LuCI views in a real browser: Debian's chromium, driven by
// puppeteer-core (openwrt/browser), renders LuCI's own client side and
// curfew's views from uhttpd, talking to the real /ubus, rpcd and a running
// daemon (startStack). `make screenshots` keeps the pictures in
// docs/screenshots.

var pagesUnderTest = []string{"curfew/overview", "curfew/profiles", "curfew/activity"}

// readPO reads a gettext catalogue: msgid → msgstr.
func readPO(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var id, str *string
	var cur *string
	flush := func() {
		if id != nil && str != nil && *id != "" {
			out[*id] = *str
		}
		id, str, cur = nil, nil, nil
	}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "msgid "):
			flush()
			id = new(string)
			cur = id
			line = strings.TrimPrefix(line, "msgid ")
		case strings.HasPrefix(line, "msgstr "):
			str = new(string)
			cur = str
			line = strings.TrimPrefix(line, "msgstr ")
		}
		v, err := strconv.Unquote(line)
		if err != nil || cur == nil {
			t.Fatalf("%s:%d: %q: %v", path, n+1, line, err)
		}
		*cur += v
	}
	flush()
	return out
}

// translations is a catalogue as LuCI's pages carry it: window.TR, keyed
// by cbi.js's sfh() of the message (the translation script LuCI's
// dispatcher emits for the page's language).
func translations(po map[string]string) string {
	pairs, _ := json.Marshal(po)
	return fmt.Sprintf(`<script>(function(t) { window.TR = {}; for (var k in t) TR[sfh(trimws(k))] = t[k]; })(%s);</script>`, pairs)
}

// testPage stands in for LuCI's ucode header template: the theme's CSS
// (mobile.css for phone screens, as the bootstrap header loads it), cbi.js,
// luci.js with the environment the header emits, and the view.
func testPage(view, sid, lang, catalogue string) string {
	env := map[string]any{
		"resource": "/luci-static/resources", "media": "/luci-static/bootstrap",
		"scriptname": "/cgi-bin/luci", "ubuspath": "/ubus/", "sessionid": sid, "token": strings.Repeat("0", 32),
		"requestpath":  []string{"admin", "services", "curfew", filepath.Base(view)},
		"dispatchpath": []string{"admin", "services", "curfew", filepath.Base(view)},
		"nodespec":     map[string]any{"satisfied": true, "action": map[string]string{"type": "view", "path": view}},
		"pollinterval": 5, "apply_rollback": 90, "apply_holdoff": 1, "apply_timeout": 5, "apply_display": 1,
		"rollback_token": nil, "lang": lang,
	}
	envJSON, _ := json.Marshal(env)
	return fmt.Sprintf(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="initial-scale=1.0">
<title>router | curfew</title>
<link rel="stylesheet" href="/luci-static/bootstrap/cascade.css">
<link rel="stylesheet" media="only screen and (max-device-width: 854px)" href="/luci-static/bootstrap/mobile.css">
<script src="/luci-static/resources/cbi.js"></script>
%s
</head><body class="lang_%s">
<header><div class="fill"><div class="container"><span class="brand">router</span><ul class="nav" id="topmenu"></ul><div id="indicators" class="pull-right"></div></div></div></header>
<div id="maincontent" class="container"><div id="tabmenu"></div><div id="view"><div class="spinning">Loading view…</div></div></div>
<script src="/luci-static/resources/luci.js"></script>
<script>L = new LuCI(%s);</script>
<script>L.require('ui').then(function(ui) { ui.instantiateView('%s'); });</script>
</body></html>
`, catalogue, lang, envJSON, view)
}

type pageResult struct {
	View, Viewport string
	Pwned          bool
	Errors         []string
	Failed         string
	Overflow       int
	Unlabelled     []string
	Unreachable    []string
	Notifications  []string
	Text           string
}

type driveResult struct {
	Pages  []pageResult
	Stills []struct {
		Name, Text, Asked, Failed string
		Overflow                  int
		Pwned                     bool
	}
	Actions []struct {
		Name, Result, Failed string
	}
}

// knownError is the one console error a test page may show: LuCI asks the
// `luci` ubus object (rpcd-mod-luci, not built here) for its features.
func knownError(e string) bool {
	return strings.Contains(e, "luci.getFeatures") || strings.Contains(e, "Object not found") ||
		strings.Contains(e, "status of 404") // the page's favicon
}

func drive(t *testing.T, s *stack, shots string, act bool) driveResult {
	t.Helper()
	sid, err := s.login(fullUser)
	if err != nil {
		t.Fatal(err)
	}
	var pages []map[string]string
	german := translations(readPO(t, filepath.Join(luci, "po/de/curfew.po")))
	for _, lang := range []string{"en", "de"} {
		for _, v := range pagesUnderTest {
			view, catalogue := v, ""
			if lang == "de" {
				view, catalogue = v+"@de", german
			}
			file := "curfew-test/" + filepath.Base(v) + "-" + lang + ".html"
			p := filepath.Join(s.dir, "www", file)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(testPage(v, sid, lang, catalogue)), 0o644); err != nil {
				t.Fatal(err)
			}
			pages = append(pages, map[string]string{"view": view, "file": file})
		}
	}
	arg, _ := json.Marshal(map[string]any{"base": s.url(""), "pages": pages, "shots": shots, "act": act, "markup": hostileName})
	return runDrive(t, s.l.Router, arg)
}

// runDrive runs drive.mjs in namespace ns.
func runDrive(t *testing.T, ns string, arg []byte) driveResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node missing (CI installs nodejs)")
	}
	for _, need := range []string{"/usr/bin/chromium", "browser/node_modules/puppeteer-core"} {
		if _, err := os.Stat(need); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: .ci/run installs chromium and runs npm ci in openwrt/browser", need)
			}
			t.Skipf("%s missing (apt-get install chromium; cd openwrt/browser && npm ci)", need)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns, node, "drive.mjs", string(arg))
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("drive.mjs: %v\n%s", err, stderr.String())
	}
	var res driveResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("drive.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	return res
}

func TestLuCIViewsInARealBrowser(t *testing.T) {
	s := startStack(t, "cfbr")
	shots := ""
	if dir := os.Getenv("CURFEW_SCREENSHOTS"); dir != "" {
		shots, _ = filepath.Abs(dir)
		os.MkdirAll(shots, 0o755)
	}
	// The child's phone, paused: chromium in the child's namespace opens
	// Android's probe address, gets the daemon's bedtime page through the
	// kernel's redirect, and asks for more time with markup in the
	// message, which the page and then LuCI's request list must show as
	// text.
	s.curfew("pause", "Kid phone")
	arg, _ := json.Marshal(map[string]any{"shots": shots, "pages": []any{}, "stills": []any{map[string]any{
		"url": "http://" + lab.InternetV4 + "/generate_204", "name": "bedtime-page",
		"ask": map[string]any{"minutes": 30, "message": hostileMessage}}}})
	phone := runDrive(t, s.l.Child.NS, arg)
	if len(phone.Stills) != 1 {
		t.Fatalf("phone: %+v", phone)
	}
	if st := phone.Stills[0]; st.Failed != "" || !strings.Contains(st.Text, "Kid phone is offline.") || !strings.Contains(st.Text, "Ask for more time") ||
		st.Overflow > 0 || !strings.Contains(st.Asked, "Waiting for an answer") || !strings.Contains(st.Asked, hostileMessage) || st.Pwned {
		t.Errorf("the bedtime page on the child's phone: %+v", st)
	}
	s.curfew("resume", "Kid phone")
	res := drive(t, s, shots, true)
	if len(res.Pages) != 4*len(pagesUnderTest) {
		t.Fatalf("pages = %+v", res.Pages)
	}
	for _, p := range res.Pages {
		where := p.View + " (" + p.Viewport + ")"
		if p.Failed != "" {
			t.Errorf("%s: %s", where, p.Failed)
			continue
		}
		for _, e := range p.Errors {
			if !knownError(e) {
				t.Errorf("%s: console error %q", where, e)
			}
		}
		for _, n := range p.Notifications {
			if !knownError(n) {
				t.Errorf("%s: LuCI shows %q", where, n)
			}
		}
		if len(p.Unlabelled) > 0 {
			t.Errorf("%s: %d values without their column's data-title (unlabelled on a phone): %q", where, len(p.Unlabelled), p.Unlabelled)
		}
		if p.Overflow > 0 || len(p.Unreachable) > 0 {
			t.Errorf("%s: %d px wider than the screen; out of reach: %q", where, p.Overflow, p.Unreachable)
		}
		// the daemon's data is on the page
		want := map[string][]string{
			"curfew/overview": {"Kid phone", "Parent laptop", "02:c0:00:00:00:1e", "Children and devices", "Requests for more time", hostileMessage},
			"curfew/profiles": {"kid", "grownup", "bedtime", "Schedules"},
			"curfew/activity": {"Kid phone", "Recent DNS queries", "This week", "Online this week", "YouTube 5h", "tiktok.com", "5a:00:00:00:00:07"},
			// the German catalogue reaches the page through LuCI's _()
			"curfew/overview@de": {"Kid phone", "Kindersicherung", "Kinder und Geräte", "Pausieren", "Unbekannte Geräte", "Bitten um mehr Zeit", "Erlauben"},
			"curfew/profiles@de": {"kid", "Zeitpläne", "Allgemein", "Aktiviert", "Profil für unbekannte Geräte"},
			"curfew/activity@de": {"Kid phone", "Letzte DNS-Anfragen", "Diese Woche", "Am häufigsten aufgerufen"},
		}[p.View]
		for _, w := range want {
			if !strings.Contains(p.Text, w) {
				t.Errorf("%s does not show %q:\n%s", where, w, p.Text)
			}
		}
		if p.Pwned {
			t.Errorf("%s: the device name %q became markup and ran", where, hostileName)
		}
		if (strings.HasPrefix(p.View, "curfew/overview") || strings.HasPrefix(p.View, "curfew/activity")) && !strings.Contains(p.Text, hostileName) {
			t.Errorf("%s does not show the device name %q as text", where, hostileName)
		}
		if p.View == "curfew/overview" && strings.Contains(p.Text, "unrestricted") {
			t.Errorf("%s calls the guest unrestricted although unknown_profile is 'guest':\n%s", where, p.Text)
		}
	}
	for _, a := range res.Actions {
		if a.Failed != "" {
			t.Errorf("action %s: %s", a.Name, a.Failed)
		} else {
			t.Logf("action %s: %s", a.Name, a.Result)
		}
	}
	// what the clicks changed, as the daemon reports it
	if len(res.Actions) != 12 {
		t.Fatalf("actions = %+v", res.Actions)
	}
	if out := s.curfew("status"); !strings.Contains(out, "allow Kid phone until") || !strings.Contains(out, "grant Kid phone +15m today") ||
		!strings.Contains(out, "grant Kid phone +15m of youtube today") {
		t.Errorf("status after the clicks:\n%s", out)
	}
	// the week the view showed, as the CLI and the weekly notification say it
	if out := s.curfew("report", "--week"); !strings.Contains(out, "Looked up most: YouTube 5h") || !strings.Contains(out, strconv.Quote(hostileName)) {
		t.Errorf("curfew report --week:\n%s", out)
	}
	if out := s.curfew("requests"); !strings.Contains(out, "approved 30 min") {
		t.Errorf("requests after Approve:\n%s", out)
	}
	if out := s.curfew("explain", "02:c0:00:00:00:1e"); !strings.Contains(out, "profile kid") {
		t.Errorf("assigned guest:\n%s", out)
	}
	// the profile form's Save wrote the file through rpcd; the router's
	// procd would now reload curfew (uci commit trigger)
	written, _ := os.ReadFile(filepath.Join(s.dir, "etc-up/config/curfew"))
	if !strings.Contains(string(written), "option daily_limit '3h'") {
		t.Errorf("the profile form did not write the limit:\n%s", written)
	}
	s.curfew("reload")
	if out := s.curfew("explain", "kid"); !strings.Contains(out, "3h15m of screen time left today") {
		t.Errorf("after the profile form and reload:\n%s", out)
	}
}

// TestGermanTranslationIsComplete: every message of the template has a
// German translation that keeps its placeholders, in order.
func TestGermanTranslationIsComplete(t *testing.T) {
	pot := readPO(t, filepath.Join(luci, "po/templates/curfew.pot"))
	de := readPO(t, filepath.Join(luci, "po/de/curfew.po"))
	verbs := regexp.MustCompile(`%[sdf]`)
	for id := range pot {
		tr, ok := de[id]
		switch {
		case !ok || tr == "":
			t.Errorf("not translated: %q", id)
		case strings.Join(verbs.FindAllString(id, -1), "") != strings.Join(verbs.FindAllString(tr, -1), ""):
			t.Errorf("%q: placeholders differ in %q", id, tr)
		}
	}
	for id := range de {
		if _, ok := pot[id]; !ok {
			t.Errorf("translated but no longer used: %q", id)
		}
	}
}
