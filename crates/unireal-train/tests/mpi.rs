//! Data-parallel training over MPI (`--features mpi`; scripts/test.sh runs it):
//! `mpirun -np 2` with per-rank batch B equals one process with batch 2B step for step, the
//! ranks end with identical weights (with per-block recomputation too), and a run resumes with
//! the same world size only; a rank that fails, hangs or dies ends the job.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::losses;
use unireal_testkit::SampleShards;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_unireal-train")
}

/// Frame2Frame shards of the sample clips at 128 px (`configs/video-f2f.yaml`: one image
/// signature, so that batches of B and 2B hold the same samples).
fn shards(dir: &Path) -> PathBuf {
    let opts = SampleShards { max_side: Some(128), val_fraction: Some(0.0), ..SampleShards::frame2frame() };
    unireal_testkit::build_sample_shards(dir, &opts)
}

/// The tiny model at 32 px, one bucket (square), text dropout on (it must stay in step).
fn config(dir: &Path, shards: &Path) -> PathBuf {
    let text = format!(
        r#"
model:
  preset: tiny
  latent: {{kind: space_to_depth, factor: 2}}
  text: {{kind: bytes, width: 64, layers: 2, max_len: 64}}
data:
  sources: [{{path: {:?}, weight: 1.0}}]
  resolution: 32
  aspect_ratios: [1.0]
  batch_size: 4
  workers: 1
  drop_text: 0.2
  drop_images: 0.0
train:
  steps: 10
  seed: 3
  lr: 0.001
  schedule: {{kind: constant, warmup: 0}}
  grad_clip: 1.0
  ema_decay: 0.9
log: {{val_every: 0, sample_every: 0}}
checkpoint: {{every: 5, keep: 3}}
"#,
        shards.to_string_lossy()
    );
    let p = dir.join("train.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `mpirun` with this machine's options, before the ranks' programs.
fn mpirun_command() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe"])
        // Containers often forbid the cross-memory-attach copy path; plain shared memory works.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c
}

fn mpirun(np: usize, args: &[&str]) -> Output {
    mpirun_command()
        .args(["-np", &np.to_string(), bin()])
        .args(args)
        .output()
        .expect("mpirun (scripts/setup.sh installs openmpi-bin)")
}

/// Two ranks (mpirun's MPMD form) on `cfg` and `run`, rank 1 with `rank1` added to its arguments.
fn two_ranks_differing(cfg: &str, run: &str, rank1: &[&str]) -> Command {
    let common = ["--config", cfg, "-q", "--set", "data.batch_size=2", "--run-dir", run];
    let mut c = mpirun_command();
    c.args(["-np", "1", bin()]).args(common).args([":", "-np", "1", bin()]).args(common).args(rank1);
    c
}

fn hashes(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("rank ")?;
            let (rank, rest) = rest.split_once(": weights ")?;
            Some((rank.to_string(), rest.split_whitespace().next()?.to_string()))
        })
        .collect()
}

#[test]
fn two_ranks_of_batch_b_equal_one_process_of_batch_2b() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &shards(work.path()));
    let cfg = cfg.to_str().unwrap();
    let single = work.path().join("single");
    let o = Command::new(bin()).args(["--config", cfg, "-q", "--run-dir"]).arg(&single).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let dp = work.path().join("dp");
    let o = mpirun(2, &["--config", cfg, "-q", "--set", "data.batch_size=2", "--run-dir", dp.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let (a, b) = (losses(&single), losses(&dp));
    assert_eq!(a.len(), 10);
    assert_eq!(a.len(), b.len());
    for ((s, x), (_, y)) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "step {s}: one process {x}, two ranks {y}");
    }
    // Both ranks hold the same weights at the end.
    let h = hashes(&err);
    assert_eq!(h.len(), 2, "{err}");
    assert_eq!(h[0].1, h[1].1, "ranks diverged: {h:?}");

    // Per-block recomputation: each rank's gradients come in per block, all-reduced once the
    // micro-batch is complete; the same losses as one process without it.
    let blocks = work.path().join("blocks");
    let o = mpirun(
        2,
        &[
            "--config",
            cfg,
            "-q",
            "--set",
            "data.batch_size=2",
            "--set",
            "train.activation_checkpointing=blocks",
            "--run-dir",
            blocks.to_str().unwrap(),
        ],
    );
    let berr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{berr}");
    for ((s, x), (_, y)) in a.iter().zip(&losses(&blocks)) {
        assert!((x - y).abs() < 1e-5, "step {s}: one process {x}, two ranks recomputing per block {y}");
    }
    let hb = hashes(&berr);
    assert_eq!(hb.len(), 2, "{berr}");
    assert_eq!(hb[0].1, hb[1].1, "ranks diverged with per-block recomputation: {hb:?}");
    // Only rank 0 wrote: one metrics line per step, one set of checkpoints.
    assert!(dp.join("checkpoints/step-00000010/model.safetensors").is_file());
    let lines = std::fs::read_to_string(dp.join("metrics.jsonl")).unwrap();
    assert!(lines.lines().all(|l| l.contains("\"world_size\":2")), "{lines}");

    // Resume with the same world size: steps 6-10 again give the same losses.
    let part = work.path().join("part");
    let p = part.to_str().unwrap();
    let o = mpirun(2, &["--config", cfg, "-q", "--set", "data.batch_size=2", "--set", "train.steps=5", "--run-dir", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = mpirun(2, &["--run-dir", p, "--resume", "-q", "--set", "data.batch_size=2", "--set", "train.steps=10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed = losses(&part);
    assert_eq!(resumed.len(), 10);
    for ((s, x), (_, y)) in b.iter().zip(&resumed) {
        assert!((x - y).abs() < 1e-6, "step {s}: uninterrupted {x}, resumed {y}");
    }
    // With another world size it is refused, naming both.
    let o = Command::new(bin()).args(["--run-dir", p, "--resume", "-q", "--set", "train.steps=12"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("trained on 2 process(es)"), "{err}");
}

/// Ranks started with different models (here a wider text encoder on rank 1, through
/// mpirun's MPMD form) would exchange misaligned buffers: every rank stops at setup with the
/// same clear error instead of a hang or a silently wrong all-reduce.
#[test]
fn ranks_with_different_models_are_refused_on_every_rank() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &shards(work.path()));
    let cfg = cfg.to_str().unwrap();
    let run = work.path().join("mixed");
    let run = run.to_str().unwrap();
    let o = two_ranks_differing(cfg, run, &["--set", "model.text.width=32"])
        .output()
        .expect("mpirun (scripts/setup.sh installs openmpi-bin)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    for rank in 0..2 {
        assert!(
            err.contains(&format!("the 2 ranks disagree on the trained weights (count and sizes): rank {rank} has")),
            "rank {rank} did not report the mismatch: {err}"
        );
    }
}

/// An error on one rank only (here rank 1's data source does not exist) ends the whole job
/// with the error printed, instead of leaving rank 0 waiting in the gradients' all-reduce.
#[test]
fn an_error_on_one_rank_ends_the_job() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &shards(work.path()));
    let cfg = cfg.to_str().unwrap();
    let run = work.path().join("one-fails");
    let run = run.to_str().unwrap();
    let missing = work.path().join("no-such-shards");
    let sources = format!("data.sources=[{{path: {}, weight: 1.0}}]", missing.display());
    let mut child = two_ranks_differing(cfg, run, &["--set", &sources])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun (scripts/setup.sh installs openmpi-bin)");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the job did not end within 180 s: rank 0 is waiting for rank 1");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("rank 1: error:") && err.contains("no-such-shards"), "{err}");
}

/// The pid of the rank-`rank` process training into `run` (mpirun's child: its environment
/// names the rank, its command line the run directory).
fn rank_pid(rank: usize, run: &str) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let has = |hay: &[u8], needle: &[u8]| hay.split(|b| *b == 0).any(|part| part == needle);
        (has(&env, want.as_bytes()) && has(&cmd, run.as_bytes()) && has(&cmd, bin().as_bytes())).then_some(pid)
    })
}

/// Waits for `child` at most `limit`, then makes sure `straggler` (a rank) is gone; the job's
/// status and stderr, or a panic naming `what`.
fn wait_for(
    mut child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
    straggler: u32,
) -> (std::process::ExitStatus, String) {
    // Read while waiting: a full pipe would block mpirun.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
        err
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = Command::new("kill").args(["-KILL", &straggler.to_string()]).status();
            panic!("{what}: the job did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // (a stopped rank left behind would hold the pipe open)
    let _ = Command::new("kill").args(["-KILL", &straggler.to_string()]).stderr(std::process::Stdio::null()).status();
    (status, reader.join().unwrap())
}

/// A rank that stops answering (SIGSTOP: a hung node) ends the job through the others'
/// `train.collective_timeout_s`, with the operation named; a rank that dies (SIGKILL) ends it
/// at once (mpirun). Neither leaves a rank waiting.
#[test]
fn a_rank_that_hangs_or_dies_ends_the_job() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), &shards(work.path()));
    let cfg = cfg.to_str().unwrap();
    for (signal, name) in [("-STOP", "hangs"), ("-KILL", "dies")] {
        let run = work.path().join(name);
        let run_s = run.to_str().unwrap();
        let child = mpirun_command()
            .args(["-np", "2", bin(), "--config", cfg, "-q", "--run-dir", run_s])
            .args([
                "--set",
                "train.steps=100000",
                "--set",
                "train.collective_timeout_s=5",
                "--set",
                "checkpoint.every=0",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mpirun (scripts/setup.sh installs openmpi-bin)");
        // Once rank 0 has logged a step, both ranks are in the training loop.
        let started = std::time::Instant::now();
        while !std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|t| t.lines().count() >= 2) {
            assert!(started.elapsed().as_secs() < 120, "{name}: no step logged within 120 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let pid = rank_pid(1, run_s).expect("rank 1's process");
        assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
        let stopped = std::time::Instant::now();
        let (status, err) = wait_for(child, std::time::Duration::from_secs(90), name, pid);
        assert!(!status.success(), "{name}: {err}");
        println!("rank 1 {name}: the job ended {:.1} s later", stopped.elapsed().as_secs_f64());
        if name == "hangs" {
            assert!(
                err.contains("rank 0: error: an all-reduce has waited")
                    && err.contains("train.collective_timeout_s = 5"),
                "{err}"
            );
        }
    }
}
