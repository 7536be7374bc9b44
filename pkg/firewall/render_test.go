package firewall

import (
	"net/netip"
	"testing"
	"time"

	"curfew/pkg/config"
	"curfew/pkg/plan"
	"curfew/pkg/services"
)

func renderOf(t *testing.T, src string, cache *PrefixCache) (*Ruleset, *config.Config) {
	t.Helper()
	c, _, err := config.Parse("f", []byte(src), services.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	p := plan.Compute(plan.Input{Config: c, Loc: time.UTC, At: time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC), ClockTrusted: true})
	return Render(p, c, 5453, cache), c
}

// TestPrefixCacheFollowsTheList: while a profile's list is the same, Render
// hands back the same prefixes (a pause must not walk 100,000 entries);
// a new list is rendered anew.
func TestPrefixCacheFollowsTheList(t *testing.T) {
	const src = "config profile 'kid'\n\tlist block '203.0.113.0/24'\n\tlist block 'tiktok.com'\n\tlist block '2001:db8::/32'\nconfig device\n\toption mac '02:00:00:00:00:01'\n\toption profile 'kid'\n"
	var cache PrefixCache
	c, _, _ := config.Parse("f", []byte(src), services.Builtin())
	at := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	first := Render(plan.Compute(plan.Input{Config: c, Loc: time.UTC, At: at, ClockTrusted: true}), c, 5453, &cache)
	again := Render(plan.Compute(plan.Input{Config: c, Loc: time.UTC, At: at.Add(time.Minute), ClockTrusted: true}), c, 5453, &cache)
	a, b := first.Profiles[0].Block, again.Profiles[0].Block
	if len(a) != 2 || &a[0] != &b[0] {
		t.Errorf("the same list rendered anew: %v / %v", a, b)
	}
	changed, _ := renderOf(t, src+"config profile 'other'\n", &cache) // a new config: new lists
	if got := changed.Profiles[0].Block; len(got) != 2 || &got[0] == &a[0] || got[0] != netip.MustParsePrefix("203.0.113.0/24") {
		t.Errorf("a new config's list came from the cache: %v", got)
	}
}
