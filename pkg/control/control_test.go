package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string // "" = valid
	}{
		{"status", Request{V: 1, Method: MethodStatus}, ""},
		{"pause without a time", Request{V: 1, Method: MethodPause, Target: "alice"}, ""},
		{"pause with both", Request{V: 1, Method: MethodPause, Target: "alice", For: "1h", Until: "18:00"}, "not both"},
		{"allow needs a time", Request{V: 1, Method: MethodAllow, Target: "alice"}, "exactly one"},
		{"grant needs an amount", Request{V: 1, Method: MethodGrant, Target: "alice"}, "needs an amount"},
		{"explain needs a target", Request{V: 1, Method: MethodExplain, Target: "  "}, "needs a target"},
		{"old version", Request{V: 0, Method: MethodStatus}, "unsupported API version 0"},
		{"unknown method", Request{V: 1, Method: "format_disk"}, `unknown method "format_disk"`},
		{"huge target", Request{V: 1, Method: MethodPause, Target: strings.Repeat("a", 300)}, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func serve(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := func(ctx context.Context, req *Request) (any, error) {
		switch req.Target {
		case "boom":
			panic("handler bug")
		case "nobody":
			return nil, errors.New("no such target")
		}
		return map[string]string{"method": req.Method}, nil
	}
	go Serve(ctx, ln, h, slog.New(slog.DiscardHandler))
	return sock
}

func raw(t *testing.T, sock, payload string) Response {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(payload))
	c.(*net.UnixConn).CloseWrite()
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		t.Fatalf("no JSON answer to %.40q: %v", payload, err)
	}
	return resp
}

func TestGarbageGetsAnErrorAndTheServerLives(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test must run there")
		}
		t.Skip("the server only answers root; run as root")
	}
	sock := serve(t)
	for _, tc := range []struct{ payload, want string }{
		{"hello\n", "malformed request"},
		{`{"v":1,"method":"status","extra":1}` + "\n", "unknown field"},
		{`{"v":1,"method":"status"}{"v":1}` + "\n", "one JSON object"},
		{strings.Repeat("x", MaxRequest+10), "larger than"},
		{`{"v":1,"method":"pause","target":"boom"}` + "\n", "internal error"},
		{`{"v":1,"method":"pause","target":"nobody"}` + "\n", "no such target"},
	} {
		if resp := raw(t, sock, tc.payload); resp.OK || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%.40q: %+v, want error %q", tc.payload, resp, tc.want)
		}
	}
	var out map[string]string
	if err := Call(context.Background(), sock, Request{Method: MethodStatus}, &out); err != nil || out["method"] != "status" {
		t.Errorf("after the garbage: %v %v", out, err)
	}
	info, err := os.Stat(sock)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", info.Mode(), err)
	}
}

func TestCallSaysWhenTheDaemonIsNotRunning(t *testing.T) {
	err := Call(context.Background(), filepath.Join(t.TempDir(), "absent.sock"), Request{Method: MethodStatus}, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("err = %v, want ErrNotRunning", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"method":"pause","target":"alice","for":"30m"}`))
	f.Add([]byte(`{"v":1,"method":"grant","target":"aa:bb:cc:dd:ee:ff","amount":"1h"}`))
	f.Add([]byte(`{"v":1,"method":"status"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeBytes(data)
		if err != nil {
			return
		}
		if req.Validate() != nil {
			t.Fatalf("decoded an invalid request: %+v", req)
		}
	})
}
