#!/bin/bash
# vmlab.sh: curfew's kernel tests on the kernels routers run, under QEMU.
#
# Our machines run a far newer Linux than routers do, and the most common
# cheap routers are big-endian. This boots Debian's own kernels (5.10, 6.1
# and 6.12 on amd64; 6.1 and 6.12 on s390x, big-endian, the stand-in for
# mips_24kc) with an initramfs of busybox, Debian's nft/ip/iptables/
# conntrack/dnsmasq/dig of the guest's architecture, the kernel's network
# modules, and curfew's own tests cross-compiled, and runs those tests
# inside: both backends' scenarios with real packets in namespaces, and the
# daemon end to end. No KVM here: QEMU's TCG emulates the CPU.
#
# Usage: scripts/vmlab/vmlab.sh [KERNEL-PATTERN]   (root not needed)
#   VMLAB_CACHE   downloads and unpacked kernels/userland (kept between runs)
#   VMLAB_SHARED  the shared folder with vm/fetch-kernels.sh (../shared)
#   VMLAB_OUT     images and console logs (bin/vmlab)
#   VMLAB_SUITES  which suites run in each guest, a line each: "name dir
#                 command" (default: all, see suites below)
#   VMLAB_KEEP_TESTS, VMLAB_KEEP_IMAGE  reuse the built tests, keep the
#                 initramfs; VMLAB_APPEND  the kernel's command line;
#                 VMLAB_TIMEOUT  seconds a guest may run (2400)
# Exit status: 0 when every suite passed on every kernel.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${VMLAB_CACHE:-/var/cache/curfew-vm}
SHARED=${VMLAB_SHARED:-../shared}
OUT=${VMLAB_OUT:-$PWD/bin/vmlab}
PATTERN=${1:-}
GO=${GO:-go}
mkdir -p "$CACHE" "$OUT"

log() { printf '%s vmlab: %s\n' "$(date +%T)" "$*" >&2; }

# --- downloads: kernels and busybox (shared script), userland of each arch.
"$SHARED/vm/fetch-kernels.sh" "$CACHE" >/dev/null

# The guest's userland: Debian bookworm's packages of the guest's
# architecture, resolved by apt against an empty package database (so it
# brings every library they need) and unpacked without running anything.
# Private apt state: the machine's own sources are never touched.
USERLAND_PKGS="iproute2 nftables iptables conntrack dnsmasq-base bind9-dnsutils util-linux hostapd wpasupplicant iw"
userland() { # userland ARCH -> prints the unpacked root
	local arch=$1 dir=$CACHE/userland-$arch
	local stamp="bookworm $USERLAND_PKGS"
	if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then echo "$dir/root"; return; fi
	log "userland for $arch: $USERLAND_PKGS"
	rm -rf "$dir"; mkdir -p "$dir/st/lists/partial" "$dir/debs/partial" "$dir/root" "$dir/parts"
	: >"$dir/st/status"
	echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" >"$dir/sources.list"
	local o=(-o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts="$dir/parts" -o Dir::Etc::preferencesparts="$dir/parts"
		-o Dir::State="$dir/st" -o Dir::State::Lists="$dir/st/lists" -o Dir::State::status="$dir/st/status"
		-o Dir::Cache="$dir/cache" -o Dir::Cache::archives="$dir/debs" -o Debug::NoLocking=1
		-o APT::Architecture="$arch" -o APT::Architectures::="$arch" -o APT::Install-Recommends=0)
	apt-get "${o[@]}" update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get "${o[@]}" install -y -qq --download-only $USERLAND_PKGS >/dev/null
	for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
	rm -rf "$dir"/root/usr/share/{doc,man,info,locale,lintian,zoneinfo} "$dir"/root/usr/lib/*/gconv "$dir"/debs "$dir"/cache
	echo "$stamp" >"$dir/.stamp"
	echo "$dir/root"
}

# QEMU for the s390x guests: bookworm-backports' (10.0). Bookworm's 7.2
# emulates the vector instructions of Debian 6.12's checksum code wrongly:
# every ICMP and ICMPv6 checksum fails in the guest (InCsumErrors), so IPv6
# neighbour discovery fails between two bare namespaces, with no curfew
# rules at all; 10.0 gets them right. (Without the vector facility the
# checksums are right on 7.2 too, but Go needs it on s390x.) Fetched with
# a private apt state against the machine's installed packages, unpacked
# into the cache; the machine's QEMU and apt sources stay as they are.
qemu_s390x() { # prints the command that runs it
	local dir=$CACHE/qemu-s390x stamp="bookworm-backports qemu-system-s390x"
	if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
		log "QEMU for s390x from bookworm-backports"
		rm -rf "$dir"; mkdir -p "$dir/st/lists/partial" "$dir/debs/partial" "$dir/root" "$dir/parts"
		echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" >"$dir/sources.list"
		local o=(-o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts="$dir/parts" -o Dir::Etc::preferencesparts="$dir/parts"
			-o Dir::State="$dir/st" -o Dir::State::Lists="$dir/st/lists" -o Dir::State::status=/var/lib/dpkg/status
			-o Dir::Cache="$dir/cache" -o Dir::Cache::archives="$dir/debs" -o Debug::NoLocking=1 -o APT::Install-Recommends=0)
		apt-get "${o[@]}" update -qq >/dev/null
		apt-get "${o[@]}" install -y -qq --download-only qemu-system-s390x >/dev/null
		for d in "$dir"/debs/qemu-system-s390x_*.deb "$dir"/debs/qemu-system-common_*.deb "$dir"/debs/qemu-system-data_*.deb "$dir"/debs/lib*.deb; do
			[ -e "$d" ] && dpkg-deb -x "$d" "$dir/root"
		done
		rm -rf "$dir/debs" "$dir/cache" "$dir/st"
		echo "$stamp" >"$dir/.stamp"
	fi
	echo "env LD_LIBRARY_PATH=$dir/root/usr/lib/x86_64-linux-gnu $dir/root/usr/bin/qemu-system-s390x -L $dir/root/usr/share/qemu"
}

# --- curfew's tests, cross-compiled for the guest.
tests() { # tests GOARCH -> prints the folder with the binaries
	local arch=$1 dir=$OUT/tests-$1
	rm -rf "$dir"; mkdir -p "$dir/nft" "$dir/ipt" "$dir/e2e" "$dir/shape"
	local env=(env CGO_ENABLED=0 GOOS=linux GOARCH="$arch")
	"${env[@]}" "$GO" build -trimpath -o "$dir/curfew" ./cmd/curfew
	"${env[@]}" "$GO" test -c -trimpath -o "$dir/nft/nft.test" ./pkg/firewall/nft
	"${env[@]}" "$GO" test -c -trimpath -o "$dir/ipt/ipt.test" ./pkg/firewall/ipt
	"${env[@]}" "$GO" test -c -trimpath -o "$dir/shape/shape.test" ./pkg/firewall/shape
	"${env[@]}" "$GO" test -c -trimpath -o "$dir/e2e/e2e.test" ./e2e
	cp -r pkg/firewall/nft/testdata "$dir/nft/"
	echo "$dir"
}

# --- a kernel: unpacked once; its network modules, decompressed, with depmod.
kernel() { # kernel DEB -> prints the unpacked folder
	local deb=$1 dir=$CACHE/kernels/$(basename "$1" .deb)
	if [ -f "$dir/.done" ]; then echo "$dir"; return; fi
	rm -rf "$dir"; mkdir -p "$dir/x"
	dpkg-deb -x "$deb" "$dir/x"
	local mods; mods=$(ls -d "$dir"/x/lib/modules/* "$dir"/x/usr/lib/modules/* 2>/dev/null | head -1)
	local ver; ver=$(basename "$mods")
	mkdir -p "$dir/root/lib/modules/$ver/kernel"
	for sub in net crypto lib arch drivers/net/veth.ko drivers/net/dummy.ko drivers/net/ifb.ko \
		drivers/net/wireless/virtual drivers/net/wireless/mac80211_hwsim.ko drivers/virtio; do
		for f in "$mods/kernel/$sub" "$mods/kernel/$sub".xz; do
			[ -e "$f" ] || continue
			mkdir -p "$dir/root/lib/modules/$ver/kernel/$(dirname "$sub")"
			cp -r "$f" "$dir/root/lib/modules/$ver/kernel/$(dirname "$sub")/"
		done
	done
	cp "$mods"/modules.order "$mods"/modules.builtin* "$dir/root/lib/modules/$ver/" 2>/dev/null || true
	# Families and file systems no test loads: less to unpack in every boot.
	rm -rf "$dir"/root/lib/modules/"$ver"/kernel/net/{bluetooth,ceph,sunrpc,rds,nfc,mac802154,ieee802154,9p,rxrpc,tipc,sctp,dccp,can,atm,appletalk,ax25,rose,netrom,x25,phonet,batman-adv,l2tp,openvswitch,vmw_vsock,smc,mpls,psample,qrtr,lapb,caif,kcm,6lowpan,nsh,hsr,dsa,mptcp,wimax,ife,iucv,mctp,xdp}
	find "$dir/root" -name '*.ko.xz' -exec xz -d {} +
	find "$dir/root" -name '*.ko.zst' -exec zstd -q -d --rm {} +
	depmod -b "$dir/root" "$ver"
	cp "$dir"/x/boot/vmlinuz-* "$dir/vmlinuz"
	echo "$ver" >"$dir/version"
	rm -rf "$dir/x"
	touch "$dir/.done"
	echo "$dir"
}

# The guest's /init: mounts, modules, then each suite; a line
# "VMLAB-SUITE name rc=N seconds=S" for each, then power off.
guest_init() {
	cat <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /bbin /proc /sys /dev /tmp /run /root
/bin/busybox --install -s /bbin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bbin HOME=/root TMPDIR=/tmp CI=true CURFEW_VMLAB=1
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run; mkdir -p /run/netns /var/run
echo 1 >/proc/sys/kernel/printk # the tests' output only, not the kernel's notices
[ -e /var/run/netns ] || ln -s /run/netns /var/run/netns
ip link set lo up
echo "VMLAB-KERNEL $(uname -r) $(uname -m)"
for m in veth bridge nf_tables nf_conntrack nft_ct nft_nat nf_flow_table nft_flow_offload; do modprobe $m 2>/dev/null; done
while read -r name dir args; do
	[ -n "$name" ] || continue
	echo "VMLAB-BEGIN $name"
	t0=$(date +%s)
	(cd /t/$dir && eval "$args" 2>&1)
	rc=$?
	echo "VMLAB-SUITE $name rc=$rc seconds=$(($(date +%s) - t0))"
done </t/suites
echo VMLAB-DONE
poweroff -f
EOF
}

# Which tests run: the kernel-facing scenarios of both backends (not the
# tests that read no kernel: the kmods one, which reads shared/, and the
# goldens of what the backends render, whose files stay on the host), and the
# wind-down's shaper (HTB, and the kernel's fq_codel where the host has
# none), and the daemon end to end: a bedtime (the cut of an open connection, the daemon
# killed, the window's end), a parent's pause, the iptables backend, a
# child's ARP rebinding (DNS of offline devices decided by MAC and time, in
# a concatenated set older kernels must take too), and a Wi-Fi key for each
# child (mac80211_hwsim's simulated radios, which only these kernels have
# here, with Debian's hostapd, wpa_supplicant and iw in the userland).
suites() {
	local e2e="CURFEW_BINARY=/t/curfew ./e2e.test -test.v -test.count=1 -test.timeout 20m"
	cat <<EOF
nft nft ./nft.test -test.v -test.count=1 -test.timeout 20m -test.skip '^(TestPackageDependsOnTheKmods|TestRenderedTable)'
ipt ipt ./ipt.test -test.v -test.count=1 -test.timeout 20m -test.skip '^TestRenderedRules'
shape shape ./shape.test -test.v -test.count=1 -test.timeout 5m
e2e e2e $e2e -test.run '^(TestBedtime|TestParentCommands|TestIptablesBackend|TestARPRebindingAndANewAddress|TestWifiKeys)\$'
EOF
}

boot() { # boot ARCH KERNELDIR INITRD LOG
	local arch=$1 k=$2 initrd=$3 logf=$4 q con
	case $arch in
	amd64) q=(qemu-system-x86_64 -cpu max); con=ttyS0 ;;
	s390x) read -ra q <<<"$(qemu_s390x)"; q+=(-cpu max); con=ttysclp0 ;;
	esac
	timeout "${VMLAB_TIMEOUT:-2400}" "${q[@]}" -accel tcg,thread=multi -smp 2 -m 2048 -nographic -no-reboot \
		-kernel "$k/vmlinuz" -initrd "$initrd" \
		-append "console=$con panic=-1 ${VMLAB_APPEND-quiet loglevel=3}" </dev/null >"$logf" 2>&1 || true
}

# The run is one function, read whole before it starts: editing this file
# while it runs (it runs for a while) cannot change what it does.
main() {
fail=0
summary=()
for deb in "$CACHE"/linux-image-*.deb; do
	name=$(basename "$deb" .deb); name=${name#linux-image-}; name=${name%%_*}
	[ -z "$PATTERN" ] || [[ $name == *$PATTERN* ]] || continue
	case $deb in *_s390x.deb) arch=s390x ;; *) arch=amd64 ;; esac
	k=$(kernel "$deb")
	root=$(userland "$arch")
	[ -d "$OUT/tests-$arch" ] && [ -n "${VMLAB_KEEP_TESTS:-}" ] || { log "building tests for $arch"; tests "$arch" >/dev/null; }
	stage=$OUT/stage-$name
	rm -rf "$stage"; mkdir -p "$stage"
	cp -a "$root"/. "$stage"/
	cp -a "$k/root"/. "$stage"/
	bb=$(find "$CACHE" -maxdepth 1 -name "busybox-static_*_$arch.deb" | head -1)
	mkdir -p "$stage/bbx"; dpkg-deb -x "$bb" "$stage/bbx"
	mkdir -p "$stage/bin" "$stage/sbin"
	cp "$(find "$stage/bbx" -path '*/bin/busybox' -type f | head -1)" "$stage/bin/busybox"; rm -rf "$stage/bbx"
	[ -e "$stage/bin/sh" ] || ln -s busybox "$stage/bin/sh"
	ln -sf /bin/busybox "$stage/sbin/modprobe"
	cp -a "$OUT/tests-$arch" "$stage/t"
	if [ -n "${VMLAB_SUITES:-}" ]; then printf '%s\n' "$VMLAB_SUITES" >"$stage/t/suites"; else suites >"$stage/t/suites"; fi
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$stage/etc/hosts"
	guest_init >"$stage/init"; chmod +x "$stage/init"
	(cd "$stage" && find . | cpio -o -H newc --quiet) >"$OUT/$name.cpio"
	rm -rf "$stage"
	log "booting $name ($arch, $(du -m "$OUT/$name.cpio" | cut -f1) MB initramfs)"
	t0=$(date +%s)
	boot "$arch" "$k" "$OUT/$name.cpio" "$OUT/$name.log"
	[ -n "${VMLAB_KEEP_IMAGE:-}" ] || rm -f "$OUT/$name.cpio"
	secs=$(($(date +%s) - t0))
	sed -i 's/\r$//' "$OUT/$name.log" # the serial console's line ends
	if ! grep -q '^VMLAB-DONE' "$OUT/$name.log"; then
		fail=1; summary+=("$name: the guest did not finish (${secs}s); see $OUT/$name.log")
		tail -40 "$OUT/$name.log" >&2
		continue
	fi
	while read -r _ suite rc s; do
		summary+=("$name $suite ${rc} ${s}")
		if [ "$rc" != rc=0 ]; then
			fail=1
			log "$name: $suite failed:"
			sed -n "/^VMLAB-BEGIN $suite\$/,/^VMLAB-SUITE $suite /p" "$OUT/$name.log" | grep -E -e '--- FAIL|_test.go:[0-9]+:|^FAIL|panic' | head -60 >&2
		fi
	done < <(grep '^VMLAB-SUITE' "$OUT/$name.log")
	log "$name done in ${secs}s"
done
printf '%s\n' "${summary[@]}"
return $fail
}
main "$@"; exit $?
