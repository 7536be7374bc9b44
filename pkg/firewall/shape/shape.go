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
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
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

// Priority is the packet priority that puts a packet into the class of
// device id (the class's handle, Major:id).
func Priority(id uint16) uint32 { return handle(Major, id) }

func handle(major, minor uint16) uint32 { return uint32(major)<<16 | uint32(minor) }

// tcRoot is the parent of a root qdisc (TC_H_ROOT).
const tcRoot = 0xffffffff

// Conn is a route netlink socket in one network namespace. The messages
// are written here rather than through vishvananda/netlink's qdisc and
// class calls: those parse every kind of qdisc there is, 90 kB of router
// flash for the three kinds used here.
type Conn struct {
	s *nl.SocketHandle
}

// Dial opens a Conn in the network namespace of nsFd (0: the current
// one).
func Dial(nsFd int) (*Conn, error) {
	ns := netns.None()
	if nsFd != 0 {
		ns = netns.NsHandle(nsFd)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	return &Conn{s: &nl.SocketHandle{Socket: s}}, nil
}

// Close closes the socket.
func (c *Conn) Close() { c.s.Close() }

// do sends one request and returns the answers (a dump's messages).
func (c *Conn) do(typ, flags int, msg *nl.TcMsg, attrs ...*nl.RtAttr) ([][]byte, error) {
	req := nl.NewNetlinkRequest(typ, flags|unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.s}
	req.AddData(msg)
	for _, a := range attrs {
		req.AddData(a)
	}
	answer := 0
	if flags&unix.NLM_F_DUMP != 0 {
		answer = typ - 2 // RTM_GETQDISC → RTM_NEWQDISC, RTM_GETTCLASS → RTM_NEWTCLASS
	}
	return req.Execute(unix.NETLINK_ROUTE, uint16(answer))
}

// tc is what a dump says of one qdisc or class.
type tc struct {
	handle, parent uint32
	kind           string
	// rate is an HTB class's, in bytes per second.
	rate uint64
}

func (c *Conn) dump(typ int, link int32) ([]tc, error) {
	msgs, err := c.do(typ, unix.NLM_F_DUMP, &nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link})
	if err != nil {
		return nil, err
	}
	var out []tc
	for _, m := range msgs {
		if len(m) < nl.SizeofTcMsg {
			continue
		}
		h := nl.DeserializeTcMsg(m)
		if h.Ifindex != link {
			continue
		}
		t := tc{handle: h.Handle, parent: h.Parent}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofTcMsg:])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case nl.TCA_KIND:
				t.kind = string(a.Value[:max(len(a.Value)-1, 0)])
			case nl.TCA_OPTIONS:
				opts, _ := nl.ParseRouteAttr(a.Value)
				for _, o := range opts {
					if o.Attr.Type == nl.TCA_HTB_PARMS && len(o.Value) >= nl.SizeofTcHtbCopt {
						t.rate = uint64(nl.DeserializeTcHtbCopt(o.Value).Rate.Rate)
					}
				}
			}
		}
		out = append(out, t)
	}
	return out, nil
}

func (c *Conn) linkIndex(name string) (int32, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.s}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil || len(msgs) == 0 {
		return 0, fmt.Errorf("no interface %s: %w", name, err)
	}
	return nl.DeserializeIfInfomsg(msgs[0]).Index, nil
}

// Apply makes each LAN interface's root qdisc curfew's with exactly these
// classes; with none, it removes curfew's qdisc. An interface whose root
// qdisc is someone else's (SQM's, say) is left alone and named in the
// error; the others are still done.
func Apply(c *Conn, lan []string, classes []Class) error {
	var errs []error
	for _, name := range lan {
		link, err := c.linkIndex(name)
		if err != nil {
			continue // not there yet: the next apply after it appears
		}
		if err := c.apply(link, classes); err != nil {
			errs = append(errs, fmt.Errorf("shaping on %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes curfew's qdisc from the LAN interfaces.
func Remove(c *Conn, lan []string) error {
	return Apply(c, lan, nil)
}

func (c *Conn) apply(link int32, classes []Class) error {
	qdiscs, err := c.dump(unix.RTM_GETQDISC, link)
	if err != nil {
		return err
	}
	var root *tc
	for i, q := range qdiscs {
		if q.parent == tcRoot {
			root = &qdiscs[i]
		}
	}
	ours := root != nil && root.handle == handle(Major, 0) && root.kind == "htb"
	if len(classes) == 0 {
		if ours {
			_, err := c.do(unix.RTM_DELQDISC, 0, &nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link, Handle: root.handle, Parent: tcRoot})
			return err
		}
		return nil
	}
	if root != nil && !ours && root.handle != 0 && root.kind != "noqueue" {
		return fmt.Errorf("the interface has a root qdisc of its own (%s %x:), which curfew leaves alone: winding-down devices are not slowed on it",
			root.kind, root.handle>>16)
	}
	if !ours {
		// No default class: unclassified packets go out at once.
		glob := nl.TcHtbGlob{Version: 3, Rate2Quantum: 10}
		opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
		opts.AddRtAttr(nl.TCA_HTB_INIT, glob.Serialize())
		if _, err := c.do(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_REPLACE,
			&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link, Handle: handle(Major, 0), Parent: tcRoot},
			nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("htb")), opts); err != nil {
			return fmt.Errorf("add the htb qdisc: %w", err)
		}
	}
	return c.sync(link, classes)
}

// sync makes the qdisc's classes those of classes; a class already there
// at its rate is left as it is (its queue too).
func (c *Conn) sync(link int32, classes []Class) error {
	have, err := c.dump(unix.RTM_GETTCLASS, link)
	if err != nil {
		return err
	}
	rate := map[uint32]uint64{}
	for _, h := range have {
		if h.kind == "htb" {
			rate[h.handle] = h.rate
		}
	}
	want := map[uint32]bool{}
	for _, cl := range classes {
		id := Priority(cl.ID)
		want[id] = true
		if r, ok := rate[id]; ok && r == cl.Rate/8 {
			continue
		}
		if err := c.class(link, id, cl.Rate/8); err != nil {
			return fmt.Errorf("class %x: %w", cl.ID, err)
		}
		if err := c.leaf(link, id, cl.Rate/8); err != nil {
			return fmt.Errorf("class %x's queue: %w", cl.ID, err)
		}
	}
	for _, h := range have {
		if h.handle>>16 == Major && !want[h.handle] {
			c.do(unix.RTM_DELTCLASS, 0, &nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link, Handle: h.handle, Parent: h.parent})
		}
	}
	return nil
}

// class adds or changes HTB class id at rate (bytes per second, its
// ceiling too), with a burst of 50 ms at the rate (a tick's worth and a
// frame at least). HTB keeps no more credit than its burst: a dequeue
// that comes late — a router busy with Wi-Fi interrupts, a CPU that is
// not there for a while — loses what it could have sent meanwhile. With
// a tick's worth (23 ms at 1 Mbit/s) a starved emulated guest got 0.87
// of the rate; 50 ms of line-rate burst is nothing a video notices.
func (c *Conn) class(link int32, id uint32, rate uint64) error {
	burst := uint32(max(rate/uint64(netlink.Hz())+1600, rate/20))
	var opt nl.TcHtbCopt
	opt.Rate.Rate, opt.Ceil.Rate = uint32(rate), uint32(rate)
	opt.Buffer, opt.Cbuffer = netlink.Xmittime(rate, burst), netlink.Xmittime(rate, burst)
	opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
	opts.AddRtAttr(nl.TCA_HTB_PARMS, opt.Serialize())
	_, err := c.do(unix.RTM_NEWTCLASS, unix.NLM_F_CREATE|unix.NLM_F_REPLACE,
		&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link, Handle: id, Parent: handle(Major, 0)},
		nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("htb")), opts)
	return err
}

// leaf gives class id its queue: fq_codel, OpenWrt's default (each flow
// its own queue, a few milliseconds of delay: a call or a message still
// gets through beside a video); where the kernel has none, a byte queue
// of a tenth of a second at the class's rate (a token bucket ten times
// as fast as the class, so that only its queue's bound counts: two
// shapers at one rate lost a tenth of it between them). HTB's own
// default, a FIFO of 1,000 packets, holds twelve seconds at 1 Mbit/s and
// let one download starve another. Made anew on each change: the kernel
// changes a qdisc in place only for its own kind.
func (c *Conn) leaf(link int32, class uint32, rate uint64) error {
	msg := func() *nl.TcMsg {
		return &nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: link, Handle: class << 16, Parent: class}
	}
	c.do(unix.RTM_DELQDISC, 0, msg())
	_, err := c.do(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg(), nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("fq_codel")))
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	burst := uint32(max(rate/50, 3028)) // 20 ms, two full frames at least
	var opt nl.TcTbfQopt
	opt.Rate.Rate, opt.Limit, opt.Buffer = uint32(10*rate), uint32(rate/10)+burst, netlink.Xmittime(10*rate, burst)
	opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
	opts.AddRtAttr(nl.TCA_TBF_PARMS, opt.Serialize())
	_, err = c.do(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg(), nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("tbf")), opts)
	return err
}
