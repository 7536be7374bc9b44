// Package tz finds the router's local time zone the way OpenWrt sets it.
//
// LuCI writes two options into /etc/config/system: `zonename` (an IANA name
// such as Europe/London) and `timezone` (the POSIX TZ string that also lands
// in /etc/TZ, such as GMT0BST,M3.5.0/1,M10.5.0). Routers usually ship no
// zoneinfo database, and Go ignores a POSIX TZ string (it falls back to UTC),
// so the POSIX string is turned into a location of its own: it becomes the
// footer of a minimal TZif v2 blob with no transitions, which the standard
// library then evaluates for every instant, DST rules included.
//
// The IANA name is preferred when this machine has zoneinfo for it (it also
// knows past rule changes); otherwise the POSIX string rules. We do not embed
// time/tzdata: it would add about 450 kB to a binary that must fit router
// flash, and OpenWrt always writes the POSIX string next to the name.
package tz

import (
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"curfew/pkg/uci"
)

// Zone is the result of reading the system config.
type Zone struct {
	Loc *time.Location
	// Source says where Loc came from, for status output and logs.
	Source string
	// Warning says that the system config's zone was not what it seems to
	// mean and how it was read instead; empty when all is well.
	Warning string
	// Zonename and Timezone are what Resolve was given: another program
	// (the CLI, from the daemon's status) resolves them to the same Loc.
	Zonename, Timezone string
}

// FromSystemFile reads zonename and timezone from the first `system` section
// of an OpenWrt /etc/config/system file. A missing file means UTC, which is
// also what OpenWrt does without the file.
func FromSystemFile(path string) (Zone, error) {
	src, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return Zone{Loc: time.UTC, Source: "UTC (no " + path + ")"}, nil
	}
	if err != nil {
		return Zone{}, fmt.Errorf("read system config: %w", err)
	}
	f, err := uci.Parse(path, src)
	if err != nil {
		return Zone{}, err
	}
	var zonename, posix string
	for _, s := range f.Sections {
		if s.Type != "system" {
			continue
		}
		if o, ok := s.Get("zonename"); ok {
			zonename = o.Value
		}
		if o, ok := s.Get("timezone"); ok {
			posix = o.Value
		}
		break
	}
	return Resolve(path, zonename, posix)
}

// Resolve picks a location from an IANA name and a POSIX TZ string, either
// of which may be empty; where names the source in messages.
//
// The router's own C library (musl) never refuses a TZ string, and neither
// does this: curfew must keep time as the router does. A bare name without
// an offset ("UTC", as older releases and many scripts write) is that name
// at UTC+0, as musl reads it; an IANA name in `timezone` is looked up in
// zoneinfo; anything else is UTC with a warning, which is what musl falls
// back to.
func Resolve(where, zonename, posix string) (Zone, error) {
	z, err := resolve(where, zonename, posix)
	z.Zonename, z.Timezone = zonename, posix
	return z, err
}

func resolve(where, zonename, posix string) (Zone, error) {
	if zonename != "" && zonename != "UTC" {
		if loc, err := time.LoadLocation(zonename); err == nil {
			return Zone{Loc: loc, Source: "zonename " + zonename}, nil
		}
	}
	switch {
	case posix != "":
		if loc, err := POSIX(posix); err == nil {
			return Zone{Loc: loc, Source: "timezone " + posix}, nil
		}
		if bareName.MatchString(posix) {
			z := Zone{Loc: time.FixedZone(strings.Trim(posix, "<>"), 0), Source: "timezone " + posix + " (UTC+0)"}
			if !utcNames[strings.ToUpper(posix)] {
				z.Warning = fmt.Sprintf("%s: option timezone %q has no offset: read as UTC+0, as the router's C library reads it", where, posix)
			}
			return z, nil
		}
		if strings.Contains(posix, "/") {
			if loc, err := time.LoadLocation(strings.TrimPrefix(posix, ":")); err == nil {
				return Zone{Loc: loc, Source: "timezone " + posix + " (zoneinfo)"}, nil
			}
		}
		if m := stdPart.FindString(posix); m != "" {
			if loc, err := POSIX(m); err == nil {
				return Zone{Loc: loc, Source: "timezone " + m,
					Warning: fmt.Sprintf("%s: option timezone %q: only its standard time %q is understood (no daylight saving time)", where, posix, m)}, nil
			}
		}
		return Zone{Loc: time.UTC, Source: "UTC",
			Warning: fmt.Sprintf("%s: option timezone %q is not a time zone this router can read (want e.g. CET-1CEST,M3.5.0,M10.5.0/3): using UTC, as its C library does", where, posix)}, nil
	case zonename != "" && zonename != "UTC":
		return Zone{Loc: time.UTC, Source: "UTC",
			Warning: fmt.Sprintf("%s: option zonename %q: no zoneinfo for it on this system and no timezone string beside it: using UTC", where, zonename)}, nil
	}
	return Zone{Loc: time.UTC, Source: "UTC"}, nil
}

// bareName is a TZ string that is only a zone name, without an offset.
var bareName = regexp.MustCompile(`^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)$`)

// stdPart is the standard-time part at the start of a TZ string.
var stdPart = regexp.MustCompile(`^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)[+-]?\d{1,2}(?::\d{2}(?::\d{2})?)?`)

// utcNames are the bare names that mean UTC on purpose.
var utcNames = map[string]bool{"UTC": true, "GMT": true, "UCT": true, "UT": true, "ZULU": true}

// posixRE checks the shape of a POSIX TZ string: std name and offset, then
// optionally a dst name, offset and the two rules. Go's own evaluation of
// the footer is lenient (a malformed rule silently means "no DST"), so we
// refuse anything that does not have this shape instead of guessing.
var posixRE = regexp.MustCompile(
	`^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)` + // std name
		`[+-]?\d{1,2}(?::\d{2}(?::\d{2})?)?` + // std offset
		`(?:(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)` + // dst name
		`(?:[+-]?\d{1,2}(?::\d{2}(?::\d{2})?)?)?` + // dst offset
		`(?:,` + rule + `,` + rule + `)?)?$`)

const rule = `(?:M\d{1,2}\.\d\.\d|J\d{1,3}|\d{1,3})(?:/[+-]?\d{1,3}(?::\d{2}(?::\d{2})?)?)?`

// POSIX returns a location that follows the POSIX TZ string s.
func POSIX(s string) (*time.Location, error) {
	if !posixRE.MatchString(s) {
		return nil, fmt.Errorf("invalid POSIX time zone %q (want e.g. CET-1CEST,M3.5.0,M10.5.0/3)", s)
	}
	loc, err := time.LoadLocationFromTZData(s, tzif(s))
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", s, err)
	}
	return loc, nil
}

// tzif builds a TZif version 2 file with no transitions, one placeholder
// type and the POSIX string as its footer. RFC 8536 says the footer governs
// every instant after the last transition; with none, that is all of time.
func tzif(posix string) []byte {
	header := func(b []byte, typecnt, charcnt uint32) []byte {
		b = append(b, "TZif2"...)
		b = append(b, make([]byte, 15)...)
		// isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
		for _, n := range []uint32{0, 0, 0, 0, typecnt, charcnt} {
			b = binary.BigEndian.AppendUint32(b, n)
		}
		return b
	}
	body := func(b []byte) []byte {
		// One ttinfo: utoff 0, isdst 0, abbrind 0; then the abbreviation.
		b = append(b, 0, 0, 0, 0, 0, 0)
		return append(b, "LMT\x00"...)
	}
	var b []byte
	b = body(header(b, 1, 4)) // version 1 block
	b = body(header(b, 1, 4)) // version 2 block (64-bit times; none here)
	b = append(b, '\n')
	b = append(b, posix...)
	return append(b, '\n')
}
