#!/bin/sh
# Builds apk v3 packages for OpenWrt 25.12 and later with the real
# `apk mkpkg` (apk-tools 3), with the metadata, file lists and maintainer
# scripts that OpenWrt's include/package-pack.mk gives its own packages.
#
# Output is one apk repository per architecture: OUTDIR/ARCH/ holds
# curfew-VERSION.apk, luci-app-curfew-VERSION.apk and packages.adb (the
# `apk mkndx` index), so a router needs one line in
# /etc/apk/repositories.d (README). With APK_SIGN_KEY=FILE (a private EC or
# RSA key in PEM) the packages and the index are signed with it.
#
# usage: APK=path/to/apk scripts/apk.sh VERSION OUTDIR   (after make cross)
set -eu

version=$1
out=$2
. "$(dirname "$0")/pkgfiles.sh"
apk=${APK:-apk}
sign=
[ -z "${APK_SIGN_KEY:-}" ] || sign="--sign-key $APK_SIGN_KEY"
rm -rf "$out"
mkdir -p "$out"

# metadata NAME: the files OpenWrt's tools read in /lib/apk/packages/:
# NAME.list (every file and link, as default_postinst finds the init script
# and uci-defaults in it), NAME.conffiles and NAME.conffiles_static (the
# shipped config's checksum, so an edited config is told from the shipped
# one).
metadata() { # metadata DATADIR NAME CONFFILES
	install -d -m 0755 "$1/lib/apk/packages"
	list=$(mktemp)
	(cd "$1" && find . \( -type f -o -type l \) | sed 's|^\.||' | LC_ALL=C sort) >"$list"
	mv "$list" "$1/lib/apk/packages/$2.list"
	chmod 0644 "$1/lib/apk/packages/$2.list"
	if [ -n "$3" ]; then
		: >"$1/lib/apk/packages/$2.conffiles"
		: >"$1/lib/apk/packages/$2.conffiles_static"
		for c in $3; do
			echo "$c" >>"$1/lib/apk/packages/$2.conffiles"
			echo "$c $(sha256sum "$1$c" | cut -d' ' -f1)" >>"$1/lib/apk/packages/$2.conffiles_static"
		done
		chmod 0644 "$1/lib/apk/packages/$2.conffiles" "$1/lib/apk/packages/$2.conffiles_static"
	fi
}

# scripts DIR NAME EXTRA_POSTINST EXTRA_PRERM: post-install, post-upgrade and
# pre-deinstall as package-pack.mk writes them: the standard steps of
# /lib/functions.sh (users, enable and start the service and run its
# uci-defaults on install; stop and disable it before removal), then the
# package's own lines.
scripts() {
	{
		echo '#!/bin/sh'
		echo '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0'
		echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
		echo '. ${IPKG_INSTROOT}/lib/functions.sh'
		echo 'export root="${IPKG_INSTROOT}"'
		echo "export pkgname=\"$2\""
		echo 'add_group_and_user'
		echo 'default_postinst'
		[ -z "$3" ] || echo "$3"
	} >"$1/post-install"
	{
		echo '#!/bin/sh'
		echo 'export PKG_UPGRADE=1'
		sed '1d' "$1/post-install"
	} >"$1/post-upgrade"
	{
		echo '#!/bin/sh'
		echo '[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0'
		echo '. ${IPKG_INSTROOT}/lib/functions.sh'
		echo 'export root="${IPKG_INSTROOT}"'
		echo "export pkgname=\"$2\""
		echo 'default_prerm'
		[ -z "$4" ] || echo "$4"
	} >"$1/pre-deinstall"
}

# package NAME ARCH DATADIR DEPENDS DESCRIPTION CONFFILES EXTRA_POSTINST EXTRA_PRERM OUTDIR
package() {
	name=$1 arch=$2 data=$3 depends=$4 desc=$5 conffiles=$6 extra=$7 prerm=$8 dest=$9
	metadata "$data" "$name" "$conffiles"
	s=$(mktemp -d)
	scripts "$s" "$name" "$extra" "$prerm"
	set -- --info "name:$name" --info "version:$version" --info "description:$desc" \
		--info "arch:$arch" --info "license:$PKG_LICENSE" --info "origin:$name" \
		--info "maintainer:$PKG_MAINTAINER" --info "depends:$depends"
	[ -z "$PKG_URL" ] || set -- "$@" --info "url:$PKG_URL"
	file=$name-$version.apk
	# shellcheck disable=SC2086 # $sign is empty or two words
	"$apk" mkpkg $sign "$@" \
		--script "post-install:$s/post-install" --script "post-upgrade:$s/post-upgrade" \
		--script "pre-deinstall:$s/pre-deinstall" \
		--files "$data" --output "$dest/$file"
	rm -rf "$s"
	printf '%-52s %8d bytes\n' "${dest##*/}/$file" "$(stat -c %s "$dest/$file")"
}

luci_data=$(mktemp -d)
stage_luci "$luci_data"
luci_dir=$(mktemp -d)
package luci-app-curfew noarch "$luci_data" "$LUCI_DEPENDS" "$LUCI_DESC" "" "$LUCI_POSTINST" "" "$luci_dir"
rm -rf "$luci_data"

# one repository per architecture: curfew, luci-app-curfew and the index
repository() { # repository ARCH DATADIR
	mkdir -p "$out/$1"
	package curfew "$1" "$2" "$CURFEW_DEPENDS" "$CURFEW_DESC" "/etc/config/curfew" "" "$CURFEW_PRERM" "$out/$1"
	cp "$luci_dir"/*.apk "$out/$1/"
	# shellcheck disable=SC2086
	"$apk" mkndx $sign --allow-untrusted --output "$out/$1/packages.adb" "$out/$1"/*.apk
}
each_arch repository
rm -rf "$luci_dir"
