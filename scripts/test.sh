#!/usr/bin/env bash
# The test command: installs what is missing, then runs the whole suite (unit, integration on
# the real sample clips, the pyarrow interoperability check, the binary's CLI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export UNIREAL_PYTHON="$PWD/.venv/bin/python"
cargo test --workspace --locked "$@"
