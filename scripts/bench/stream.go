package main

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/lab"
)

// stream is the traffic every forwarding figure counts: one UDP flow of
// 64-byte frames from the lab child to the internet namespace, sent
// without pause from one thread pinned to one CPU. A veth hands a frame to
// its peer on the sending CPU, so the router's forwarding of each datagram
// runs there too, in the softirq right after the send: the stream's rate
// is what one CPU forwards.
//
// One flow runs through all the variants of a comparison, which are
// switched under it (a dormant table's hooks are unregistered), so that a
// variant is measured for a fraction of a second, many times over, in
// turn with the others: on a shared machine the rate drifts by ±10% from
// one second to the next, and only samples taken close together compare.
type stream struct {
	h    *netlink.Handle
	stop atomic.Bool
	done chan error
}

// startStream opens the flow, has it answered once (so that conntrack
// sees a conversation, established, as a real one would be; the responder
// then closes and the rest is one-way, costing the receiver nothing) and
// starts sending.
func startStream(l *lab.Lab, h *netlink.Handle) (*stream, error) {
	var pc net.PacketConn
	if err := l.In(l.Internet, func() error {
		var err error
		pc, err = net.ListenPacket("udp", net.JoinHostPort(lab.InternetV4, "9999"))
		return err
	}); err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 64)
		if _, from, err := pc.ReadFrom(buf); err == nil {
			pc.WriteTo([]byte("ok"), from)
		}
		pc.Close()
	}()
	c, err := l.Dial(l.Child.NS, "udp", net.JoinHostPort(lab.InternetV4, "9999"), time.Second)
	if err != nil {
		pc.Close()
		return nil, err
	}
	payload := make([]byte, 18) // 64-byte frames on the wire
	c.Write(payload)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 8)); err != nil {
		c.Close()
		return nil, fmt.Errorf("no answer to the first datagram: %w", err)
	}
	s := &stream{h: h, done: make(chan error, 1)}
	go func() {
		defer c.Close()
		// the thread ends with the goroutine, and its affinity with it
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(runtime.NumCPU() - 1)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			s.done <- fmt.Errorf("pin the sender: %w", err)
			return
		}
		for !s.stop.Load() {
			for i := 0; i < 256; i++ {
				c.Write(payload)
			}
		}
		s.done <- nil
	}()
	time.Sleep(100 * time.Millisecond)
	return s, nil
}

// sent is the router's WAN transmit counter: packets are counted where
// they leave the router, so the receiver's speed does not matter.
func (s *stream) sent() (uint64, error) {
	link, err := s.h.LinkByName("wan")
	if err != nil {
		return 0, err
	}
	return link.Attrs().Statistics.TxPackets, nil
}

// rate counts packets per second leaving the router over d.
func (s *stream) rate(d time.Duration) (float64, error) {
	before, err := s.sent()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	after, err := s.sent()
	elapsed := time.Since(t0)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / elapsed.Seconds(), nil
}

// close stops the sender and says whether it could run.
func (s *stream) close() error {
	s.stop.Store(true)
	return <-s.done
}

// settle is how long a switch of variants is given before counting, for
// the packets already in flight.
const settle = 20 * time.Millisecond

// compare measures variants on one stream: each round switches to each
// variant in turn (on switches it on and every other off), gives it a
// moment and counts it for d. Every other round runs the variants in
// reverse, so that a machine getting slower or faster over a round does
// not favour whichever comes first. rates[v][r] is variant v in round r.
func compare(l *lab.Lab, h *netlink.Handle, rounds int, d time.Duration, on []func() error) (rates [][]float64, err error) {
	s, err := startStream(l, h)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}()
	rates = make([][]float64, len(on))
	for r := 0; r < rounds; r++ {
		for k := range on {
			v := k
			if r%2 == 1 {
				v = len(on) - 1 - k
			}
			if err := on[v](); err != nil {
				return nil, err
			}
			time.Sleep(settle)
			x, err := s.rate(d)
			if err != nil {
				return nil, err
			}
			rates[v] = append(rates[v], x)
		}
	}
	return rates, nil
}

// tables switches the router's tables: awake ones awake, the other tables
// of all dormant, in one nft command (one transaction: the kernel refuses
// two switches of one table in one).
func tables(ctx context.Context, l *lab.Lab, awake []string, all ...string) error {
	var cmds []string
	for _, t := range all {
		if !slices.Contains(awake, t) {
			cmds = append(cmds, "add table inet "+t+" { flags dormant; }")
		}
	}
	for _, t := range awake {
		// a table added again without flags is awake
		cmds = append(cmds, "add table inet "+t)
	}
	if out, err := l.Exec(ctx, l.Router, "nft", strings.Join(cmds, "; ")); err != nil {
		return fmt.Errorf("switch tables: %v: %.300s", err, out)
	}
	return nil
}
