package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The binary lives in a router's flash (often 16 MB in all): it carries no
// HTTP stack, TLS or template engine of its own — block lists and https
// notifications go through the router's own tools, the page and plain-HTTP
// notifications speak the little HTTP they need. Measured on mipsle, these
// packages would add about 7 MB.
func TestTheBinaryCarriesNoHTTPStack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch pkg {
		case "net/http", "crypto/tls", "html/template", "text/template":
			t.Errorf("curfew links %s", pkg)
		}
	}
}
