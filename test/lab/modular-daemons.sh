#!/bin/sh
# libvirt's modular daemons for the lab: virtqemud and virtnetworkd (with
# virtlogd, which Debian ships, they replace the monolithic libvirtd; the
# default on RHEL, Fedora and newer Debian). Debian 12 ships only libvirtd, so
# they are built here from Debian's own source of the installed libvirt,
# linked against the installed libvirt.so.0: the daemons use its private
# symbols (versioned LIBVIRT_PRIVATE_<version>), so only the same source
# version links, and they load the installed driver modules
# (libvirt_driver_qemu.so, libvirt_driver_network.so). Only the daemons' own
# sources are compiled, not libvirt itself.
#
#   test/lab/modular-daemons.sh          build unless cached; prints the directory with the binaries
#   test/lab/modular-daemons.sh --deps   print the Debian packages the build needs, one per line
#
# Cached in $VXLAB_CACHE_DIR (default /var/cache/vxvirt-lab) under
# libvirt-daemons-<libvirt0 version>-<arch>/, so a libvirt upgrade builds anew.
# Needs root (apt-get); adds a deb-src entry for Debian's mirrors (derived
# from the deb entries) when apt knows no source of the installed version.
set -eu

# The Debian packages the build needs: group "modular" of the project's one list.
repo=$(cd "$(dirname "$0")/../.." && pwd)
LIBVIRT_DAEMONS_BUILD_DEPS=$(awk '$1 == "modular" { print $2 }' "$repo/scripts/debian-packages")
DAEMONS='virtqemud virtnetworkd'

if [ "${1:-}" = --deps ]; then
  printf '%s\n' $LIBVIRT_DAEMONS_BUILD_DEPS
  exit 0
fi

# A clean PATH: meson must find Debian's python3 and tools, not a user's.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C DEBIAN_FRONTEND=noninteractive
# Wait for another apt or dpkg run (other test set-ups) instead of failing.
APT='apt-get -o DPkg::Lock::Timeout=300'
t0=$(date +%s)
say() { echo "modular-daemons: [$(($(date +%s) - t0)) s] $*" >&2; }
die() { say "$*"; exit 1; }

version=$(dpkg-query -W -f='${Version}' libvirt0 2>/dev/null) || die "libvirt0 is not installed (apt-get install libvirt-daemon-system)"
arch=$(dpkg --print-architecture)
cache=${VXLAB_CACHE_DIR:-/var/cache/vxvirt-lab}
out=$cache/libvirt-daemons-$(printf '%s' "$version" | tr ':~+' '_._')-$arch

cached() {
  for d in $DAEMONS; do
    [ -x "$out/$d" ] && "$out/$d" --version >/dev/null 2>&1 || return 1
  done
}
if cached; then
  echo "$out"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the daemons needs root (apt-get); run as root"
mkdir -p "$cache"
# One build at a time (two test processes may both start a modular lab).
exec 9>"$cache/.libvirt-daemons.lock"
flock 9
if cached; then
  echo "$out"
  exit 0
fi

# test/all installs them up front; `cli.ts up --modular` may come here first.
"$repo/scripts/install-deps" --no-npm modular >&2

# deb-src lines for the Debian mirrors the deb lines use, in their own file.
has_source() { apt-cache showsrc libvirt 2>/dev/null | grep -qx "Version: $version"; }
if ! has_source; then
  list=/etc/apt/sources.list.d/vxvirt-lab-deb-src.sources
  say "apt knows no source of libvirt $version: adding deb-src entries in $list"
  {
    echo "# deb-src twins of this machine's Debian deb entries, for the vxvirt lab's"
    echo "# build of libvirt's modular daemons (test/lab/modular-daemons.sh)."
    # deb822 stanzas (*.sources) of type deb on a Debian mirror.
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && [ "$f" != "$list" ] || continue
      awk 'BEGIN { RS = ""; FS = "\n" }
        {
          deb = 0; debian = 0; out = ""
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^#/) continue
            if (line ~ /^Enabled:[ \t]*no/) { deb = 0; debian = 0; break }
            if (line ~ /^Types:/) {
              n = split(substr(line, 7), t, /[ \t]+/)
              for (k = 1; k <= n; k++) if (t[k] == "deb") deb = 1
              line = "Types: deb-src"
            }
            if (line ~ /^URIs:/ && line ~ /\/debian/) debian = 1
            out = out line "\n"
          }
          if (deb && debian) printf "\n%s", out
        }' "$f"
    done
    # one-line entries (sources.list, *.list) as deb822 stanzas.
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk '$1 == "deb" && $0 ~ /\/debian/ {
          i = 2; opts = ""
          if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
          comps = ""; for (j = i + 2; j <= NF; j++) comps = comps " " $j
          signed = ""
          if (match(opts, /signed-by=[^] ]*/)) signed = "Signed-By: " substr(opts, RSTART + 10, RLENGTH - 10) "\n"
          printf "\nTypes: deb-src\nURIs: %s\nSuites: %s\nComponents:%s\n%s", $i, $(i + 1), comps, signed
        }' "$f"
    done
  } >"$list.tmp"
  grep -q '^Types: deb-src' "$list.tmp" || { rm -f "$list.tmp"; die "no Debian deb entry in /etc/apt/sources.list{,.d} to derive deb-src entries from"; }
  mv "$list.tmp" "$list"
  $APT update -qq
  has_source || die "apt-get source cannot find libvirt $version even with $list (is the mirror missing that version?)"
fi

# Debian's library directory (/usr/lib/x86_64-linux-gnu): where libvirt.so.0 and the driver modules are.
multiarch=$(gcc -print-multiarch)
libdir=/usr/lib/$multiarch
[ -e "$libdir/libvirt.so.0" ] || die "no $libdir/libvirt.so.0"

work=$(mktemp -d /tmp/vxlab-libvirt-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
say "fetching Debian's libvirt $version source"
apt-get source -qq --download-only "libvirt=$version" >/dev/null 2>&1 || apt-get source -q --download-only "libvirt=$version" >&2
dpkg-source -x libvirt_*.dsc src >/dev/null 2>&1 || dpkg-source -x libvirt_*.dsc src >&2

say "configuring (only the QEMU and network drivers, no docs, no tests)"
# Paths as Debian's build has them, so the daemons find the installed driver
# modules ($libdir/libvirt/connection-driver), /etc/libvirt and /run/libvirt.
meson setup build src \
  --auto-features=disabled --buildtype=plain \
  --prefix=/usr --sysconfdir=/etc --localstatedir=/var --libdir="lib/$multiarch" -Drunstatedir=/run \
  -Ddriver_libvirtd=enabled -Ddriver_remote=enabled -Ddriver_qemu=enabled -Ddriver_network=enabled \
  -Dyajl=enabled -Dremote_default_mode=legacy -Dqemu_user=libvirt-qemu -Dqemu_group=libvirt-qemu \
  -Ddocs=disabled -Dtests=disabled -Dinit_script=none >build.log 2>&1 || { tail -n 30 build.log >&2; die "meson setup failed"; }

say "compiling $DAEMONS"
# The generated RPC headers the daemon sources include, then their objects and
# the admin server's static library; libvirt.so itself is not built.
headers=$(ninja -C build -t targets all | awk -F: '$1 ~ /^src\/(remote|rpc|access|admin)\/[^\/]+\.h$/ { print $1 }')
objects=
for d in $DAEMONS; do
  objects="$objects $(ninja -C build -t query "src/$d" | awk '/^ +src\/.*\.o$/ { print $1 }')"
done
# shellcheck disable=SC2086
ninja -C build $headers $objects src/admin/libvirt_admin_driver.a >>build.log 2>&1 || { tail -n 30 build.log >&2; die "compiling failed"; }

staging=$out.tmp-$$
rm -rf "$staging"
mkdir -p "$staging"
for d in $DAEMONS; do
  # meson's own link command, with the installed libraries for the ones it would build.
  link=$(ninja -C build -t commands "src/$d" | tail -n 1)
  link=$(printf '%s' "$link" | sed -E "s#src/(libvirt(-lxc|-qemu|-admin)?)\.so\.[0-9.]+#$libdir/\1.so.0#g; s#'-Wl,-rpath,[^']*'##g; s#-o src/$d #-o $staging/$d #")
  (cd build && sh -c "$link") >>build.log 2>&1 || { tail -n 30 build.log >&2; die "linking $d failed"; }
  "$staging/$d" --version >/dev/null || die "$staging/$d does not run"
done
printf 'libvirt %s (%s), built %s from Debian source by test/lab/modular-daemons.sh\n' "$version" "$arch" "$(date -u +%FT%TZ)" >"$staging/VERSION"
rm -rf "$out"
mv "$staging" "$out"
say "built $DAEMONS for libvirt $version in $(($(date +%s) - t0)) s: $out"
echo "$out"
