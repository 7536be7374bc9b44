// Package shape holds a winding-down device's downloads to its rate with
// a traffic shaper on the LAN interfaces: an HTB qdisc whose classes, one
// per device that winds down, let through the device's rate and queue
// the rest. A policer (a limit rule that drops) was measured first: TCP
// through it swung between half and twice the rate from second to
// second, and over two seconds averaged 0.7-0.8 of it; a queue keeps TCP
// at the rate.
//
// The firewall backends decide which packets go to a device's class and
// when: inside one of the device's wind-down intervals (kernel time), a
// download of a flow the device opened gets the class's id as its
// priority (Priority), which HTB takes as the class without any filter
// (no classifier module needed). Everything else — other devices, the
// device outside its intervals — is unclassified and goes out at once
// (HTB's direct queue), unshaped. So the shaping starts and ends on the
// kernel's clock, with no daemon running.
package shape

import (
	"errors"
	"fmt"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// Major is the handle of curfew's root qdisc on a LAN interface (0xc0f0:)
// and the major number of its classes (0xc0f0:id).
const Major = 0xc0f0

// Class is one device's: its id (the mark's upper half) and its rate in
// bits per second.
type Class struct {
	ID   uint16
	Rate uint64
}

// Classes lists the classes of the devices that wind down in rs, by id.
func Classes(rs *firewall.Ruleset) []Class {
	marks := firewall.Marks(rs.Devices)
	var out []Class
	for _, d := range rs.Devices {
		if m, ok := marks[string(d.MAC)]; ok {
			out = append(out, Class{ID: uint16(m >> 16), Rate: d.SlowRate})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Apply makes each LAN interface's root qdisc curfew's with exactly these
// classes; with none, it removes curfew's qdisc. An interface whose root
// qdisc is someone else's (SQM's, say) is left alone and named in the
// error; the others are still done.
func Apply(h *netlink.Handle, lan []string, classes []Class) error {
	var errs []error
	for _, name := range lan {
		link, err := h.LinkByName(name)
		if err != nil {
			continue // not there yet: the next apply after it appears
		}
		if err := apply(h, link, classes); err != nil {
			errs = append(errs, fmt.Errorf("shaping on %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes curfew's qdisc from the LAN interfaces.
func Remove(h *netlink.Handle, lan []string) error {
	return Apply(h, lan, nil)
}

func apply(h *netlink.Handle, link netlink.Link, classes []Class) error {
	root, err := rootQdisc(h, link)
	if err != nil {
		return err
	}
	ours := root != nil && root.Attrs().Handle == netlink.MakeHandle(Major, 0) && root.Type() == "htb"
	if len(classes) == 0 {
		if ours {
			return h.QdiscDel(root)
		}
		return nil
	}
	if root != nil && !ours && root.Attrs().Handle != 0 && root.Type() != "noqueue" {
		return fmt.Errorf("the interface has a root qdisc of its own (%s %x:), which curfew leaves alone: winding-down devices are not slowed on it",
			root.Type(), root.Attrs().Handle>>16)
	}
	if !ours {
		// No default class: unclassified packets go out at once.
		q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(Major, 0), Parent: netlink.HANDLE_ROOT})
		if err := h.QdiscReplace(q); err != nil {
			return fmt.Errorf("add the htb qdisc: %w", err)
		}
	}
	return sync(h, link, classes)
}

// Priority is the packet priority that puts a packet into the class of
// device id (the class's handle, Major:id).
func Priority(id uint16) uint32 { return netlink.MakeHandle(Major, id) }

// sync makes the qdisc's classes those of classes; a class already there
// at its rate is left as it is (its queue too).
func sync(h *netlink.Handle, link netlink.Link, classes []Class) error {
	idx, parent := link.Attrs().Index, netlink.MakeHandle(Major, 0)
	have, err := h.ClassList(link, parent)
	if err != nil {
		return err
	}
	rate := map[uint32]uint64{}
	for _, c := range have {
		if htb, ok := c.(*netlink.HtbClass); ok {
			rate[c.Attrs().Handle] = htb.Rate
		}
	}
	want := map[uint32]bool{}
	for _, c := range classes {
		id := Priority(c.ID)
		want[id] = true
		if r, ok := rate[id]; ok && r == c.Rate/8 {
			continue
		}
		cl := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: idx, Parent: parent, Handle: id},
			netlink.HtbClassAttrs{Rate: c.Rate, Ceil: c.Rate})
		if err := h.ClassReplace(cl); err != nil {
			return fmt.Errorf("class %x: %w", c.ID, err)
		}
		if err := leaf(h, idx, id, c.Rate); err != nil {
			return fmt.Errorf("class %x's queue: %w", c.ID, err)
		}
	}
	for _, c := range have {
		if c.Attrs().Handle>>16 == Major && !want[c.Attrs().Handle] {
			h.ClassDel(c)
		}
	}
	return nil
}

// leaf gives class id its queue: fq_codel, OpenWrt's default (each flow
// its own queue, a few milliseconds of delay: a call or a message still
// gets through beside a video); where the kernel has none, a byte queue
// of a tenth of a second at the class's rate (a token bucket ten times
// as fast as the class, so that only its queue's bound counts: two
// shapers at one rate lost a tenth of it between them). HTB's
// own default, a FIFO of 1,000 packets, holds twelve seconds at 1 Mbit/s
// and let one download starve another.
func leaf(h *netlink.Handle, link int, class uint32, rate uint64) error {
	attrs := netlink.QdiscAttrs{LinkIndex: link, Parent: class, Handle: netlink.MakeHandle(uint16(class), 0)}
	// Made anew on each change: the kernel changes a qdisc in place only
	// for its own kind, and refused this library's message for a token
	// bucket even then (EINVAL; tc's own works).
	h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: attrs, QdiscType: "fq_codel"})
	err := h.QdiscAdd(netlink.NewFqCodel(attrs))
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	bytes := rate / 8
	burst := uint32(max(bytes/50, 3028)) // 20 ms, two full frames at least
	return h.QdiscAdd(&netlink.Tbf{QdiscAttrs: attrs, Rate: 10 * bytes, Limit: uint32(bytes/10) + burst, Buffer: netlink.Xmittime(10*bytes, burst)})
}

func rootQdisc(h *netlink.Handle, link netlink.Link) (netlink.Qdisc, error) {
	qs, err := h.QdiscList(link)
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q, nil
		}
	}
	return nil, nil
}
