package fwtest

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatal ends only the scenario's goroutine.
type recorder struct {
	testing.TB
	fatal string
	logs  int
}

func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       { r.logs++ }
func (r *recorder) Fatal(args ...any)         { r.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...); runtime.Goexit() }

func (w Window) runIn(r *recorder) {
	done := make(chan struct{})
	go func() { defer close(done); w.Run(r) }()
	<-done
}

// A check's result counts only when it finished inside its phase: a
// failure in time fails, a failure after the phase ended (a slow machine)
// runs the scenario again with more time, and so does one the lab could
// not measure; the tries are bounded.
func TestWindowJudgesChecksByWhenTheyFinished(t *testing.T) {
	apply := func(from, to time.Time) error { return nil }
	wrong := errors.New("child offline before its window")
	for _, tc := range []struct {
		name string
		// lead is long where a check must finish in time (no stall of a
		// second on a loaded machine), short where it is made late
		lead      time.Duration
		before    func(try int, from time.Time) error
		wantFatal bool
		wantTries int
	}{
		{"in time and right: one try", time.Second, func(int, time.Time) error { return nil }, false, 1},
		{"in time and wrong: fails", time.Second, func(int, time.Time) error { return wrong }, true, 1},
		{"late twice, then in time: three tries", 250 * time.Millisecond, func(try int, from time.Time) error {
			if try <= 2 {
				time.Sleep(time.Until(from) + time.Millisecond)
				return wrong
			}
			return nil
		}, false, 3},
		{"the lab could not measure it once: two tries", time.Second, func(try int, from time.Time) error {
			if try == 1 {
				return Unmeasurable{wrong}
			}
			return nil
		}, false, 2},
		{"the lab never could: gives up after five", time.Second, func(int, time.Time) error { return Unmeasurable{wrong} }, true, 5},
		{"always late: gives up after five", 20 * time.Millisecond, func(_ int, from time.Time) error {
			time.Sleep(time.Until(from) + time.Millisecond)
			return nil
		}, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			r := &recorder{TB: t}
			var from time.Time
			Window{Lead: tc.lead, Length: time.Second,
				Apply:  func(f, to time.Time) error { from = f; tries++; return apply(f, to) },
				Before: func() error { return tc.before(tries, from) },
			}.runIn(r)
			if (r.fatal != "") != tc.wantFatal || tries != tc.wantTries {
				t.Errorf("fatal %q after %d tries; want fatal %v after %d", r.fatal, tries, tc.wantFatal, tc.wantTries)
			}
		})
	}
}
