package fwtest

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Window runs a scenario around an offline window that the kernel starts
// on its own: rules are applied with the window ahead, Before checks the
// state while it still lies ahead, and Inside checks it once it runs.
//
// Any fixed lead is a bet on how fast a machine is: a loaded 2-core CI
// runner (or a guest kernel under emulation) took longer than "now + 2 s"
// to apply rules and run the first check. So the window is placed relative
// to the moment the rules are in the kernel, and a check counts only if it
// finished inside its phase: a failure seen after the phase ended proves
// nothing, and the scenario runs again with the lead and the length
// doubled (the lead also gains what applying took). A failure seen in
// time fails the test.
type Window struct {
	// Lead and Length are the first try's: the window begins Lead after
	// the rules are in and lasts Length. Both double on each new try, and
	// the lead also gains what applying took.
	Lead, Length time.Duration
	// Grain is the kernel's resolution of a window's edges (xt_time:
	// whole seconds); the window's edges fall on it.
	Grain time.Duration
	// Lag says that the kernel's start of the window may come up to what
	// applying took after From: set elements' timeouts (nftables' online
	// set) count from the moment the kernel takes the batch, not from
	// when their deadline was computed. Inside checks then begin that
	// much later.
	Lag bool
	// Apply puts rules with the window [from, to) into the kernel.
	Apply func(from, to time.Time) error
	// Before checks what holds while the window lies ahead (may be nil).
	Before func() error
	// Inside checks what holds while it runs, from a little after its
	// start (may be nil).
	Inside func() error
}

// Unmeasurable marks a check's failure as the lab's, not the rules': the
// lab could not carry what the check needs in order to tell (a guest's
// emulated CPU starved by its host could not download faster than the
// limit it was to show). The scenario runs again, as after a late check.
type Unmeasurable struct{ Err error }

func (u Unmeasurable) Error() string { return "the lab could not measure it: " + u.Err.Error() }

// settle is how long after an edge the checks of the next phase begin: the
// kernel compares the edge to its own clock, read per packet.
const settle = 200 * time.Millisecond

// Run runs the scenario (up to five tries) and returns the window the
// checks passed in.
func (w Window) Run(t testing.TB) (from, to time.Time) {
	t.Helper()
	lead, length := w.Lead, w.Length
	for try := 1; ; try++ {
		began := time.Now()
		from, to = w.edges(began, lead, length)
		if err := w.Apply(from, to); err != nil {
			t.Fatal(err)
		}
		took := time.Since(began)
		late, err := w.phase(w.Before, from)
		if err == nil && !late {
			wait := time.Until(from) + settle
			if w.Lag {
				wait += took
			}
			time.Sleep(wait)
			late, err = w.phase(w.Inside, to)
		}
		var unmeasurable Unmeasurable
		lab := errors.As(err, &unmeasurable)
		switch {
		case err != nil && !late && !lab:
			t.Fatal(err)
		case err == nil && !late:
			return from, to
		case try == 5:
			t.Fatalf("the scenario's checks outlasted a window %v ahead and %v long, or the lab could not measure them, five times: %v", lead, length, err)
		case lab && !late:
			t.Logf("try %d: %v; again", try, err)
		default:
			t.Logf("try %d: the checks ended after their phase (lead %v, length %v; applying took %v), so they prove nothing: %v; again with more time", try, lead, length, took.Round(time.Millisecond), err)
		}
		// the rules take their time to go in before the lead runs
		lead, length = 2*lead+took, 2*length
	}
}

// phase runs check and says whether it finished after end (late), which
// makes its result meaningless.
func (w Window) phase(check func() error, end time.Time) (late bool, err error) {
	if check == nil {
		return false, nil
	}
	err = check()
	return !time.Now().Before(end), err
}

// edges places a window lead after now, its edges on the grain.
func (w Window) edges(now time.Time, lead, length time.Duration) (from, to time.Time) {
	from = now.Add(lead)
	if w.Grain > 0 {
		from = from.Truncate(w.Grain).Add(w.Grain)
		length = length.Truncate(w.Grain)
	}
	return from, from.Add(length)
}

// Checks gathers the failures of a phase's checks, so that one run reports
// all of them.
type Checks []error

// Expect records a failure unless ok.
func (c *Checks) Expect(ok bool, format string, args ...any) {
	if !ok {
		*c = append(*c, fmt.Errorf(format, args...))
	}
}

// Err is nil when every check held.
func (c Checks) Err() error { return errors.Join(c...) }
