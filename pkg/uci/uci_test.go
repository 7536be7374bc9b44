package uci

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAcceptsOpenWrtSyntax(t *testing.T) {
	src := `package curfew
# a comment line
config curfew 'main'
	option enabled '1'   # trailing comment
	list lan br-lan
	list lan "br-guest"

config profile alice
	option name 'Alice'"'s "pieces
	option note 'spans
two lines'
	option esc "a\"b\\c"
	option word un\ quoted

config device
	option mac 'AA:bb:cc:dd:ee:ff'
`
	f, err := Parse("curfew", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sections) != 3 {
		t.Fatalf("got %d sections, want 3", len(f.Sections))
	}
	main := f.Sections[0]
	if main.Type != "curfew" || main.Name != "main" || main.Line != 3 {
		t.Errorf("main section = %+v", main)
	}
	var lans []string
	for _, o := range main.Options {
		if o.Name == "lan" && o.List {
			lans = append(lans, o.Value)
		}
	}
	if strings.Join(lans, ",") != "br-lan,br-guest" {
		t.Errorf("lans = %v", lans)
	}
	p := f.Sections[1]
	want := map[string]string{
		"name": "Alice's pieces",
		"note": "spans\ntwo lines",
		"esc":  `a"b\c`,
		"word": "un quoted",
	}
	for k, v := range want {
		o, ok := p.Get(k)
		if !ok || o.Value != v {
			t.Errorf("option %s = %+v, want %q", k, o, v)
		}
	}
	if o, _ := p.Get("esc"); o.Line != 12 {
		t.Errorf("esc line = %d, want 12", o.Line)
	}
	if f.Sections[2].Name != "" {
		t.Errorf("anonymous section got name %q", f.Sections[2].Name)
	}
}

func TestParseErrorsNameLineAndColumn(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"option before any section", "option a b\n", "f:1:1: option outside of a config section"},
		{"unterminated single quote", "config a\n\toption b 'x\n", "f:2:11: unterminated single-quoted string"},
		{"unterminated double quote", "config a\n\toption b \"x\n", "f:2:11: unterminated double-quoted string"},
		{"bad section name", "config a 'b-c'\n", "f:1:10: invalid section name \"b-c\""},
		{"bad option name", "config a\n option b.c d\n", "f:2:9: invalid option name \"b.c\""},
		{"value with unquoted space", "config a\n option b c d\n", "f:2:13: option: too many arguments (quote values that contain spaces)"},
		{"unknown keyword", "config a\n\topton b c\n", "f:2:2: unknown keyword \"opton\""},
		{"config without type", "config\n", "f:1:1: config without arguments"},
		{"config with a space but no type", "config \n", "f:1:9: config: insufficient arguments"},
		{"second section of another type under the same name", "config a 'x'\nconfig b 'x'\n", "f:2:10: section \"x\" was declared with type \"a\" (line 1), now \"b\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f", []byte(tt.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %q, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestGetReturnsLastOption(t *testing.T) {
	f, err := Parse("f", []byte("config a\n option x 1\n option x 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := f.Sections[0].Get("x"); o.Value != "2" {
		t.Errorf("x = %q, want 2", o.Value)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("config a 'b'\n\toption c 'd'\n\tlist e \"f\\\"g\"\n"))
	f.Add([]byte("config a\n option b 'x\ny'z # c\n"))
	f.Add([]byte("package p\nconfig a\n list b c\\\nd\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse("fuzz", src)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 || e.Col < 1 {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		for _, s := range file.Sections {
			if !validType(s.Type) || (s.Name != "" && !validName(s.Name)) {
				t.Fatalf("accepted invalid section %q %q", s.Type, s.Name)
			}
			for _, o := range s.Options {
				if !validName(o.Name) || o.Line < s.Line {
					t.Fatalf("bad option %+v in section at line %d", o, s.Line)
				}
			}
		}
	})
}
