#!/usr/bin/env bash
# Installs the Debian packages sbgm needs, skipping what is already there.
# With SBGM_SKIP_DEPS=1 it does nothing (for machines set up another way).
# An official LibTorch given by CMAKE_PREFIX_PATH or Torch_DIR is used instead
# of Debian's libtorch-dev.
set -euo pipefail

[ "${SBGM_SKIP_DEPS:-0}" = 1 ] && exit 0

pkgs=(
  g++ cmake ninja-build pkg-config
  libopenblas0-pthread libgtest-dev libgmock-dev
  libcli11-dev libstb-dev libgif-dev nlohmann-json3-dev zlib1g-dev
  # The test suite's Python interop tests (safetensors both ways).
  python3-torch python3-numpy
)
# Extra packages asked for by the caller (e.g. the benchmark's python3-torch).
if [ -n "${SBGM_EXTRA_PACKAGES:-}" ]; then
  read -r -a extra <<<"$SBGM_EXTRA_PACKAGES"
  pkgs+=("${extra[@]}")
fi
if [ -z "${Torch_DIR:-}" ] && ! grep -qi torch <<<"${CMAKE_PREFIX_PATH:-}"; then
  pkgs+=(libtorch-dev libgloo-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "sbgm: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "sbgm: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
