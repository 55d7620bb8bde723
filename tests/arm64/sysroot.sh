#!/usr/bin/env bash
# Builds the arm64 sysroot that `make test-arm64` compiles against and runs in: Debian bookworm's
# arm64 packages of scion's dependencies (and theirs), downloaded with apt and unpacked with
# `dpkg -x` into SYSROOT, not installed. Installing them (`apt-get install libyaml-cpp-dev:arm64`)
# would remove the amd64 libyaml-cpp-dev and libmatio-dev, which are not co-installable across
# architectures in bookworm; a sysroot leaves the host's packages alone.
#
# usage: tests/arm64/sysroot.sh SYSROOT
# Idempotent: a finished sysroot (SYSROOT/.complete) is left as it is; a half-built one is rebuilt.
set -euo pipefail
sysroot=${1:?usage: sysroot.sh SYSROOT}
[ -f "$sysroot/.complete" ] && exit 0

# The arm64 libraries scion links (see CMakeLists.txt); MPI and CUDA are left out of the arm64 test
# build. Their dependencies are resolved by apt-cache, keeping the arm64 ones only.
packages="libdnnl-dev libyaml-cpp-dev libturbojpeg0-dev libjpeg62-turbo-dev zlib1g-dev libmatio-dev
          libstb-dev catch2 libgomp1 libstdc++6 libc6"
# Header-only packages built for all architectures.
all_arch="nlohmann-json3-dev libcli11-dev"
arm=()
for p in $packages; do arm+=("$p:arm64"); done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "sysroot.sh: adding the arm64 architecture to apt (dpkg --add-architecture arm64)"
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -q
elif ! apt-cache show libdnnl-dev:arm64 > /dev/null 2>&1; then
  $sudo apt-get update -q
fi

deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances "${arm[@]}" | grep -E '^[a-z0-9].*:arm64$' | sort -u)

rm -rf "$sysroot"
mkdir -p "$sysroot/debs"
(cd "$sysroot/debs" && apt-get download -q $deps $all_arch)
for deb in "$sysroot"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
rm -rf "$sysroot/debs"

# Absolute symbolic links (libz.so -> /lib/aarch64-linux-gnu/libz.so.1.2.13,
# /lib/ld-linux-aarch64.so.1 -> /lib/aarch64-linux-gnu/...) would point into the host: make them
# point inside the sysroot.
find "$sysroot" -type l -lname '/*' | while read -r link; do
  target=$(readlink "$link")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$sysroot$target")" "$link"
done
touch "$sysroot/.complete"
echo "sysroot.sh: arm64 sysroot ready in $sysroot ($(du -sh "$sysroot" | cut -f1))"
