// Package uci parses OpenWrt's UCI configuration files (/etc/config/*).
//
// No Go library for UCI is served, so this is curfew's own, written against
// the grammar that libuci's file parser accepts: `package`, `config TYPE
// [NAME]`, `option NAME VALUE` and `list NAME VALUE` statements, one per line;
// values are unquoted words, 'single-quoted' (literal, may span lines) or
// "double-quoted" (backslash escapes, may span lines), and adjacent pieces
// are concatenated ('a'"b"c is "abc"). A `#` at the start of a token begins a
// comment that runs to the end of the line.
//
// Every statement keeps its line so that callers can name the exact place of
// a problem; errors carry line and column.
package uci

import (
	"fmt"
	"strings"
)

// File is a parsed UCI file: its sections in file order.
type File struct {
	// Name is the file name used in error messages.
	Name     string
	Sections []*Section
}

// Section is one `config TYPE [NAME]` block.
type Section struct {
	Type string
	// Name is empty for an anonymous section.
	Name string
	Line int
	// Options are the section's `option` and `list` statements in file order;
	// a list appears once per `list` line.
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
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Get returns the value of the last `option NAME` in the section and whether
// it exists; libuci also lets a later option override an earlier one.
func (s *Section) Get(name string) (*Option, bool) {
	var found *Option
	for _, o := range s.Options {
		if o.Name == name {
			found = o
		}
	}
	return found, found != nil
}

// token is one word of a statement, quotes removed.
type token struct {
	text string
	line int
	col  int
}

// lexer splits the input into statements (slices of tokens); a statement ends
// at a newline outside quotes.
type lexer struct {
	name string
	src  string
	pos  int
	line int
	col  int
	// multi is where the first quoted value that ran over a line end began
	// (line 0: none). A missing closing quote shifts every quote after it,
	// so the rest of the file reads as values running over lines until
	// something breaks; the error is reported where the first such value
	// began.
	multi, multiCol, multiEnd int
}

func (l *lexer) errorf(line, col int, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if l.multi > 0 && l.multi < line {
		msg = fmt.Sprintf("a quoted value runs from line %d to line %d: is its closing quote missing? (then, at line %d: %s)", l.multi, l.multiEnd, line, msg)
		line, col = l.multi, l.multiCol
	}
	return &Error{File: l.name, Line: line, Col: col, Msg: msg}
}

// quoted notes a quoted piece that began at line, col and ended here.
func (l *lexer) quoted(line, col int) {
	if l.line > line && l.multi == 0 {
		l.multi, l.multiCol, l.multiEnd = line, col, l.line
	}
}

func (l *lexer) next() byte {
	c := l.src[l.pos]
	l.pos++
	if c == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return c
}

// statement returns the next non-empty statement, or nil at end of input.
func (l *lexer) statement() ([]token, error) {
	var toks []token
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.next()
			if len(toks) > 0 {
				return toks, nil
			}
		case c == ' ' || c == '\t' || c == '\r' || c == ';':
			// libuci treats ';' like a statement separator only in batch
			// mode; in files it is whitespace after a statement. We accept it
			// as whitespace, which is what every file seen in the wild needs.
			l.next()
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.next()
			}
		default:
			t, err := l.word()
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
		}
	}
	if len(toks) > 0 {
		return toks, nil
	}
	return nil, nil
}

// word reads one token made of adjacent unquoted and quoted pieces.
func (l *lexer) word() (token, error) {
	t := token{line: l.line, col: l.col}
	var b strings.Builder
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch c {
		case ' ', '\t', '\r', '\n', ';':
			t.text = b.String()
			return t, nil
		case '\'':
			line, col := l.line, l.col
			l.next()
			for {
				if l.pos >= len(l.src) {
					return t, l.errorf(line, col, "unterminated single-quoted string")
				}
				c := l.next()
				if c == '\'' {
					break
				}
				b.WriteByte(c)
			}
			l.quoted(line, col)
		case '"':
			line, col := l.line, l.col
			l.next()
			for {
				if l.pos >= len(l.src) {
					return t, l.errorf(line, col, "unterminated double-quoted string")
				}
				c := l.next()
				if c == '"' {
					l.quoted(line, col)
					break
				}
				if c == '\\' {
					if l.pos >= len(l.src) {
						return t, l.errorf(line, col, "unterminated double-quoted string")
					}
					c = l.next()
					if c == '\n' {
						continue // escaped newline joins lines
					}
				}
				b.WriteByte(c)
			}
		case '\\':
			l.next()
			if l.pos >= len(l.src) {
				return t, l.errorf(l.line, l.col, "backslash at end of file")
			}
			c := l.next()
			if c == '\n' {
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(l.next())
		}
	}
	t.text = b.String()
	return t, nil
}

// validName reports whether s is a UCI identifier: [A-Za-z0-9_]+.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Parse parses src; name is used in error messages. It stops at the first
// syntax error: past one, positions of what follows cannot be trusted.
func Parse(name string, src []byte) (*File, error) {
	l := &lexer{name: name, src: string(src), line: 1, col: 1}
	f := &File{Name: name}
	var cur *Section
	for {
		toks, err := l.statement()
		if err != nil {
			return nil, err
		}
		if toks == nil {
			return f, nil
		}
		kw := toks[0]
		switch kw.text {
		case "package":
			if len(toks) != 2 {
				return nil, l.errorf(kw.line, kw.col, "package wants one name")
			}
		case "config":
			if len(toks) < 2 || len(toks) > 3 {
				return nil, l.errorf(kw.line, kw.col, "config wants a type and an optional name")
			}
			if !validName(toks[1].text) {
				return nil, l.errorf(toks[1].line, toks[1].col, "invalid section type %q: use letters, digits and _", toks[1].text)
			}
			cur = &Section{Type: toks[1].text, Line: kw.line}
			if len(toks) == 3 {
				if !validName(toks[2].text) {
					return nil, l.errorf(toks[2].line, toks[2].col, "invalid section name %q: use letters, digits and _", toks[2].text)
				}
				cur.Name = toks[2].text
			}
			f.Sections = append(f.Sections, cur)
		case "option", "list":
			if cur == nil {
				return nil, l.errorf(kw.line, kw.col, "%s outside of a config section", kw.text)
			}
			if len(toks) != 3 {
				return nil, l.errorf(kw.line, kw.col, "%s wants a name and one value (quote values that contain spaces)", kw.text)
			}
			if !validName(toks[1].text) {
				return nil, l.errorf(toks[1].line, toks[1].col, "invalid option name %q: use letters, digits and _", toks[1].text)
			}
			cur.Options = append(cur.Options, &Option{
				Name:  toks[1].text,
				Value: toks[2].text,
				List:  kw.text == "list",
				Line:  kw.line,
				Col:   toks[2].col,
			})
		default:
			return nil, l.errorf(kw.line, kw.col, "unknown keyword %q: want config, option or list", kw.text)
		}
	}
}
