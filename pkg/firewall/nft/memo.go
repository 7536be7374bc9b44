// What render keeps from one call to the next: the parts of the table
// that are costly to build and usually unchanged (a pause changes one
// device of thousands).

package nft

import (
	"slices"

	"github.com/google/nftables"

	"curfew/pkg/firewall"
)

// memo is render's memory: each profile's grouped prefixes and each
// configured device's rendered part. A render reuses what it finds
// unchanged and keeps only what it used, so a removed device's part goes
// with the render that no longer has it.
type memo struct {
	prefixes prefixMemo
	devices  map[string]*devicePart
}

// devicePart is one configured device's share of the table (see
// renderDevice), with the inputs it was made from. Everything in it is
// read-only once made: the applied table and the next render share it.
type devicePart struct {
	name, profile string
	offline       []firewall.Interval
	slowIvs       []firewall.Interval
	slowRate      uint64
	markID        uint32

	// off is its offline set, ch its chain, counter its named counter.
	off     *setSpec
	ch      *chainSpec
	counter string
	// device and dns are its elements of device_chain and dns_profile;
	// windows its elements of the offline set of the NAT hook's
	// redirects (see offlineMatch).
	device, dns nftables.SetElement
	windows     []nftables.SetElement
	// comment is its online element's comment, before any ", until".
	comment string
	sig     string

	// For a device that winds down (see winddown.go), nil otherwise: its
	// wind-down set, its slow and mark chains, and its elements of
	// wind_mark and wind_flows.
	slow           *setSpec
	slowCh, markCh *chainSpec
	mark, flows    nftables.SetElement
}

// part returns the device's part from the last render when its inputs
// are the same, and keeps it for the next; nil when it must be made.
func (m *memo) part(next map[string]*devicePart, dev firewall.Device, mark uint32) *devicePart {
	p := m.devices[string(dev.MAC)]
	if p == nil || p.name != dev.Name || p.profile != dev.Profile || !slices.EqualFunc(p.offline, dev.Offline, sameInterval) ||
		p.markID != mark || p.slowRate != dev.SlowRate || !slices.EqualFunc(p.slowIvs, dev.Slow, sameInterval) {
		return nil
	}
	next[string(dev.MAC)] = p
	return p
}

func sameInterval(a, b firewall.Interval) bool { return a.From.Equal(b.From) && a.To.Equal(b.To) }
