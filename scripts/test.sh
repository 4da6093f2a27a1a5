#!/usr/bin/env bash
# The test command: installs what is missing, then runs the whole suite (unit, integration on
# the real sample clips, PyTorch parity fixtures, the pyarrow interoperability check, the
# binaries' CLI tests, fuzzed readers), the kill-and-resume soak (scripts/soak.sh 5), then
# data-parallel training over MPI (`mpirun -np 2` against one process, the `mpi` feature), the
# Slurm scripts on a local single-node Slurm, then checks that the `cuda` feature builds (no
# GPU needed to build: Burn 0.21's CUDA backend loads CUDA at run time).
# UNIREAL_SKIP_CUDA_BUILD=1 skips that step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export UNIREAL_PYTHON="$PWD/.venv/bin/python"
# A whole-suite run gains nothing from incremental caches (one per test binary, gigabytes in
# all); keep them only if the caller asks.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked "$@"
# Kill-and-resume soak, the short version (scripts/soak.sh runs 20 rounds by default): a build,
# an import and a training run SIGKILLed 5 times each and resumed, then compared with
# uninterrupted runs. Debug binaries the suite just built; a fixed seed, so that a failure
# names kills that can be replayed (UNIREAL_SOAK_SEED to vary it).
echo "kill-and-resume soak (scripts/soak.sh 5)" >&2
UNIREAL_BIN="${CARGO_TARGET_DIR:-target}/debug" UNIREAL_PYTHON="$UNIREAL_PYTHON" \
  bash scripts/soak.sh 5 "${UNIREAL_SOAK_SEED:-1}"
echo "data-parallel training over MPI (unireal-train --features mpi)" >&2
cargo test --locked -p unireal-train --features mpi --test mpi "$@"
# The Slurm scripts, submitted for real to a single-node Slurm on this machine (root only:
# it starts slurmctld, slurmd and munged, and stops them again). Uses the debug binaries the
# steps above built (unireal-train with `mpi`), so it runs before the cuda build replaces it.
if [ "$(id -u)" = 0 ]; then
  UNIREAL_BIN="${CARGO_TARGET_DIR:-target}/debug" UNIREAL_SLURM_OPTIONAL=1 bash scripts/slurm/test-local.sh
else
  echo "skipping scripts/slurm/test-local.sh: it needs root to start a local Slurm" >&2
fi
if [ "${UNIREAL_SKIP_CUDA_BUILD:-0}" != 1 ]; then
  echo "building the cuda feature (unireal-train, unireal-infer and the DiT benchmark)" >&2
  # One invocation, so Burn and its CUDA, fusion and autotune crates compile once for all three.
  cargo build --locked -p unireal-train -p unireal-infer -p unireal-model \
    --features unireal-train/cuda,unireal-infer/cuda,unireal-model/cuda --bins --bench dit
  bash -n scripts/gpu-check.sh
fi
