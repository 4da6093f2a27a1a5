#!/usr/bin/env bash
# Submits the Slurm scripts for real on a single-node Slurm started here (Debian's slurmctld,
# slurmd and munge on localhost), on the sample clips:
#   1. scripts/slurm/data-array.sbatch as a 3-task array → the union of the partitions must
#      hold exactly the sample ids of a single-process build;
#   2. scripts/slurm/train.sbatch with 2 tasks (srun --mpi=pmix, the `mpi` build) for 6 tiny
#      steps → both ranks must end with the same weights.
# Needs root (it installs the packages when missing and starts the daemons, stopped again at
# the end). Binaries: UNIREAL_BIN (default target/debug, as `scripts/test.sh` builds them:
# unireal-data, and unireal-train with --features mpi).
#   bash scripts/slurm/test-local.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${UNIREAL_BIN:-${CARGO_TARGET_DIR:-target}/debug}
for b in unireal-data unireal-train; do
  [ -x "$BIN/$b" ] || { echo "slurm test: $BIN/$b is missing" >&2; echo "hint: cargo build -p unireal-data -p unireal-train --features unireal-train/mpi" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "slurm test: needs root to start slurmctld/slurmd/munged" >&2
  exit 1
fi
need=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "slurm test: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

WORK=$(mktemp -d /tmp/unireal-slurm.XXXXXX)
NODE=$(hostname -s)
read -r CPUS MEM < <(slurmd -C | awk '/NodeName/ {for (i=1;i<=NF;i++) {split($i,a,"="); if (a[1]=="CPUs") c=a[2]; if (a[1]=="RealMemory") m=a[2]}; print c, int(m*0.8)}')
mkdir -p "$WORK"/{state,spool,log,out}
cat > "$WORK/slurm.conf" <<CONF
ClusterName=unireal-test
SlurmctldHost=$NODE
SlurmctldPort=6917
SlurmdPort=6918
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$WORK/slurm.conf"
started_munge=0
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
  munged --force 2>/dev/null || munged
  started_munge=1
fi
# Stops a daemon and waits until it has exited: slurmctld still writes its state directory
# after SIGTERM, and removing the directory under it failed the run after the tests passed.
stop_daemon() {
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  stop_daemon "$WORK/slurmd.pid"
  stop_daemon "$WORK/slurmctld.pid"
  [ "$started_munge" = 1 ] && pkill -x munged 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK" || echo "slurm test: could not remove $WORK" >&2; }
}
trap cleanup EXIT
up=0
if slurmctld && slurmd; then
  for _ in $(seq 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix"; then up=1; break; fi
    sleep 1
  done
fi
if [ "$up" != 1 ]; then
  tail -n 5 "$WORK"/log/*.log >&2 2>/dev/null || true
  echo "slurm test: a local Slurm did not start on this machine; the Slurm scripts were not submitted" >&2
  # UNIREAL_SLURM_OPTIONAL=1 (scripts/test.sh): say so and go on; otherwise fail.
  [ "${UNIREAL_SLURM_OPTIONAL:-0}" = 1 ] && exit 0
  exit 1
fi
sinfo -h -o "%P %T %D %N" >&2

# 1. The data build as a 3-task array, against a single build.
export UNIREAL_BIN="$BIN"
# Time limits everywhere: a job that hangs is killed by Slurm, and the wait by `timeout`.
timeout 1200 sbatch --wait --time=15 --array=0-2 --cpus-per-task=1 --mem=2G --output="$WORK/out/data-%A_%a.out" \
  scripts/slurm/data-array.sbatch configs/video.yaml --set "output=$WORK/array" >&2 \
  || { cat "$WORK"/out/data-*.out >&2; echo "slurm test: the data array failed" >&2; exit 1; }
"$BIN/unireal-data" build configs/video.yaml -q --set "output=$WORK/single" >&2
"$BIN/unireal-data" verify "$WORK/array" >&2
ls -d "$WORK"/array/partition-000?-of-0003 >&2
.venv/bin/python - "$WORK/single" "$WORK/array" <<'PY'
import glob, sys
import pyarrow.parquet as pq
def ids(d):
    out = []
    for f in sorted(glob.glob(d + "/**/part-*.parquet", recursive=True)):
        out += pq.read_table(f, columns=["sample_id"]).column("sample_id").to_pylist()
    return out
single, array = ids(sys.argv[1]), ids(sys.argv[2])
assert len(array) == len(set(array)), "a sample id in two partitions"
assert sorted(single) == sorted(array), f"array union {len(array)} ids, single build {len(single)}"
print(f"slurm test: 3-task array = single build: {len(array)} samples")
PY

# 2. Training: 2 MPI ranks through srun.
off="{enabled: false}"
"$BIN/unireal-data" build configs/video.yaml -q --set "output=$WORK/f2f" --set frames.max_side=128 \
  --set "families={multi_object: $off, insertion: $off, object_add: $off, seg: $off, control: $off}" >&2
timeout 1200 sbatch --wait --time=15 --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --mem=4G --output="$WORK/out/train-%j.out" \
  scripts/slurm/train.sbatch configs/train/tiny.yaml "$WORK/run" \
  --set "data.sources=[{path: $WORK/f2f, weight: 1.0}]" --set train.steps=6 --set data.batch_size=2 \
  --set log.val_every=0 --set log.sample_every=0 --set checkpoint.every=0 >&2 \
  || { cat "$WORK"/out/train-*.out >&2; echo "slurm test: the training job failed" >&2; exit 1; }
out=$(cat "$WORK"/out/train-*.out)
hashes=$(echo "$out" | sed -n 's/^rank [0-9]*\/2: weights \([0-9a-f]*\).*/\1/p' | sort -u)
if [ "$(echo "$out" | grep -c '^rank ')" != 2 ] || [ "$(echo "$hashes" | wc -l)" != 1 ]; then
  echo "$out" >&2
  echo "slurm test: the two ranks did not both finish with the same weights" >&2
  exit 1
fi
[ -f "$WORK/run/checkpoints/step-00000006/model.safetensors" ] || { echo "$out" >&2; exit 1; }
echo "slurm test: srun --mpi=pmix, 2 ranks, 6 steps, equal weights ($hashes)"
echo "slurm test: OK"
