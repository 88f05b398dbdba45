#!/bin/sh
# Fetches what the CTranslate2 engine builds and runs with into DIR (default: target/ctranslate2):
#   DIR/lib      libctranslate2 and its libgomp, from the `ctranslate2` 4.8.4 wheel on PyPI (the library
#                faster-whisper runs: CPU kernels from Intel MKL and oneDNN, chosen at run time per CPU)
#   DIR/include  CTranslate2 4.8.4's C++ headers, from the `ct2rs` 0.10.3 crate on crates.io (which vendors
#                CTranslate2's source; PyPI ships no headers)
# Both downloads are pinned by SHA-256. build.rs runs this when DIR is incomplete; so do images/build.sh and
# scripts/test.sh. Needs curl, unzip and tar.
set -eu
dir="${1:-${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target}/ctranslate2}"
wheel=ctranslate2-4.8.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
wheel_url=https://files.pythonhosted.org/packages/d5/fb/c20dd76f7636bdef710e2f6e8419db3a07687cec65e78228ff3624875afe/$wheel
wheel_sha256=1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5
crate=ct2rs-0.10.3.crate
crate_url=https://static.crates.io/crates/ct2rs/$crate
crate_sha256=edf9167bb229e98360fe2ae650bf44936bf043f11cf6e620994bd0ef51c6cf8c

if [ -f "$dir/lib/libctranslate2.so" ] && [ -f "$dir/include/ctranslate2/models/whisper.h" ]; then
  exit 0
fi
mkdir -p "$dir/downloads"
fetch() { # URL FILE SHA256
  if ! echo "$3  $dir/downloads/$2" | sha256sum -c --status 2>/dev/null; then
    curl -fsSL --retry 3 -o "$dir/downloads/$2.partial" "$1"
    echo "$3  $dir/downloads/$2.partial" | sha256sum -c --status \
      || { echo "ct2/fetch.sh: $2 does not match its SHA-256" >&2; exit 1; }
    mv "$dir/downloads/$2.partial" "$dir/downloads/$2"
  fi
}
fetch "$wheel_url" "$wheel" "$wheel_sha256"
fetch "$crate_url" "$crate" "$crate_sha256"

rm -rf "$dir/lib" "$dir/include" "$dir/unpack"
mkdir -p "$dir/lib" "$dir/unpack"
unzip -q -o "$dir/downloads/$wheel" 'ctranslate2.libs/*' -d "$dir/unpack"
mv "$dir/unpack/ctranslate2.libs/"* "$dir/lib/"
tar -xzf "$dir/downloads/$crate" -C "$dir/unpack" ct2rs-0.10.3/CTranslate2/include ct2rs-0.10.3/CTranslate2/LICENSE
mv "$dir/unpack/ct2rs-0.10.3/CTranslate2/include" "$dir/include"
mv "$dir/unpack/ct2rs-0.10.3/CTranslate2/LICENSE" "$dir/LICENSE.CTranslate2"
rm -rf "$dir/unpack"
# The wheel's library is named after its hash; link and load it by its plain name.
(cd "$dir/lib" && ln -sf libctranslate2-*.so.* libctranslate2.so)
echo "CTranslate2 4.8.4 in $dir"
