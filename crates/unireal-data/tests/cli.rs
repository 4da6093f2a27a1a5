//! The `unireal-data` binary: messages, exit codes, JSON output.

mod common;

use std::process::Command;

use common::*;

#[test]
fn shots_json_has_one_line_per_file() {
    let out = Command::new(bin())
        .args(["shots", "--json"])
        .arg(sample_videos().join("bikes.mp4"))
        .arg(sample_videos().join("box.mp4"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["frames"], 250);
    assert_eq!(lines[0]["cuts_frame"].as_array().unwrap().len(), 5);
    assert_eq!(lines[0]["cuts_s"].as_array().unwrap().len(), 5);
    assert!(lines[0]["path"].as_str().unwrap().ends_with("bikes.mp4"));
    assert!((lines[0]["fps"].as_f64().unwrap() - 25.0).abs() < 1e-9);
    assert_eq!(lines[1]["cuts_frame"].as_array().unwrap().len(), 0);
}

#[test]
fn config_errors_name_the_key_and_line_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "inputs: [x]\noutput: o\npairs:\n  ssim_maxx: 0.9\n").unwrap();
    let out = Command::new(bin()).arg("build").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:4:") && err.contains("ssim_maxx"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    std::fs::write(&cfg, "inputs: [x]\noutput: o\n").unwrap();
    let out = Command::new(bin()).arg("build").arg(&cfg).args(["--set", "pairs.ssim_min=0.99"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pairs.ssim_min"), "{err}");

    let out = Command::new(bin()).args(["import", "x", "y", "--out", "z"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown format `x`") && err.contains("hint:"), "{err}");
}

#[test]
fn pyarrow_reads_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let cfg = write_config(dir.path(), &[sample_videos().join("bikes.mp4"), sample_videos().join("box.mp4")], &out, "");
    assert!(Command::new(bin()).args(["build", "-q"]).arg(&cfg).status().unwrap().success());
    let inspect = Command::new(bin()).arg("inspect").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success() && text.contains("frame2frame") && text.contains("base_prompt"), "{text}");
    let verify = Command::new(bin()).arg("verify").arg(&out).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    let python = std::env::var("UNIREAL_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join(".venv/bin/python"));
    let res = Command::new(&python).arg(repo().join("scripts/check_shards.py")).arg(&out).output();
    let res = res.unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e}\nhint: run scripts/setup.sh (it makes .venv with pyarrow) or set UNIREAL_PYTHON",
            python.display()
        )
    });
    assert!(
        res.status.success(),
        "pyarrow check failed:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(String::from_utf8_lossy(&res.stdout).contains("OK"));

    // The gallery: one self-contained page, every image of each shown sample embedded.
    let html_path = dir.path().join("g/gallery.html");
    let p = Command::new(bin())
        .arg("preview")
        .arg(&out)
        .arg("--out")
        .arg(&html_path)
        .args(["--per-task", "3"])
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    let samples: Vec<_> = unireal_shards::ShardReader::open_dir(&out).unwrap().map(|s| s.unwrap()).collect();
    let mut per_task = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for s in &samples {
        per_task.entry(s.task.as_str()).or_default().push(s.images.len());
    }
    assert!(per_task.len() >= 4, "{per_task:?}");
    let shown_images: usize = per_task.values().map(|v| v.iter().take(3).sum::<usize>()).sum();
    assert_eq!(html.matches("<img src=\"data:image/jpeg;base64,").count(), shown_images);
    for (t, v) in &per_task {
        assert_eq!(html.matches(&format!("<article class=\"card\" data-task=\"{t}\"")).count(), v.len().min(3), "{t}");
        assert!(html.contains(&format!("<button data-task=\"{t}\">")), "filter button for {t}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing is fetched from elsewhere");
    for role in ["canvas", "output"] {
        assert!(html.contains(&format!("role-{role}")), "{role}");
    }
    let only = Command::new(bin())
        .arg("preview")
        .arg(&out)
        .arg("--out")
        .arg(&html_path)
        .args(["--task", "seg"])
        .output()
        .unwrap();
    assert!(only.status.success());
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("data-task=\"seg\"") && !html.contains("<article class=\"card\" data-task=\"frame2frame\""));
    let bad = Command::new(bin()).args(["preview", "/nonexistent/shards"]).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("/nonexistent/shards") && err.contains("hint:"), "{err}");
}
