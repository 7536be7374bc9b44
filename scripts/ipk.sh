#!/bin/sh
# Builds installable .ipk packages for opkg (OpenWrt 24.10 and older)
# without the SDK, the way OpenWrt's ipkg-build does: an .ipk is a gzip'd tar
# of ./debian-binary ("2.0"), ./control.tar.gz and ./data.tar.gz. Owners are
# root, times fixed, so the same inputs give the same bytes.
#
# Output is one opkg feed per architecture: OUTDIR/ARCH/ holds curfew and
# luci-app-curfew for it and the Packages/Packages.gz index, so a router
# needs one `src/gz` line (README).
#
# usage: scripts/ipk.sh VERSION OUTDIR   (after make cross: uses dist/curfew-*)
set -eu

version=$1
out=$2
. "$(dirname "$0")/pkgfiles.sh"
mtime="2026-01-01 00:00:00Z"
rm -rf "$out"
mkdir -p "$out"

# tarball DIR OUT.tar.gz: files and links of DIR, and of its directories
# only those that are not the system's (pkgfiles.sh), so unpacking it never
# changes the mode of /, /etc or any other directory of the system.
tarball() {
	(cd "$1" && {
		find . ! -type d
		carried_dirs . | sed 's|^|./|'
	} | LC_ALL=C sort | tar --numeric-owner --owner=0 --group=0 --mtime="$mtime" --no-recursion -T - -cf -) |
		gzip -9n >"$2"
}

# The scripts OpenWrt's package-pack.mk writes for every .ipk: the standard
# steps of /lib/functions.sh (enable and start the service and run its
# uci-defaults on install, stop and disable it before removal), then the
# package's own lines; nothing when /lib/functions.sh is absent.
write_scripts() { # write_scripts CONTROLDIR EXTRA_POSTINST OWN_DIRS EXTRA_PRERM
	{
		echo '#!/bin/sh'
		echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
		echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
		echo '. ${IPKG_INSTROOT}/lib/functions.sh'
		echo 'default_postinst $0 $@'
	} >"$1/postinst"
	if [ -n "$2" ]; then
		# the -pkg part runs inside default_postinst, as luci.mk's does
		{ echo '#!/bin/sh'; echo "$2"; } >"$1/postinst-pkg"
		chmod 0755 "$1/postinst-pkg"
	fi
	{
		echo '#!/bin/sh'
		echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
		echo '. ${IPKG_INSTROOT}/lib/functions.sh'
		echo 'default_prerm $0 $@'
	} >"$1/prerm"
	if [ -n "$4" ]; then
		# run by default_prerm, like postinst-pkg by default_postinst
		{ echo '#!/bin/sh'; echo "$4"; } >"$1/prerm-pkg"
		chmod 0755 "$1/prerm-pkg"
	fi
	{
		echo '#!/bin/sh'
		for d in $3; do echo "rmdir \"\${IPKG_INSTROOT}$d\" 2>/dev/null"; done
		echo 'exit 0'
	} >"$1/postrm"
	chmod 0755 "$1/postinst" "$1/prerm" "$1/postrm"
}

# package NAME ARCH DATADIR DEPENDS DESCRIPTION CONFFILES EXTRA_POSTINST OWN_DIRS EXTRA_PRERM OUTDIR
package() {
	name=$1 arch=$2 data=$3 depends=$4 desc=$5 conffiles=$6 extra=$7 own=$8 prerm=$9 dest=${10}
	work=$(mktemp -d)
	mkdir -p "$work/control"
	size=$(du -sb "$data" | cut -f1)
	{
		echo "Package: $name"
		echo "Version: $version"
		echo "Depends: $(echo "$depends" | sed 's/ /, /g')"
		echo "Source: feeds/curfew/$name"
		echo "SourceName: $name"
		echo "License: $PKG_LICENSE"
		echo "Section: net"
		[ -z "$PKG_URL" ] || echo "URL: $PKG_URL"
		echo "Maintainer: $PKG_MAINTAINER"
		echo "Architecture: $arch"
		echo "Installed-Size: $size"
		echo "Description: $desc"
	} >"$work/control/control"
	if [ -n "$conffiles" ]; then
		printf '%s\n' $conffiles >"$work/control/conffiles"
	fi
	write_scripts "$work/control" "$extra" "$own" "$prerm"
	echo "2.0" >"$work/debian-binary"
	(cd "$work/control" && find . -type f | LC_ALL=C sort | tar --numeric-owner --owner=0 --group=0 --mtime="$mtime" --no-recursion -T - -cf -) |
		gzip -9n >"$work/control.tar.gz"
	tarball "$data" "$work/data.tar.gz"
	file=${name}_${version}_${arch}.ipk
	(cd "$work" && tar --numeric-owner --owner=0 --group=0 --mtime="$mtime" -cf - ./debian-binary ./control.tar.gz ./data.tar.gz) |
		gzip -9n >"$dest/$file"
	rm -rf "$work"
	printf '%-52s %8d bytes\n' "${dest##*/}/$file" "$(stat -c %s "$dest/$file")"
}

# index DIR: opkg's Packages and Packages.gz for the .ipk files in DIR, the
# fields of each control file plus Filename, Size and SHA256sum, as
# OpenWrt's ipkg-make-index.sh writes them.
index() {
	: >"$1/Packages"
	for f in "$1"/*.ipk; do
		tar -xzOf "$f" ./control.tar.gz | tar -xzOf - ./control | grep -v '^Description:' >>"$1/Packages"
		{
			echo "Filename: ${f##*/}"
			echo "Size: $(stat -c %s "$f")"
			echo "SHA256sum: $(sha256sum "$f" | cut -d' ' -f1)"
			tar -xzOf "$f" ./control.tar.gz | tar -xzOf - ./control | grep '^Description:'
			echo
		} >>"$1/Packages"
	done
	gzip -9nc "$1/Packages" >"$1/Packages.gz"
}

luci_data=$(mktemp -d)
stage_luci "$luci_data"
luci_dir=$(mktemp -d)
package luci-app-curfew all "$luci_data" "$LUCI_DEPENDS" "$LUCI_DESC" "" "$LUCI_POSTINST" "$LUCI_OWN_DIRS" "" "$luci_dir"
rm -rf "$luci_data"

# one feed per architecture: curfew, luci-app-curfew and the index
feed() { # feed ARCH DATADIR
	mkdir -p "$out/$1"
	package curfew "$1" "$2" "$CURFEW_DEPENDS" "$CURFEW_DESC" "/etc/config/curfew" "" "$CURFEW_OWN_DIRS" "$CURFEW_PRERM" "$out/$1"
	cp "$luci_dir"/*.ipk "$out/$1/"
	index "$out/$1"
}
each_arch feed
rm -rf "$luci_dir"
