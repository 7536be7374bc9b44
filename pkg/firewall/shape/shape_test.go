package shape

import (
	"context"
	"strings"
	"testing"

	"curfew/pkg/lab"
)

// The shaper in the lab router: classes come and go with the devices that
// wind down, and with none left the qdisc goes; someone else's root qdisc
// is left alone.
func TestTheShaperFollowsTheDevicesThatWindDown(t *testing.T) {
	l := lab.Start(t, "cfsh", "tc")
	ns, err := lab.Fd(l.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := Dial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tc := func(args ...string) string {
		out, err := l.Exec(context.Background(), l.Router, "tc", args...)
		if err != nil {
			t.Fatalf("tc %v: %v %s", args, err, out)
		}
		return out
	}
	if err := Apply(h, []string{"br-lan", "gone"}, []Class{{ID: 0x12, Rate: 1_000_000}, {ID: 0x780d, Rate: 512_000}}); err != nil {
		t.Fatal(err)
	}
	classes := tc("class", "show", "dev", "br-lan")
	for _, want := range []string{"class htb c0f0:12 root leaf 12: prio 0 rate 1Mbit ceil 1Mbit", "class htb c0f0:780d root leaf 780d: prio 0 rate 512Kbit ceil 512Kbit"} {
		if !strings.Contains(classes, want) {
			t.Errorf("classes lack %q:\n%s", want, classes)
		}
	}
	if err := Apply(h, []string{"br-lan"}, []Class{{ID: 0x780d, Rate: 2_000_000}}); err != nil {
		t.Fatal(err)
	}
	classes = tc("class", "show", "dev", "br-lan")
	if strings.Contains(classes, "c0f0:12 ") || !strings.Contains(classes, "c0f0:780d root leaf 780d: prio 0 rate 2Mbit") {
		t.Errorf("after the first device stopped winding down:\n%s", classes)
	}
	if err := Remove(h, []string{"br-lan"}); err != nil {
		t.Fatal(err)
	}
	if q := tc("qdisc", "show", "dev", "br-lan"); strings.Contains(q, "htb") {
		t.Errorf("after Remove: %s", q)
	}

	tc("qdisc", "add", "dev", "br-lan", "root", "handle", "1:", "tbf", "rate", "10mbit", "burst", "10kb", "latency", "50ms")
	err = Apply(h, []string{"br-lan"}, []Class{{ID: 0x12, Rate: 1_000_000}})
	if err == nil || !strings.Contains(err.Error(), "shaping on br-lan: the interface has a root qdisc of its own (tbf 1:)") {
		t.Errorf("over someone else's qdisc: %v", err)
	}
	if q := tc("qdisc", "show", "dev", "br-lan"); !strings.Contains(q, "qdisc tbf 1: root") {
		t.Errorf("someone else's qdisc was touched: %s", q)
	}
}
