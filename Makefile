# curfew — parental controls in the router.
#
#   make demo    (root) the virtual home network: a child goes offline at bedtime
#   make test    (root for the kernel tests) lint, unit and end-to-end tests,
#                brief fuzzing, cross builds, the VM lab (make vmtest)
#   make cross   stripped binaries for the router architectures in dist/
#   make ipk     .ipk packages and opkg feeds (OpenWrt 24.10 and older) in dist/ipk
#   make apk     .apk packages and apk repositories (OpenWrt 25.12) in dist/apk
#   make stress  (root) the kernel tests 5 times beside a CPU hog: flake rates
#   make bench   (root) forwarding rate, apply times, DNS against dnsmasq (bench/)
#   make screenshots  (root) docs/screenshots: the LuCI pages in chromium

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X curfew/pkg/cli.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
# Router builds do not inline within curfew's own control-plane packages:
# 128 kB less text on mips (6,095,041 bytes instead of 6,291,649, over the
# 6 MB budget), at no measurable cost (go test ./pkg/firewall/nft -bench
# Render, with and without -gcflags='curfew/...=-l', side by side: 25.5
# and 25.8 ms). The DNS filter, which runs for every query, keeps the
# compiler's inlining (the last matching pattern wins). Neither do the
# libraries that only the control plane calls, never a packet or a DNS
# query: log/slog (14 kB; the daemon logs events, a line at a time), fmt
# (25 kB), vishvananda/netlink (18 kB: neighbours, ipsets, conntrack
# cuts), encoding/json (8 kB: the control API, state files) and regexp
# (5 kB: the CLI, zone names). Time per service (44 kB) fit beside them:
# BenchmarkPause at 1,000 and 5,000 devices, three interleaved runs with
# and without the last four, gave medians of 4.2 and 4.2 ms, 11.3 and 13.6
# ms, beside the VM lab's load: within the runs' spread (10.6-14.3 ms).
# A Wi-Fi key for each child (35 kB of code) took the file over a 64 kB
# step (the linker pads each segment to 64 kB on mips, and puts the section
# names after the last pad: 6,291,649 bytes). The rest of the libraries
# only the control plane calls give 18 kB of code back: google/nftables
# (the table, at each apply), mdlayher's netlink and coreos/go-iptables
# (apply, conntrack cuts), net/url (notify URLs, the page's form), os/exec,
# pflag with flag and encoding/csv, text/tabwriter, reflect (under
# encoding/json), log and unicode. That was not a step; net, time, strconv,
# context, syscall and x/sys without inlining are two (6,160,577 bytes).
# They are in the DNS filter's path, though only around its system calls:
# BenchmarkForward (a query through the filter to a loopback upstream and
# back, amd64), three interleaved runs each with and without them, gave
# 18.8 and 19.3 us a query: 3% more, on a path whose system calls set its
# pace.
ROUTER_GCFLAGS := -gcflags='curfew/...=-l' -gcflags='curfew/pkg/dnsfilter=' -gcflags='log/slog=-l' \
	-gcflags='fmt=-l' -gcflags='github.com/vishvananda/...=-l' -gcflags='encoding/json=-l' -gcflags='regexp/...=-l' \
	-gcflags='github.com/google/nftables/...=-l' -gcflags='github.com/mdlayher/...=-l' -gcflags='github.com/coreos/...=-l' \
	-gcflags='net/url=-l' -gcflags='os/exec=-l' -gcflags='github.com/spf13/pflag=-l' -gcflags='flag=-l' -gcflags='encoding/csv=-l' \
	-gcflags='text/tabwriter=-l' -gcflags='reflect=-l' -gcflags='log=-l' -gcflags='unicode=-l' \
	-gcflags='net=-l' -gcflags='time=-l' -gcflags='strconv=-l' -gcflags='context=-l' -gcflags='syscall=-l' -gcflags='golang.org/x/sys/...=-l'
# Fuzzing is bounded by executions, not by time: Go's coordinator can end
# a run bounded by time with a bare "context deadline exceeded" when the
# deadline races a worker (go.dev/issue/75804): a fresh-clone CI run failed
# so on FuzzMatchesLibuci twice in a row. 100,000 executions take about 2-3
# s here for the parsers; FuzzMatchesLibuci runs libuci on every input
# (about 270 a second), so it has 1,000. FUZZTIME=10m (a time) still works
# for a longer run by hand, with the risk above.
FUZZTIME ?=

# name:GOOS/GOARCH/extra-env
CROSS := mips:linux/mips/GOMIPS=softfloat \
         mipsle:linux/mipsle/GOMIPS=softfloat \
         armv7:linux/arm/GOARM=7 \
         arm64:linux/arm64/ \
         amd64:linux/amd64/

# package:FuzzTarget[:executions] (100000x unless said), run briefly by
# `make test` and for longer by `make fuzz FUZZTIME=10m`.
FUZZ := ./pkg/uci:FuzzParse ./pkg/uci:FuzzMatchesLibuci:1000x ./pkg/control:FuzzDecodeRequest ./pkg/dnsfilter:FuzzParseList ./pkg/dnsfilter:FuzzHandle ./pkg/devices:FuzzParseDnsmasq ./pkg/devices:FuzzParseOdhcpd \
        ./pkg/page:FuzzParseForm ./pkg/page:FuzzLanguage ./pkg/page:FuzzReadRequest ./pkg/config:FuzzParseRate ./pkg/wifi:FuzzParseEvent

.PHONY: all build test unit lint fuzz cross size ipk apk openwrt-tools vmtest stress screenshots demo bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/curfew ./cmd/curfew

test: lint cross ipk apk unit fuzz vmtest

unit:
	$(GO) test -count=1 -timeout 30m ./...

lint:
	@out=$$(gofmt -l cmd pkg e2e openwrt scripts); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Minimizing each new interesting input may take up to a minute by
# default, during which nothing else runs: in a 5 s run that was the whole
# run, so minimization is bounded to 200 runs. A real finding writes its
# failing input and fails at once.
fuzz:
	@set -e; for f in $(FUZZ); do \
		pkg=$${f%%:*}; rest=$${f#*:}; target=$${rest%%:*}; budget=100000x; \
		case $$rest in *:*) budget=$${rest#*:} ;; esac; \
		[ -z "$(FUZZTIME)" ] || budget=$(FUZZTIME); \
		echo "fuzz $$pkg $$target for $$budget"; \
		if ! out=$$($(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $$budget -fuzzminimizetime 200x $$pkg 2>&1); then \
			echo "$$out"; exit 1; \
		fi; \
		if echo "$$out" | grep -q 'no fuzz tests to fuzz'; then echo "$$pkg has no $$target"; exit 1; fi; \
		echo "$$out" | tail -2; \
	done

cross:
	@set -e; mkdir -p dist; for t in $(CROSS); do \
		name=$${t%%:*}; rest=$${t#*:}; os=$${rest%%/*}; rest=$${rest#*/}; arch=$${rest%%/*}; extra=$${rest#*/}; \
		env CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $$extra $(GO) build $(GOFLAGS_BUILD) $(ROUTER_GCFLAGS) -o dist/curfew-$$name ./cmd/curfew; \
		printf '%-8s %8d bytes\n' $$name $$(stat -c %s dist/curfew-$$name); \
	done

# Where the router binary's bytes go: the file against its budget, the
# code segment's room before the next 64 kB step, per package, largest
# symbols (built as `make cross` builds).
size:
	$(GO) run ./scripts/size -- $(ROUTER_GCFLAGS)

# OpenWrt's own programs (uci, rpcd, apk, opkg, …) built from their sources
# in ../shared/openwrt, for `make apk` and for the tests that meet the real
# thing. Built once per version of those sources (about a minute).
OPENWRT_SRC   ?= ../shared/openwrt
OPENWRT_TOOLS ?= /var/cache/curfew-openwrt
export OPENWRT_TOOLS
openwrt-tools:
	$(OPENWRT_SRC)/build.sh $(OPENWRT_TOOLS)

# The kernel-facing tests, 5 runs each, as CI runs them (packages at once)
# beside a busy thread on every core: each test's flake rate. A new
# kernel test is judged by it before it lands (root; about an hour).
stress:
	$(GO) run ./scripts/stress -count $(or $(COUNT),5)

# The kernel tests on the kernels routers run (5.10, 6.1, 6.12; amd64 and
# big-endian s390x) under QEMU: Debian's kernel packages and the guests'
# userland are downloaded once into VMLAB_CACHE, outside the repository.
# VMLAB_KERNELS=6.1 runs only the kernels whose name contains it.
VMLAB_CACHE ?= /var/cache/curfew-vm
export VMLAB_CACHE
vmtest:
	GO=$(GO) scripts/vmlab/vmlab.sh $(VMLAB_KERNELS)

# Installable packages (no OpenWrt SDK needed), one feed per architecture.
# PKG_VERSION is PKG_VERSION-rPKG_RELEASE of the feed Makefiles, a version
# both opkg and apk accept. APK_SIGN_KEY=FILE signs the apk repositories.
PKG_VERSION ?= 0.1.0-r1
ipk: cross
	./scripts/ipk.sh $(PKG_VERSION) dist/ipk

apk: cross openwrt-tools
	APK=$(OPENWRT_TOOLS)/bin/apk ./scripts/apk.sh $(PKG_VERSION) dist/apk

# Pictures of the LuCI pages (root; chromium and openwrt/browser's npm
# packages): taken by the browser test from the lab's sample config.
screenshots: openwrt-tools
	rm -rf docs/screenshots
	CURFEW_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run TestLuCIViewsInARealBrowser ./openwrt

demo: build
	$(GO) run ./scripts/demo --curfew bin/curfew

# Benchmarks (root): kernel enforcement in bench/REPORT.md, the DNS filter
# against dnsmasq in bench/DNS.md (needs dnsperf and dnsmasq).
bench: build
	$(GO) run ./scripts/bench --out bench/REPORT.md
	$(GO) run ./scripts/bench --e2e bin/curfew > bench/E2E.md
	CGO_ENABLED=0 $(GO) build -o bin/dnsbench ./scripts/dnsbench
	bin/dnsbench --out bench/DNS.md

clean:
	rm -rf bin dist
