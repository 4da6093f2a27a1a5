//! A data build split over processes (a Slurm array): partitions by a stable hash of the
//! input key; the union of the partitions is the single-process build, sample for sample.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use unireal_data::{run_build, BuildConfig, BuildOptions, Partition};
use unireal_shards::{Manifest, ShardReader};

fn ids(dir: &std::path::Path) -> Vec<String> {
    ShardReader::open_dir(dir).unwrap().map(|s| s.unwrap().sample_id).collect()
}

#[test]
fn the_union_of_three_partitions_is_the_single_build() {
    let work = tempfile::tempdir().unwrap();
    let single = work.path().join("single");
    let parts = work.path().join("parts");
    let cfg = |out: &std::path::Path| -> BuildConfig {
        sample_build_config(out, &SampleShards { config: Some("configs/video.yaml".into()), ..Default::default() })
    };
    let stop = || Arc::new(AtomicBool::new(false));
    run_build(&cfg(&single), &BuildOptions { quiet: true, ..Default::default() }, stop()).unwrap();
    // A partition beside a plain build would never be read: refused.
    let p0 = BuildOptions { quiet: true, partition: Some(Partition::new(0, 3).unwrap()), ..Default::default() };
    let err = run_build(&cfg(&single), &p0, stop()).unwrap_err().to_string();
    assert!(err.contains("holds a run without partitions"), "{err}");
    let mut per_part = Vec::new();
    for i in 0..3 {
        let opts = BuildOptions { quiet: true, partition: Some(Partition::new(i, 3).unwrap()), ..Default::default() };
        let s = run_build(&cfg(&parts), &opts, stop()).unwrap();
        assert_eq!(s.output, parts.join(format!("partition-{i:04}-of-0003")));
        per_part.push(s.manifest.inputs.iter().map(|r| r.path.clone()).collect::<BTreeSet<_>>());
    }
    // Every input in exactly one partition.
    let all: BTreeSet<String> = per_part.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 5);
    assert_eq!(per_part.iter().map(|p| p.len()).sum::<usize>(), 5);
    // The readers see the union: the same sample ids, none twice.
    let (mut a, mut b) = (ids(&single), ids(&parts));
    let n = b.len();
    a.sort();
    b.sort();
    b.dedup();
    assert_eq!(b.len(), n, "a sample id in two partitions");
    assert_eq!(a, b, "partitioned union differs from the single build");
    let union = Manifest::load_dataset(&parts).unwrap().unwrap();
    let one = Manifest::load(&single).unwrap().unwrap();
    assert_eq!(union.totals.rows, one.totals.rows);
    assert_eq!(union.totals.tasks, one.totals.tasks);
    assert_eq!(union.inputs.len(), 5);
    let rep = unireal_shards::verify_dir(&parts).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // The assignment does not depend on the listing order.
    let p = Partition::new(1, 3).unwrap();
    let keys: Vec<String> = all.iter().cloned().collect();
    let owned: Vec<bool> = keys.iter().map(|k| p.owns(k)).collect();
    let owned_rev: Vec<bool> = keys.iter().rev().map(|k| p.owns(k)).collect();
    assert_eq!(owned, owned_rev.into_iter().rev().collect::<Vec<_>>());

    // A missing partition is reported by verify; a single build cannot write over partitions.
    std::fs::remove_dir_all(parts.join("partition-0002-of-0003")).unwrap();
    let rep = unireal_shards::verify_dir(&parts).unwrap();
    assert!(rep.problems.iter().any(|p| p.contains("partition 2 of 3 is missing")), "{:?}", rep.problems);
    let err = run_build(&cfg(&parts), &BuildOptions { quiet: true, ..Default::default() }, stop()).unwrap_err();
    assert!(err.to_string().contains("partitioned build"), "{err}");
}

#[test]
fn slurm_array_variables_choose_the_partition() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    assert_eq!(Partition::from_slurm_env(env(&[])).unwrap(), None);
    let p = Partition::from_slurm_env(env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")])).unwrap();
    assert_eq!(p, Some(Partition { index: 2, count: 3 }));
    // An array 1-3 (MIN 1) maps to partitions 0..2.
    let p = Partition::from_slurm_env(env(&[
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
    ]))
    .unwrap();
    assert_eq!(p, Some(Partition { index: 2, count: 3 }));
    let e =
        Partition::from_slurm_env(env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "3")])).unwrap_err();
    assert!(e.contains("below the count"), "{e}");
    assert!(Partition::from_slurm_env(env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "3")])).is_err());

    // The CLI takes them from the environment (as an array task does) and from flags.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("shards");
    let two = vec![sample_videos().join("bikes.mp4"), sample_videos().join("box.mp4")];
    let cfg = write_build_config(work.path(), &out, &SampleShards { inputs: two, ..SampleShards::frame2frame() });
    for i in 0..2 {
        let o = Command::new(bin())
            .args(["build", "-q"])
            .arg(&cfg)
            .env("SLURM_ARRAY_TASK_ID", i.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.join(format!("partition-{i:04}-of-0002/manifest.json")).is_file());
    }
    let inspect = Command::new(bin()).arg("inspect").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success() && text.contains("frame2frame"), "{text}");
    let o = Command::new(bin())
        .args(["build", "-q", "--shard-index", "2", "--num-shards", "2"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("below the count") && err.contains("hint:"), "{err}");
}
