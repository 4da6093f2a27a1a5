#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn sample_videos() -> PathBuf {
    repo().join("datasets/samples/videos")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_unireal-data"))
}

/// Writes a build config for `inputs` into `dir/build.yaml`, with `extra` YAML appended.
pub fn write_config(dir: &Path, inputs: &[PathBuf], output: &Path, extra: &str) -> PathBuf {
    let list: Vec<String> = inputs.iter().map(|p| format!("  - {:?}", p.to_string_lossy())).collect();
    let workers = if extra.contains("workers:") { "" } else { "workers: 2\n" };
    let text = format!("inputs:\n{}\noutput: {:?}\n{workers}{extra}", list.join("\n"), output.to_string_lossy());
    let p = dir.join("build.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the ffmpeg CLI (installed by scripts/setup.sh) to make a test clip.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg CLI (scripts/setup.sh installs it)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn sample_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> =
        unireal_shards::ShardReader::open_dir(dir).unwrap().map(|s| s.unwrap().sample_id).collect();
    ids.sort();
    ids
}
