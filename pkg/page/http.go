package page

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The page speaks just enough HTTP/1.1 itself: one request per
// connection, a Content-Length body, no chunks, no keep-alive. Go's
// net/http (with the crypto/tls that comes with it) would add megabytes
// to a binary that lives in a router's flash, for a page of one form.

// request is one parsed HTTP request.
type request struct {
	method string
	// path is the target's path, without the query (an absolute-form
	// target's host is dropped).
	path string
	// header holds the first value of each field, by lower-case name.
	header map[string]string
	body   []byte
}

var (
	errTooLarge = errors.New("request too large")
	errBad      = errors.New("malformed request")
)

// maxFields bounds a request's header fields.
const maxFields = 64

// readRequest reads one request from br: at most MaxHeader bytes of
// request line and header, at most MaxBody of body.
func readRequest(br *bufio.Reader) (*request, error) {
	used := 0
	line := func() (string, error) {
		var b []byte
		for {
			chunk, err := br.ReadSlice('\n')
			used += len(chunk)
			if used > MaxHeader {
				return "", errTooLarge
			}
			b = append(b, chunk...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				return "", errBad
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}
	first, err := line()
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(first, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !strings.HasPrefix(proto, "HTTP/1.") || !token(method) {
		return nil, errBad
	}
	r := &request{method: method, header: map[string]string{}}
	if i := strings.Index(target, "://"); i > 0 {
		// absolute form (a proxy's): keep the path
		target = target[i+3:]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j:]
		} else {
			target = "/"
		}
	}
	r.path, _, _ = strings.Cut(target, "?")
	for n := 0; ; n++ {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		if n == maxFields {
			return nil, errTooLarge
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !token(name) {
			return nil, errBad
		}
		name = strings.ToLower(name)
		if _, seen := r.header[name]; !seen {
			r.header[name] = strings.TrimSpace(value)
		}
	}
	if te := r.header["transfer-encoding"]; te != "" {
		return nil, errBad // a form's post has a length
	}
	if cl := r.header["content-length"]; cl != "" {
		n, err := strconv.Atoi(cl)
		switch {
		case err != nil || n < 0:
			return nil, errBad
		case n > MaxBody:
			return nil, errTooLarge
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return nil, errBad
		}
	}
	return r, nil
}

// token reports whether s is an HTTP token (a method, a field name).
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// response is what the page answers.
type response struct {
	status int
	header [][2]string
	body   []byte
}

var statusText = map[int]string{200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden",
	405: "Method Not Allowed", 413: "Content Too Large"}

// write sends the response, without its body for HEAD.
func (r *response) write(w io.Writer, head bool) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", r.status, statusText[r.status])
	for _, h := range r.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(r.body))
	if !head {
		b.Write(r.body)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func plain(status int, text string) *response {
	return &response{status: status, header: [][2]string{{"Content-Type", "text/plain; charset=utf-8"}}, body: []byte(text + "\n")}
}
