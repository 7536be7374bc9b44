package main

import (
	"testing"
	"time"
)

// The demo's --bedtime is whole minutes (schedules are HH:MM): rounded up,
// as its help says, never down to nothing.
func TestBedtimeRoundsUpToWholeMinutes(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		90 * time.Second: 2 * time.Minute,
		time.Minute:      time.Minute,
		time.Second:      time.Minute,
		0:                time.Minute,
		61 * time.Second: 2 * time.Minute,
	} {
		if got := roundUp(in, time.Minute); got != want {
			t.Errorf("roundUp(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestCountdownSaysWhatComesNext(t *testing.T) {
	bed := time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC)
	wake := bed.Add(2 * time.Minute)
	for at, want := range map[time.Time]string{
		bed.Add(-35 * time.Second): "bedtime in 35 s",
		bed.Add(30 * time.Second):  "bedtime ends in 90 s",
		wake.Add(time.Second):      "bedtime is over",
	} {
		if got := countdown(at, bed, wake); got != want {
			t.Errorf("countdown at %v = %q, want %q", at, got, want)
		}
	}
}
