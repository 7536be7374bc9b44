package nft

import (
	"context"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// Try loads the table of rs into a network namespace made for the purpose,
// with its own bridges named like the LAN interfaces, and reports what the
// kernel said: whether this kernel takes curfew's rules, with nothing on
// the router changed (`curfew check --kernel`; root). The namespace goes
// with the thread that made it.
func Try(ctx context.Context, rs *firewall.Ruleset) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and the
		// scratch namespace with it.
		runtime.LockOSThread()
		errc <- try(ctx, rs)
	}()
	return <-errc
}

func try(ctx context.Context, rs *firewall.Ruleset) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("a scratch network namespace: %w", err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("a scratch network namespace: %w", err)
	}
	defer unix.Close(fd)
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, lan := range rs.LAN {
		// the table's fast path compares the LAN's interface index
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: lan}}); err != nil {
			if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: lan}}); err != nil {
				return fmt.Errorf("an interface %s in the scratch namespace: %w", lan, err)
			}
		}
	}
	b := New(Options{NetNSFd: fd, Netlink: h})
	err = b.Apply(ctx, rs)
	if b.nl != nil {
		b.nl.CloseLasting() //nolint:errcheck // the namespace is going
	}
	return err
}
