# What curfew's two OpenWrt packages hold, shared by scripts/ipk.sh (opkg,
# OpenWrt 24.10 and older) and scripts/apk.sh (apk-tools 3, OpenWrt 25.12),
# so both formats carry the same files, modes and maintainer scripts.
# Sourced, not run.

top=$(cd "$(dirname "$0")/.." && pwd)
files=$top/openwrt/curfew/files
luci=$top/openwrt/luci-app-curfew

# OpenWrt architecture name : name of the cross build in dist/curfew-NAME
ARCHES="mips_24kc:mips mipsel_24kc:mipsle arm_cortex-a7_neon-vfpv4:armv7 aarch64_cortex-a53:arm64 x86_64:amd64"

PKG_LICENSE=Apache-2.0
PKG_MAINTAINER="curfew developers"
# The project page, when the builder has one to name (make ... PKG_URL=…).
PKG_URL=${PKG_URL:-}
CURFEW_DESC="Parental controls: bedtimes, screen time and blocked sites per device"
CURFEW_DEPENDS="libc kmod-nft-core kmod-nft-nat kmod-nft-fib kmod-nf-conntrack-netlink kmod-sched-core"
LUCI_DESC="Parental controls (curfew) for LuCI"
LUCI_DEPENDS="libc luci-base rpcd curfew"

# Directories of the system: OpenWrt's base-files and the packages curfew's
# depend on (luci-base, rpcd) have them. A package must not carry a mode for
# them: opkg applies an archive's directory modes to directories that exist,
# so carrying /etc would reset whatever mode the router gives it. The .ipk
# carries every other directory it needs (opkg does not create missing
# parents); apk never changes a directory that exists.
SYSTEM_DIRS=". etc etc/config etc/init.d etc/uci-defaults etc/hotplug.d lib lib/upgrade lib/upgrade/keep.d
usr usr/sbin usr/share usr/libexec usr/share/rpcd usr/share/rpcd/acl.d usr/share/luci usr/share/luci/menu.d
www www/luci-static www/luci-static/resources www/luci-static/resources/view"

# The directories that are each package's alone. opkg records only files,
# so it leaves directories behind on removal; the .ipk's postrm removes
# these when they are empty (apk removes them itself). A non-empty
# /etc/curfew keeps the parents' overrides for a reinstall.
CURFEW_OWN_DIRS="/etc/curfew /usr/share/curfew"
LUCI_OWN_DIRS="/www/luci-static/resources/view/curfew /www/luci-static/resources/curfew"

# carried_dirs DIR: the directories under DIR a package's archive carries.
carried_dirs() {
	(cd "$1" && find . -mindepth 1 -type d | sed 's|^\./||') | while read -r d; do
		case " $(echo $SYSTEM_DIRS) " in
		*" $d "*) ;;
		*) echo "$d" ;;
		esac
	done
}

# stage_curfew DIR BINARY: the files of package curfew under DIR.
stage_curfew() {
	install -d -m 0755 "$1"
	install -D -m 0755 "$2" "$1/usr/sbin/curfew"
	install -D -m 0755 "$files/curfew.init" "$1/etc/init.d/curfew"
	install -D -m 0600 "$files/curfew.config" "$1/etc/config/curfew"
	install -D -m 0755 "$files/curfew.uci-defaults" "$1/etc/uci-defaults/90-curfew"
	install -D -m 0644 "$files/curfew.ntp-hotplug" "$1/etc/hotplug.d/ntp/25-curfew"
	install -D -m 0644 "$files/curfew.capabilities.json" "$1/etc/capabilities/curfew.json"
	install -D -m 0755 "$files/curfew.firewall-include" "$1/usr/share/curfew/firewall.include"
	install -d -m 0700 "$1/etc/curfew"
	# The feed Makefile lists /etc/curfew/ (the parents' overrides and the
	# day's usage) as a conffile; OpenWrt's build turns conffiles that are
	# directories into a keep.d entry, so sysupgrade carries them over.
	install -d -m 0755 "$1/lib/upgrade/keep.d"
	printf '/etc/curfew/\n' >"$1/lib/upgrade/keep.d/curfew"
	chmod 0644 "$1/lib/upgrade/keep.d/curfew"
	find "$1" -type d ! -path "$1/etc/curfew" -exec chmod 0755 {} +
}

# each_arch FUNC: for every architecture, stage package curfew's files from
# its cross build and run FUNC ARCH DATADIR (the directory is removed after).
each_arch() {
	for pair in $ARCHES; do
		a=${pair%%:*}
		bin=$top/dist/curfew-${pair##*:}
		[ -x "$bin" ] || { echo "missing $bin: run make cross first" >&2; exit 1; }
		staged=$(mktemp -d)
		stage_curfew "$staged" "$bin"
		"$1" "$a" "$staged"
		rm -rf "$staged"
	done
}

# stage_luci DIR: the files of luci-app-curfew under DIR, as luci.mk
# installs them (htdocs under /www, root/ as is).
stage_luci() {
	install -d -m 0755 "$1/www"
	cp -R "$luci/htdocs/." "$1/www/"
	cp -R "$luci/root/." "$1/"
	find "$1" -type d -exec chmod 0755 {} +
	find "$1" -type f -exec chmod 0644 {} +
	chmod 0755 "$1"/usr/libexec/rpcd/*
}

# What curfew runs before removal (not an upgrade), after the standard
# steps, on a live router: the firewall include that uci-defaults added
# goes with it.
CURFEW_PRERM='[ -n "${IPKG_INSTROOT}" ] || [ "${PKG_UPGRADE}" = "1" ] || {
	uci -q delete firewall.curfew && uci -q commit firewall
}
exit 0'

# What luci-app-curfew runs after the standard steps, as luci.mk does for
# every LuCI app, and only on a live router (not in an image build, where
# IPKG_INSTROOT is set): forget LuCI's cached menu and modules and make
# rpcd load the new plugin and ACL, or the pages find no `curfew` object.
LUCI_POSTINST='[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache*
	rm -rf /tmp/luci-modulecache/
	/etc/init.d/rpcd reload 2>/dev/null || killall -HUP rpcd 2>/dev/null
}
exit 0'
