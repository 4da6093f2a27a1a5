#![allow(dead_code)]
//! Helpers shared by the integration tests: the workspace's (unireal-testkit) and the binary's.

use std::path::PathBuf;
use std::process::Command;

pub use unireal_testkit::*;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_unireal-data"))
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
