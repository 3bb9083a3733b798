#!/usr/bin/env bash
# fetch-test-data.sh: the test data too large for the repository, from pinned npm packages, each
# checked against its sha256, into $EFFORT_CACHE/test-data (default ~/.cache/effort). Idempotent:
# what is there and checks out is kept. Exits non-zero, naming the datum, when one cannot be had.
#
#   llama.cpp-vocab/  llama.cpp's tokenizer test cases (models/ggml-vocab-*.gguf with their
#                     .gguf.inp/.gguf.out), from the llama.cpp sources that node-llama-cpp
#                     carries as a git bundle (the same sources bench/compare-llama.sh builds).
set -euo pipefail
cache=${EFFORT_CACHE:-$HOME/.cache/effort}
data=$cache/test-data

node_llama_cpp=node-llama-cpp@3.22.1
node_llama_cpp_sha256=a0d9dd80eacd2ab1cfe71aee57ac8a806487fd70b3d2a38fbec637752d9e5c5f
# The files taken from its llama.cpp tree (models/), with their sha256.
vocab_files=(
  "ggml-vocab-llama-spm.gguf 16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69"
  "ggml-vocab-llama-spm.gguf.inp be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0"
  "ggml-vocab-llama-spm.gguf.out ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29"
)

fail() { echo "fetch-test-data: $*" >&2; exit 1; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

all_present() {
  local entry
  for entry in "${vocab_files[@]}"; do
    set -- $entry
    sha_ok "$data/llama.cpp-vocab/$1" "$2" || return 1
  done
}
if all_present; then
  echo "fetch-test-data: $data is complete"
  exit 0
fi

command -v npm >/dev/null || fail "npm not found (./scripts/install-deps.sh installs it)"
command -v git >/dev/null || fail "git not found (./scripts/install-deps.sh installs it)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tgz=$work/${node_llama_cpp/@/-}.tgz
echo "fetch-test-data: fetching $node_llama_cpp from the npm registry"
(cd "$work" && npm pack --silent "$node_llama_cpp" >/dev/null 2>"$work/npm.log") ||
  fail "npm pack $node_llama_cpp failed: $(tail -n 3 "$work/npm.log")"
sha_ok "$tgz" "$node_llama_cpp_sha256" || fail "$node_llama_cpp: sha256 $(sha256sum "$tgz" | cut -d' ' -f1), expected $node_llama_cpp_sha256"
tar -xzf "$tgz" -C "$work" package/llama/gitRelease.bundle || fail "$node_llama_cpp has no llama/gitRelease.bundle"
git clone -q --bare "$work/package/llama/gitRelease.bundle" "$work/llama.cpp.git" 2>"$work/git.log" ||
  fail "cloning $node_llama_cpp's llama.cpp bundle failed: $(tail -n 3 "$work/git.log")"

# Written beside, checked, then moved into place: a failed fetch leaves no partial datum.
mkdir -p "$data/llama.cpp-vocab"
for entry in "${vocab_files[@]}"; do
  set -- $entry
  git --git-dir "$work/llama.cpp.git" show "HEAD:models/$1" >"$work/$1" 2>/dev/null ||
    fail "$node_llama_cpp's llama.cpp has no models/$1"
  sha_ok "$work/$1" "$2" || fail "models/$1 from $node_llama_cpp: sha256 $(sha256sum "$work/$1" | cut -d' ' -f1), expected $2"
  mv "$work/$1" "$data/llama.cpp-vocab/$1"
done
echo "fetch-test-data: $data is complete"
