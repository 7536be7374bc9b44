package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The monitor reads the kernel's nftables events itself, from the raw
// netlink messages, instead of through google/nftables' monitor. That one
// decodes every event into objects and holds a whole transaction's worth
// before it says who made it: for our own table of 100,000 prefixes that
// was some 20 MB of garbage at start, for events we then skip. Here an
// event is its 16-byte header and, for a deletion, the table name; the
// rest is never looked at.
//
// For our own large batches the monitor leaves the kernel's event group
// altogether (mute): with no listener the kernel builds no notifications
// (100,000 of them cost it 0.4 s), and none can overflow the socket and
// look like lost events. What another process commits meanwhile is found
// by the ruleset's generation number, which every commit advances by one.

// muteAbove is the number of element changes from which an update is sent
// with the monitor muted; below it the monitor keeps listening and skips
// our own transaction by its thread id. Muting costs two generation
// queries; a refill of the online set with 1,000 devices (a bedtime
// that starts for many at once, a clock step) is 2,000 events the kernel
// would build and the monitor read.
const muteAbove = 256

// monitorBuffer is the monitor socket's receive buffer: room for the
// events of someone else's sizeable transaction (fw4's reload) while the
// monitor goroutine catches up.
const monitorBuffer = 1 << 20

// nftables event types (linux/netfilter/nf_tables.h), as the low byte of
// the netlink message type, with NFNL_SUBSYS_NFTABLES in the high byte.
const (
	msgDelTable     = 2
	msgDelChain     = 5
	msgDelRule      = 8
	msgDelSet       = 11
	msgNewGen       = 15
	msgGetGen       = 16
	msgDestroyTable = 26
	msgDestroyChain = 27
	msgDestroyRule  = 28
	msgDestroySet   = 29

	attrGenID      = 1 // NFTA_GEN_ID
	attrGenProcPID = 2 // NFTA_GEN_PROC_PID
	// Every deletion event names its table in attribute 1
	// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE).
	attrTable = 1
)

type monitor struct {
	c        *netlink.Conn
	netns    int
	onChange func()
}

// Watch calls onChange whenever another process deletes our table or
// anything in it; the caller then runs Resync. The kernel reports a
// transaction's changes and then the thread that made it, so our own
// replacements are told apart from someone else's `nft flush ruleset`.
// When the kernel drops events (the socket overflowed), Watch opens a new
// socket and reports a change, since a deletion may have been lost.
func (b *Backend) Watch(ctx context.Context, onChange func()) error {
	for ctx.Err() == nil {
		m, err := b.listen(onChange)
		if err != nil {
			return fmt.Errorf("nftables monitor: %w", err)
		}
		stop := context.AfterFunc(ctx, func() { m.c.Close() })
		err = m.read(b)
		stop()
		b.watching.CompareAndSwap(m, nil)
		m.c.Close()
		if ctx.Err() != nil {
			return nil
		}
		b.log.Debug("nftables monitor restarted", "err", err)
		b.tampered.Store(true)
		onChange()
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (b *Backend) listen(onChange func()) (*monitor, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: b.opts.NetNSFd})
	if err != nil {
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, monitorBuffer) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, monitorBuffer)
			}
		})
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, err
	}
	m := &monitor{c: c, netns: b.opts.NetNSFd, onChange: onChange}
	b.watching.Store(m)
	return m, nil
}

// read handles events until the socket fails or is closed.
func (m *monitor) read(b *Backend) error {
	// deleted: the transaction being reported so far deleted something
	// of ours; its generation message says whose it was.
	deleted := false
	for {
		msgs, err := m.c.Receive()
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
				continue
			}
			switch msg.Header.Type & 0xff {
			case msgNewGen:
				if deleted && !ours(genPID(msg.Data)) {
					b.tampered.Store(true)
					m.onChange()
				}
				deleted = false
			case msgDelTable, msgDelChain, msgDelRule, msgDelSet,
				msgDestroyTable, msgDestroyChain, msgDestroyRule, msgDestroySet:
				if ofOurTable(msg.Data) {
					deleted = true
				}
			}
		}
	}
}

// ofOurTable reports whether an event's body (nfgenmsg, then attributes)
// is about table inet curfew.
func ofOurTable(data []byte) bool {
	if len(data) < 4 || data[0] != unix.NFPROTO_INET {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return false
	}
	for ad.Next() {
		if ad.Type() == attrTable {
			return ad.String() == TableName
		}
	}
	return false
}

// genPID is the thread id in a generation message, 0 if it has none.
func genPID(data []byte) uint32 {
	if v, ok := genAttr(data, attrGenProcPID); ok {
		return v
	}
	return 0
}

func genAttr(data []byte, typ uint16) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == typ {
			return ad.Uint32(), ad.Err() == nil
		}
	}
	return 0, false
}

// ours reports whether the kernel thread id that made a change belongs to
// this process: the kernel reports the thread, and Go's netlink calls run on
// any of our threads.
func ours(tid uint32) bool {
	if tid == 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
	return err == nil
}

// mute takes the monitor out of the kernel's event group for one batch of
// ours; the function it returns puts it back, told whether the batch was
// committed. If any other commit happened in between — the generation
// moved by more than our own batch — it may have deleted part of our
// table unseen, and counts as tampering. Callers hold b.mu, so windows
// never overlap.
func (b *Backend) mute() func(committed bool) {
	m := b.watching.Load()
	if m == nil {
		return func(bool) {}
	}
	if err := m.c.LeaveGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return func(bool) {} // still listening: our events are skipped by thread id
	}
	before, err := generation(m.netns)
	if err != nil {
		// Without the generation the window could not be checked: listen
		// through it instead.
		if m.c.JoinGroup(unix.NFNLGRP_NFTABLES) != nil {
			m.c.Close()
		}
		return func(bool) {}
	}
	return func(committed bool) {
		joinErr := m.c.JoinGroup(unix.NFNLGRP_NFTABLES)
		after, errAfter := generation(m.netns)
		want := before
		if committed {
			want++
		}
		if err := errors.Join(joinErr, errAfter); err != nil || after != want {
			b.log.Debug("nftables: another commit while the monitor was muted", "before", before, "after", after, "err", err)
			if joinErr != nil {
				m.c.Close() // Watch starts over and reports a change
				return
			}
			b.tampered.Store(true)
			m.onChange()
		}
	}
}

// generation asks the kernel for the ruleset's generation number.
func generation(netns int) (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return 0, err
	}
	// Closed in the background: right after our commit the close waits
	// for the commit's grace period (see Backend.conn).
	defer func() { go c.Close() }() //nolint:errcheck // nothing is left to tell
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgGetGen), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, err
	}
	for _, msg := range msgs {
		if msg.Header.Type&0xff == msgNewGen {
			if id, ok := genAttr(msg.Data, attrGenID); ok {
				return id, nil
			}
		}
	}
	return 0, errors.New("no generation in the kernel's answer")
}
