#!/bin/sh
# Install the Debian packages qeval needs, only those missing; quiet and
# quick when everything is present. Runs apt-get as root or through sudo.
set -e
PKGS="build-essential clang libclang-rt-14-dev pkg-config libsqlite3-dev sqlite3 libcsv-dev check \
ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo libinih-dev libjansson-dev zlib1g-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
