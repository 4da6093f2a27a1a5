#!/usr/bin/env bash
# Installs what UniReal-rs needs on a Debian/Ubuntu machine with Rust. Idempotent: it only
# installs what is missing, so every README command can call it.
#   - FFmpeg development libraries + libclang for ffmpeg-next (codec, format, swscale),
#   - the ffmpeg CLI (tests generate odd clips with it; the benchmark times decode with it),
#   - Open MPI (libopenmpi-dev, openmpi-bin) for the trainer's `mpi` feature and its test,
#   - a Python venv at .venv with pyarrow and safetensors (the interoperability checks).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# (procps: pgrep, for scripts/soak.sh)
for pkg in libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libclang-dev clang pkg-config ffmpeg bc procps python3 python3-venv libopenmpi-dev openmpi-bin; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
# A Python outside Debian's packages (pyenv, conda) is fine as long as it can make venvs.
if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt=("${need_apt[@]/python3-venv}")
  need_apt=("${need_apt[@]/python3}")
fi
pkgs=()
for p in "${need_apt[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found" >&2
  echo "hint: install Rust first (https://rustup.rs), then run this again" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pyarrow, safetensors, numpy' 2>/dev/null; then
  echo "setup: creating .venv with pyarrow, safetensors, numpy" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check 'pyarrow>=15' 'safetensors>=0.4' numpy >&2
fi
