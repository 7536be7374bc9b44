// Package uci parses OpenWrt's UCI configuration files (/etc/config/*).
//
// No Go library for UCI is served, so this is curfew's own. A config file is
// shared with LuCI, the init scripts and every other tool of the router, and
// they all read it through libuci: a file libuci accepts must read here as it
// reads there, and a file it refuses must be refused. So this parser follows
// libuci's file parser step by step (file.c of openwrt/uci, the version in
// ../shared/openwrt): it reads a line into a buffer, takes the keyword with
// strtok's rules, decodes each argument in place (quotes removed, a `#`
// ends the line, a `;` ends the command), appends the next line to the
// buffer where a quote or a trailing backslash continues, and applies
// libuci's strict-mode checks and semantics — an `option` with an empty
// value sets nothing, a second `config TYPE NAME` continues the first,
// `list` after `option` turns it into a list and `option` after `list`
// replaces it. Its quirks are kept too: after an unquoted word ended by `;`
// the rest of the line is ignored, as libuci ignores it. A differential test
// holds this against the real `uci show` on a corpus and under fuzzing.
//
// Every statement keeps its line so that callers can name the exact place of
// a problem; errors carry line and column.
package uci

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// File is a parsed UCI file: its sections in file order.
type File struct {
	// Name is the file name used in error messages.
	Name     string
	Sections []*Section
	// Packages lists the names given by `package` statements, in order.
	Packages []string
	// NULLines are the lines with a NUL byte; libuci ignores the rest of
	// such a line (a damaged file), and so does this parser.
	NULLines []int
}

// Section is one `config TYPE [NAME]` block; a later block with the same
// name continues it, as in libuci.
type Section struct {
	Type string
	// Name is empty for an anonymous section.
	Name string
	Line int
	// Options are the section's `option` and `list` statements in file order
	// (an `option` with an empty value is none: libuci ignores it); a list
	// appears once per `list` line. Resolved gives libuci's view of them.
	Options []*Option
}

// Option is one `option` or `list` statement.
type Option struct {
	Name  string
	Value string
	// List is true for a `list` statement.
	List bool
	Line int
	Col  int
}

// Error is a syntax error at a position in a file.
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, Clip(e.Msg))
}

// Clip shortens a message, which may quote a word of a file, to 300 bytes
// on a rune boundary, with "…" where it was cut: a 50 MB line must not
// come back whole in an error.
func Clip(msg string) string {
	const limit = 300
	if len(msg) <= limit {
		return msg
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

// Get returns the last `option` or `list` statement NAME in the section and
// whether there is one; libuci also lets a later option override an earlier
// one.
func (s *Section) Get(name string) (*Option, bool) {
	var found *Option
	for _, o := range s.Options {
		if o.Name == name {
			found = o
		}
	}
	return found, found != nil
}

// Resolved is one option as libuci holds it after reading the file: a plain
// value, or a list of values.
type Resolved struct {
	Name   string
	List   bool
	Values []string
}

// Resolved applies the section's statements as libuci does: an option keeps
// the place where its name first appeared; `option` replaces whatever was
// there (a list too) and `list` appends, turning a plain value into the
// first item of a list.
func (s *Section) Resolved() []Resolved {
	var out []Resolved
	at := map[string]int{}
	for _, o := range s.Options {
		i, ok := at[o.Name]
		switch {
		case !ok:
			at[o.Name] = len(out)
			out = append(out, Resolved{Name: o.Name, List: o.List, Values: []string{o.Value}})
		case o.List:
			out[i].List = true
			out[i].Values = append(out[i].Values, o.Value)
		default:
			out[i] = Resolved{Name: o.Name, Values: []string{o.Value}}
		}
	}
	return out
}

// validName reports whether s is a UCI identifier (section and option
// names): [A-Za-z0-9_]+.
func validName(s string) bool { return every(s, nameByte) }

// validType reports whether s can be a section type: libuci takes any
// printable ASCII but space (so "other-type" is a type, as other packages
// use).
func validType(s string) bool { return every(s, func(c byte) bool { return c >= 33 && c <= 126 }) }

// validPackage is a package name: identifier characters and '-'.
func validPackage(s string) bool {
	return every(s, func(c byte) bool { return c == '-' || nameByte(c) })
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// every reports whether s is not empty and ok holds for each of its bytes.
func every(s string, ok func(byte) bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// parser holds libuci's parse state: a buffer of one or more physical lines
// that is decoded in place, with a NUL after the last valid byte (filled).
type parser struct {
	name   string
	src    []byte
	in     int // next unread byte of src
	buf    []byte
	line   []int // physical line of each buffer byte as read
	col    []int
	filled int
	pos    int
	lines  int // the last line read from
	bufsz  int // the size of libuci's line buffer, which decides its reads
	// the position lineAt last computed: byte at0 is at atLine, atCol
	at0, atLine, atCol int

	f      *File
	sec    *Section // the section that option and list statements go to
	byName map[string]*Section
	// first quoted value that ran over a line end: a missing closing
	// quote shifts every quote after it, so an error found later is
	// reported there, with a hint.
	multi, multiCol, multiEnd int
}

// fail is a syntax error at buffer index i.
type fail struct{ err *Error }

func (p *parser) errorAt(i int, format string, args ...any) {
	line, col := p.lines, 1
	if i < len(p.line) && i < p.filled {
		line, col = p.line[i], p.col[i]
	} else if p.filled > 0 {
		line, col = p.line[p.filled-1], p.col[p.filled-1]+1
	}
	if line < 1 {
		line = 1
	}
	msg := fmt.Sprintf(format, args...)
	if p.multi > 0 && p.multi < line {
		msg = fmt.Sprintf("a quoted value runs from line %d to line %d: is its closing quote missing? (then, at line %d: %s)", p.multi, p.multiEnd, line, msg)
		line, col = p.multi, p.multiCol
	}
	panic(fail{&Error{File: p.name, Line: line, Col: col, Msg: msg}})
}

// getln reads the next line into the buffer at offset, replacing whatever
// followed offset (libuci's uci_getln). libuci reads with fgets into a
// buffer that starts at 32 bytes and doubles, and keeps what strlen sees:
// a NUL byte drops the rest of what that fgets call read, and the next read
// is appended in its place; a read that begins with a NUL adds nothing and
// ends the line. Without NUL bytes this is simply the next line.
func (p *parser) getln(offset int) {
	p.buf, p.line, p.col = p.buf[:offset], p.line[:offset], p.col[:offset]
	if offset >= p.bufsz-1 {
		p.bufsz *= 2
	}
	for ofs := offset; p.in < len(p.src); p.bufsz *= 2 {
		room := p.bufsz - ofs - 1 // fgets reads at most size-1 bytes
		if room < 1 {
			break
		}
		end := p.in + room
		if end > len(p.src) {
			end = len(p.src)
		}
		if nl := bytes.IndexByte(p.src[p.in:end], '\n'); nl >= 0 {
			end = p.in + nl + 1
		}
		chunk := p.src[p.in:end]
		start := p.in
		p.in = end
		if nul := bytes.IndexByte(chunk, 0); nul >= 0 {
			line, _ := p.lineAt(start + nul)
			if n := len(p.f.NULLines); n == 0 || p.f.NULLines[n-1] != line {
				p.f.NULLines = append(p.f.NULLines, line)
			}
			chunk = chunk[:nul]
		}
		if len(chunk) == 0 {
			break
		}
		for i, c := range chunk {
			p.buf = append(p.buf, c)
			line, col := p.lineAt(start + i)
			p.line = append(p.line, line)
			p.col = append(p.col, col)
		}
		ofs += len(chunk)
		if chunk[len(chunk)-1] == '\n' {
			break
		}
	}
	p.filled = len(p.buf)
	p.buf = append(p.buf, 0) // the NUL after the valid bytes
	if n := len(p.line); n > 0 && p.line[n-1] > p.lines {
		p.lines = p.line[n-1]
	}
}

// lineAt is the line and column of byte i of the source; reads only move
// forward, so it keeps its place.
func (p *parser) lineAt(i int) (int, int) {
	for p.at0 < i {
		if p.src[p.at0] == '\n' {
			p.atLine++
			p.atCol = 1
		} else {
			p.atCol++
		}
		p.at0++
	}
	return p.atLine, p.atCol
}

func (p *parser) cur() byte { return p.buf[p.pos] }

// at is the byte at i, NUL past the buffer.
func (p *parser) at(i int) byte {
	if i >= len(p.buf) {
		return 0
	}
	return p.buf[i]
}

// cstr is the NUL-terminated string at i.
func (p *parser) cstr(i int) string {
	end := bytes.IndexByte(p.buf[i:], 0)
	return string(p.buf[i : i+end])
}

func (p *parser) skipSpace() {
	for c := p.cur(); c != 0 && isSpace(c); c = p.cur() {
		p.pos++
	}
}

func (p *parser) addc(target *int) {
	p.buf[*target] = p.buf[p.pos]
	*target++
	p.pos++
}

// backslash consumes a backslash; a backslash at the end of a line joins
// the next line (false: nothing to add), any other escaped byte stands for
// itself (true).
func (p *parser) backslash() bool {
	p.pos++
	c := p.cur()
	if c == 0 || c == '\n' || (c == '\r' && p.at(p.pos+1) == '\n' && p.at(p.pos+2) == 0) {
		p.getln(p.pos)
		return false
	}
	return true
}

func (p *parser) quoted(startLine, startCol int) {
	if p.lines > startLine && p.multi == 0 {
		p.multi, p.multiCol, p.multiEnd = startLine, startCol, p.lines
	}
}

func (p *parser) singleQuote(target *int) {
	start := p.pos
	line, col := p.line[start], p.col[start]
	p.pos++
	for {
		switch p.cur() {
		case '\'':
			p.pos++
			p.quoted(line, col)
			return
		case 0:
			p.getln(p.pos)
			if p.cur() == 0 {
				p.errorAt(start, "unterminated single-quoted string")
			}
		default:
			p.addc(target)
		}
	}
}

func (p *parser) doubleQuote(target *int) {
	start := p.pos
	line, col := p.line[start], p.col[start]
	p.pos++
	for {
		switch p.cur() {
		case '"':
			p.pos++
			p.quoted(line, col)
			return
		case 0:
			p.getln(p.pos)
			if p.cur() == 0 {
				p.errorAt(start, "unterminated double-quoted string")
			}
		case '\\':
			if p.backslash() {
				p.addc(target)
			}
		default:
			p.addc(target)
		}
	}
}

// str decodes one argument in place at target: adjacent unquoted, quoted
// and escaped pieces up to whitespace, a `;` or a `#`.
func (p *parser) str(target *int) {
	next := true
loop:
	for {
		switch p.cur() {
		case '\'':
			p.singleQuote(target)
		case '"':
			p.doubleQuote(target)
		case '#':
			p.buf[p.pos] = 0 // the rest of the line is a comment
			break loop
		case 0:
			break loop
		case ';':
			next = false
			break loop
		case '\\':
			if p.backslash() {
				p.addc(target)
			}
		default:
			p.addc(target)
		}
		if c := p.cur(); c == 0 || isSpace(c) {
			break
		}
	}
	if p.cur() != 0 && next {
		p.pos++
	}
	p.buf[*target] = 0
}

// arg is the next argument: its text and the buffer index where it began.
func (p *parser) arg(required bool, what string) (string, int) {
	p.skipSpace()
	val := p.pos
	target := p.pos
	if p.cur() == ';' {
		p.buf[p.pos] = 0
		p.pos++
	} else {
		p.str(&target)
	}
	s := p.cstr(val)
	if s == "" && required {
		p.errorAt(val, "%s: insufficient arguments", what)
	}
	return s, val
}

// endOfCommand refuses anything after a command's arguments (libuci's
// strict mode, which every reader of /etc/config uses).
func (p *parser) endOfCommand(what string) {
	p.skipSpace()
	if extra, at := p.arg(false, what); extra != "" {
		p.errorAt(at, "%s: too many arguments (quote values that contain spaces)", what)
	}
}

// command runs the commands of the buffer, separated by `;`.
func (p *parser) command() {
	p.skipSpace()
	for {
		// the keyword, by strtok's rules: delimited by space or tab
		i := p.pos
		for c := p.buf[i]; c == ' ' || c == '\t'; c = p.buf[i] {
			i++
		}
		if p.buf[i] == 0 {
			return
		}
		j := i
		for c := p.buf[j]; c != 0 && c != ' ' && c != '\t'; c = p.buf[j] {
			j++
		}
		word := string(p.buf[i:j])
		line, col := p.line[i], p.col[i]
		p.buf[j] = 0
		if word[0] == '#' {
			return
		}
		kw := ""
		switch word {
		case "p", "package":
			kw = "package"
		case "c", "config":
			kw = "config"
		case "o", "option":
			kw = "option"
		case "l", "list":
			kw = "list"
		default:
			if k := strings.TrimRight(word, "\r\n\v\f"); k != word && (k == "config" || k == "option" || k == "list" || k == "package") {
				p.errorAt(i, "%s without arguments", k)
			}
			p.errorAt(i, "unknown keyword %q: want config, option or list", word)
		}
		if j >= p.filled {
			p.errorAt(i, "%s without arguments", kw)
		}
		p.pos = j + 1
		switch kw {
		case "package":
			p.packageCommand()
		case "config":
			p.configCommand(line)
		case "option", "list":
			p.optionCommand(kw, i, line, col)
		}
	}
}

// packageCommand reads `package NAME`.
func (p *parser) packageCommand() {
	name, at := p.arg(true, "package")
	if !validPackage(name) {
		p.errorAt(at, "invalid package name %q", name)
	}
	p.endOfCommand("package")
	p.f.Packages = append(p.f.Packages, name)
}

// configCommand reads `config TYPE [NAME]`, which starts a section or, for
// a name declared before, goes back to it.
func (p *parser) configCommand(line int) {
	typ, at := p.arg(true, "config")
	if !validType(typ) {
		p.errorAt(at, "invalid section type %q: use printable characters without spaces", typ)
	}
	name, at := p.arg(false, "config")
	if name != "" && !validName(name) {
		p.errorAt(at, "invalid section name %q: use letters, digits and _", name)
	}
	p.endOfCommand("config")
	if s := p.byName[name]; name != "" && s != nil {
		if s.Type != typ {
			p.errorAt(at, "section %q was declared with type %q (line %d), now %q", name, s.Type, s.Line, typ)
		}
		p.sec = s
		return
	}
	p.sec = &Section{Type: typ, Name: name, Line: line}
	p.f.Sections = append(p.f.Sections, p.sec)
	if name != "" {
		p.byName[name] = p.sec
	}
}

// optionCommand reads `option NAME VALUE` or `list NAME VALUE` (kw) of
// the current section; at is where the keyword starts.
func (p *parser) optionCommand(kw string, at, line, col int) {
	if p.sec == nil {
		p.errorAt(at, "%s outside of a config section", kw)
	}
	name, nat := p.arg(true, kw)
	if !validName(name) {
		p.errorAt(nat, "invalid option name %q: use letters, digits and _", name)
	}
	value, vat := p.arg(false, kw)
	p.endOfCommand(kw)
	if value == "" && kw == "option" {
		return // libuci sets nothing for an empty value
	}
	vcol := col
	if vat < p.filled {
		vcol = p.col[vat]
	}
	p.sec.Options = append(p.sec.Options, &Option{Name: name, Value: value, List: kw == "list", Line: line, Col: vcol})
}

// Parse parses src; name is used in error messages. It stops at the first
// syntax error, as libuci does in strict mode: past one, positions of what
// follows cannot be trusted.
func Parse(name string, src []byte) (f *File, err error) {
	p := &parser{name: name, src: src, f: &File{Name: name}, byName: map[string]*Section{},
		bufsz: 32, atLine: 1, atCol: 1}
	defer func() {
		if r := recover(); r != nil {
			fl, ok := r.(fail)
			if !ok {
				panic(r)
			}
			f, err = nil, fl.err
		}
	}()
	for p.in < len(p.src) {
		p.pos = 0
		p.getln(0)
		if p.buf[0] != 0 {
			p.command()
		}
	}
	return p.f, nil
}
