package dnsfilter

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"strings"
)

// ListStats says what a list parse kept and what it skipped.
type ListStats struct {
	Entries  int
	Rejected int
	// FirstRejected is the line number of the first rejected line, for the
	// log line that names it.
	FirstRejected int
}

// ParseList reads a block list in any of the three common formats, line by
// line, and calls add for each domain:
//
//   - hosts files: "0.0.0.0 ads.example.com" (any address, several names);
//   - plain domains: "ads.example.com";
//   - adblock rules: "||ads.example.com^" (with optional $options, which are
//     ignored: at DNS level a rule blocks the whole name).
//
// Comments (#, !), blank lines and the [Adblock] header are skipped
// silently; anything else that is not a valid domain — cosmetic rules,
// exceptions (@@), paths, wildcards — is counted as rejected and skipped,
// never fatal. Hosts entries for localhost names are ignored.
func ParseList(r io.Reader, add func(domain string)) (ListStats, error) {
	var st ListStats
	line := 0
	reject := func() {
		st.Rejected++
		if st.FirstRejected == 0 {
			st.FirstRejected = line
		}
	}
	br := bufio.NewReaderSize(r, maxLineLen)
	for {
		raw, long, err := readLine(br)
		if err != nil {
			if err == io.EOF {
				return st, nil
			}
			return st, err
		}
		line++
		if long {
			reject()
			continue
		}
		s := strings.TrimSpace(string(raw))
		// A comment starts a line or follows a blank; "##" inside a word is
		// an adblock cosmetic rule, rejected below.
		if strings.HasPrefix(s, "#") {
			continue
		}
		if i := strings.Index(s, " #"); i >= 0 {
			s = strings.TrimSpace(s[:i])
		} else if i := strings.Index(s, "\t#"); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
		if s == "" || s[0] == '!' || (s[0] == '[' && s[len(s)-1] == ']') {
			continue
		}
		switch {
		case strings.HasPrefix(s, "||"):
			rule := s[2:]
			if i := strings.IndexByte(rule, '$'); i >= 0 {
				rule = rule[:i]
			}
			rule = strings.TrimSuffix(rule, "^")
			rule = strings.TrimSuffix(rule, "^|")
			if d, ok := Normalize(rule); ok {
				add(d)
				st.Entries++
			} else {
				reject()
			}
		default:
			fields := strings.Fields(s)
			if len(fields) >= 2 {
				if _, err := netip.ParseAddr(fields[0]); err == nil {
					for _, f := range fields[1:] {
						if isLocalName(f) {
							continue
						}
						if d, ok := Normalize(f); ok {
							add(d)
							st.Entries++
						} else {
							reject()
						}
					}
					continue
				}
			}
			if len(fields) == 1 {
				if d, ok := Normalize(fields[0]); ok {
					add(d)
					st.Entries++
					continue
				}
			}
			reject()
		}
	}
}

// maxLineLen bounds a list line: a domain is at most 253 bytes, a hosts
// line a few of them. Longer lines are counted as rejected and skipped,
// and cost no more memory than this.
const maxLineLen = 4096

// readLine returns the next line without its newline, or long when the
// line was longer than the reader's buffer (its rest is skipped). The
// last line may lack a newline.
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	line, err = br.ReadSlice('\n')
	for err == bufio.ErrBufferFull {
		long = true
		_, err = br.ReadSlice('\n')
	}
	if err == io.EOF && (len(line) > 0 || long) {
		err = nil
	}
	return bytes.TrimSuffix(line, []byte("\n")), long, err
}

func isLocalName(s string) bool {
	switch strings.ToLower(s) {
	case "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
		"ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0":
		return true
	}
	return false
}

// Normalize lower-cases a domain name, drops one trailing dot and checks it:
// at least two labels of letters, digits, '-' and '_', none empty or longer
// than 63 bytes, 253 bytes in all.
func Normalize(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 || !strings.Contains(s, ".") {
		return "", false
	}
	b := []byte(s)
	start := 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			n := i - start
			if n == 0 || n > 63 || b[start] == '-' || b[i-1] == '-' {
				return "", false
			}
			start = i + 1
			continue
		}
		c := b[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
	}
	return string(b), true
}
