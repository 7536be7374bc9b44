package nft

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"curfew/pkg/firewall"
)

// Try loads the table of rs into a network namespace made for the purpose
// and reports what the kernel said: whether this kernel takes curfew's
// rules, with nothing on the router changed (`curfew check --kernel`;
// root). The namespace goes with the thread that made it.
func Try(rs *firewall.Ruleset) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and the
		// scratch namespace with it.
		runtime.LockOSThread()
		errc <- try(rs)
	}()
	return <-errc
}

func try(rs *firewall.Ruleset) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("a scratch network namespace: %w", err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("a scratch network namespace: %w", err)
	}
	defer unix.Close(fd)
	// The LAN interfaces do not exist there: the fast path's interface
	// index compare gets the loopback's (1), a value like any other to the
	// kernel. (Creating bridges instead would link netlink's code for
	// every link type: 108 kB more on mipsle.)
	idx := map[string]uint32{}
	for _, lan := range rs.LAN {
		idx[lan] = 1
	}
	d, err := render(rs, &memo{}, time.Now(), idx)
	if err != nil {
		return err
	}
	b := New(Options{NetNSFd: fd})
	c, err := b.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting() //nolint:errcheck // the namespace is going
	return b.replace(c, d)
}
