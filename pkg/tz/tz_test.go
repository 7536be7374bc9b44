package tz

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPOSIXSwitchesAtTheRightInstant(t *testing.T) {
	tests := []struct {
		name    string
		posix   string
		switch_ time.Time // first instant with the new offset
		before  int       // offset in seconds just before
		after   int
	}{
		{"London spring forward", "GMT0BST,M3.5.0/1,M10.5.0", utc("2026-03-29T01:00:00Z"), 0, 3600},
		{"London fall back", "GMT0BST,M3.5.0/1,M10.5.0", utc("2026-10-25T01:00:00Z"), 3600, 0},
		{"New York spring forward", "EST5EDT,M3.2.0,M11.1.0", utc("2026-03-08T07:00:00Z"), -5 * 3600, -4 * 3600},
		{"New York fall back", "EST5EDT,M3.2.0,M11.1.0", utc("2026-11-01T06:00:00Z"), -4 * 3600, -5 * 3600},
		{"Sydney DST ends in April", "AEST-10AEDT,M10.1.0,M4.1.0/3", utc("2026-04-04T16:00:00Z"), 11 * 3600, 10 * 3600},
		{"Sydney DST starts in October", "AEST-10AEDT,M10.1.0,M4.1.0/3", utc("2026-10-03T16:00:00Z"), 10 * 3600, 11 * 3600},
		{"Berlin spring forward", "CET-1CEST,M3.5.0,M10.5.0/3", utc("2026-03-29T01:00:00Z"), 3600, 7200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := POSIX(tt.posix)
			if err != nil {
				t.Fatal(err)
			}
			if _, off := tt.switch_.Add(-time.Second).In(loc).Zone(); off != tt.before {
				t.Errorf("offset before = %d, want %d", off, tt.before)
			}
			if _, off := tt.switch_.In(loc).Zone(); off != tt.after {
				t.Errorf("offset after = %d, want %d", off, tt.after)
			}
		})
	}
}

func TestPOSIXWithoutDST(t *testing.T) {
	loc, err := POSIX("<+0530>-5:30")
	if err != nil {
		t.Fatal(err)
	}
	if _, off := utc("2026-07-01T00:00:00Z").In(loc).Zone(); off != 5*3600+1800 {
		t.Errorf("offset = %d", off)
	}
}

// TestPOSIXAgreesWithZoneinfo compares the POSIX string that OpenWrt writes
// for a zone with the IANA database, hour by hour over two years.
func TestPOSIXAgreesWithZoneinfo(t *testing.T) {
	pairs := map[string]string{
		"Europe/London":    "GMT0BST,M3.5.0/1,M10.5.0",
		"America/New_York": "EST5EDT,M3.2.0,M11.1.0",
		"Australia/Sydney": "AEST-10AEDT,M10.1.0,M4.1.0/3",
	}
	for name, posix := range pairs {
		want, err := time.LoadLocation(name)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("no zoneinfo in CI (tzdata is installed by .ci/run): %v", err)
			}
			t.Skipf("no zoneinfo on this machine: %v", err)
		}
		got, err := POSIX(posix)
		if err != nil {
			t.Fatal(err)
		}
		for at := utc("2026-01-01T00:00:00Z"); at.Year() < 2028; at = at.Add(time.Hour) {
			_, w := at.In(want).Zone()
			_, g := at.In(got).Zone()
			if w != g {
				t.Fatalf("%s at %v: posix offset %d, zoneinfo %d", name, at, g, w)
			}
		}
	}
}

func TestInvalidPOSIXIsRefused(t *testing.T) {
	for _, s := range []string{"", "Europe/London", "GMT0BST,M3.5.0", "X1", "CET-1CEST,M13"} {
		if _, err := POSIX(s); err == nil {
			t.Errorf("POSIX(%q) accepted", s)
		}
	}
}

func TestFromSystemFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "system")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("posix string alone", func(t *testing.T) {
		z, err := FromSystemFile(write("config system\n\toption hostname 'r'\n\toption timezone 'EST5EDT,M3.2.0,M11.1.0'\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, off := utc("2026-07-01T12:00:00Z").In(z.Loc).Zone(); off != -4*3600 {
			t.Errorf("offset %d, source %s", off, z.Source)
		}
	})
	t.Run("zonename preferred when zoneinfo exists", func(t *testing.T) {
		if _, err := time.LoadLocation("Europe/London"); err != nil {
			t.Skip("no zoneinfo")
		}
		z, err := FromSystemFile(write("config system\n\toption zonename 'Europe/London'\n\toption timezone 'GMT0BST,M3.5.0/1,M10.5.0'\n"))
		if err != nil {
			t.Fatal(err)
		}
		if z.Loc.String() != "Europe/London" {
			t.Errorf("loc = %s", z.Loc)
		}
	})
	t.Run("unknown zonename falls back to posix", func(t *testing.T) {
		z, err := FromSystemFile(write("config system\n\toption zonename 'Nowhere/Atlantis'\n\toption timezone 'CET-1CEST,M3.5.0,M10.5.0/3'\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(z.Source, "timezone") {
			t.Errorf("source = %s", z.Source)
		}
	})
	t.Run("what OpenWrt and scripts write is read as the router reads it", func(t *testing.T) {
		for tzs, want := range map[string]struct {
			offset  int
			warning bool
		}{
			"UTC":            {0, false}, // older releases, many scripts
			"GMT0":           {0, false},
			"UTC0":           {0, false}, // LuCI's UTC
			"<+03>-3":        {3 * 3600, false},
			"<-03>3":         {-3 * 3600, false},
			"IST-5:30":       {5*3600 + 1800, false},
			"CET":            {0, true}, // a name without offset: musl reads UTC+0
			"nonsense 1 2":   {0, true},
			"EST5EDT,M3.2.0": {-5 * 3600, true}, // one rule missing: standard time only
		} {
			z, err := FromSystemFile(write("config system\n\toption timezone '" + tzs + "'\n"))
			if err != nil {
				t.Errorf("%q: %v", tzs, err)
				continue
			}
			if _, off := utc("2026-01-15T12:00:00Z").In(z.Loc).Zone(); off != want.offset || (z.Warning != "") != want.warning {
				t.Errorf("%q: offset %d, warning %q (source %s)", tzs, off, z.Warning, z.Source)
			}
			if want.warning && !strings.Contains(z.Warning, "option timezone") {
				t.Errorf("%q: warning does not name the option: %q", tzs, z.Warning)
			}
		}
	})
	t.Run("missing file is UTC", func(t *testing.T) {
		z, err := FromSystemFile(filepath.Join(dir, "absent"))
		if err != nil || z.Loc != time.UTC {
			t.Errorf("z = %+v, err = %v", z, err)
		}
	})
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
