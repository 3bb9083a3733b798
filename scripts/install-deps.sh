#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 packages effort builds and tests with (idempotent).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev libxsimd-dev nlohmann-json3-dev
  catch2
  libsentencepiece-dev libxxhash-dev
  libcpp-httplib-dev
  clang libclang-rt-14-dev  # the sanitizer pass and the fuzz targets (libFuzzer)
  git                       # scripts/fetch-test-data.sh
)
# scripts/fetch-test-data.sh takes its data from npm packages: Debian's npm where none is on PATH.
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
