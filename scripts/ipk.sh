#!/bin/sh
# Builds installable OpenWrt packages without the SDK, the way OpenWrt's
# ipkg-build does: an .ipk is a gzip'd tar of ./debian-binary ("2.0"),
# ./control.tar.gz and ./data.tar.gz. Owners are root, times fixed, so the
# same inputs give the same bytes.
#
# usage: scripts/ipk.sh VERSION OUTDIR   (after make cross: uses dist/curfew-*)
set -eu

version=$1
out=$2
top=$(cd "$(dirname "$0")/.." && pwd)
files=$top/openwrt/curfew/files
mtime="2026-01-01 00:00:00Z"
mkdir -p "$out"

tarball() { # tarball DIR OUT.tar.gz
	(cd "$1" && tar --numeric-owner --owner=0 --group=0 --sort=name --mtime="$mtime" -cf - ./) | gzip -9n >"$2"
}

# scripts OpenWrt's package.mk writes for every package: enable and start
# the service on install, stop and disable it on removal; nothing when
# installing into an image (IPKG_INSTROOT).
write_scripts() { # write_scripts CONTROLDIR
	cat >"$1/postinst" <<'X'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
X
	cat >"$1/prerm" <<'X'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
X
	chmod 0755 "$1/postinst" "$1/prerm"
}

package() { # package NAME ARCH DATADIR DEPENDS DESCRIPTION CONFFILES
	name=$1 arch=$2 data=$3 depends=$4 desc=$5 conffiles=$6
	work=$(mktemp -d)
	mkdir -p "$work/control"
	size=$(du -sb "$data" | cut -f1)
	cat >"$work/control/control" <<X
Package: $name
Version: $version
Depends: $depends
Source: openwrt/$name
SourceName: $name
License: Apache-2.0
Section: net
Architecture: $arch
Installed-Size: $size
Description: $desc
X
	if [ -n "$conffiles" ]; then
		printf '%s\n' $conffiles >"$work/control/conffiles"
	fi
	write_scripts "$work/control"
	echo "2.0" >"$work/debian-binary"
	tarball "$work/control" "$work/control.tar.gz"
	tarball "$data" "$work/data.tar.gz"
	(cd "$work" && tar --numeric-owner --owner=0 --group=0 --mtime="$mtime" -cf - ./debian-binary ./control.tar.gz ./data.tar.gz) |
		gzip -9n >"$out/${name}_${version}_${arch}.ipk"
	rm -rf "$work"
	printf '%-45s %8d bytes\n' "${name}_${version}_${arch}.ipk" "$(stat -c %s "$out/${name}_${version}_${arch}.ipk")"
}

for pair in mips_24kc:mips mipsel_24kc:mipsle arm_cortex-a7_neon-vfpv4:armv7 aarch64_cortex-a53:arm64 x86_64:amd64; do
	arch=${pair%%:*}
	bin=$top/dist/curfew-${pair##*:}
	[ -x "$bin" ] || { echo "missing $bin: run make cross first" >&2; exit 1; }
	data=$(mktemp -d)
	install -D -m 0755 "$bin" "$data/usr/sbin/curfew"
	install -D -m 0755 "$files/curfew.init" "$data/etc/init.d/curfew"
	install -D -m 0600 "$files/curfew.config" "$data/etc/config/curfew"
	install -D -m 0755 "$files/curfew.uci-defaults" "$data/etc/uci-defaults/90-curfew"
	install -D -m 0644 "$files/curfew.ntp-hotplug" "$data/etc/hotplug.d/ntp/25-curfew"
	install -D -m 0644 "$files/curfew.capabilities.json" "$data/etc/capabilities/curfew.json"
	install -d -m 0700 "$data/etc/curfew"
	package curfew "$arch" "$data" \
		"libc, kmod-nft-core, kmod-nft-nat, kmod-nft-fib, kmod-nf-conntrack-netlink" \
		"Parental controls: bedtimes, screen time and blocked sites per device" \
		"/etc/config/curfew"
	rm -rf "$data"
done

# luci-app-curfew: architecture independent, whatever the app ships.
data=$(mktemp -d)
luci=$top/openwrt/luci-app-curfew
for d in htdocs root; do
	if [ -d "$luci/$d" ]; then
		case $d in
		htdocs) mkdir -p "$data/www" && cp -a "$luci/htdocs/." "$data/www/" ;;
		root) cp -a "$luci/root/." "$data/" ;;
		esac
	fi
done
find "$data" -type d -exec chmod 0755 {} +
find "$data" -type f -exec chmod 0644 {} +
if [ -d "$data/usr/libexec/rpcd" ]; then chmod 0755 "$data"/usr/libexec/rpcd/*; fi
package luci-app-curfew all "$data" "libc, luci-base, rpcd, curfew" "Parental controls (curfew) for LuCI" ""
rm -rf "$data"
