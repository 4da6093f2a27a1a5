//! The `unireal-data` binary: messages, exit codes, JSON output; `import`'s errors (the
//! importers themselves are tested in unireal-import).

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
    let two = vec![sample_videos().join("bikes.mp4"), sample_videos().join("box.mp4")];
    let cfg = write_build_config(dir.path(), &out, &SampleShards { inputs: two, ..Default::default() });
    assert!(Command::new(bin()).args(["build", "-q"]).arg(&cfg).status().unwrap().success());
    let inspect = Command::new(bin()).arg("inspect").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success() && text.contains("frame2frame") && text.contains("base_prompt"), "{text}");
    let verify = Command::new(bin()).arg("verify").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && text.contains("inputs: 2 ok"), "{text}");

    let python = python();
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

#[test]
fn cli_errors_name_the_format_path_or_column_with_a_hint() {
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(bin()).arg("import").args(args).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let out = work.path().join("o");
    let out = out.to_str().unwrap();
    let (ok, err) = run(&["laion", "x", "--out", out]);
    assert!(
        !ok && err.contains("unknown format `laion`") && err.contains("instructpix2pix") && err.contains("hint:"),
        "{err}"
    );
    let (ok, err) = run(&["images", "/nonexistent/set", "--out", out]);
    assert!(!ok && err.contains("/nonexistent/set") && err.contains("hint:"), "{err}");
    // MagicBrush's files are not InstructPix2Pix's layout: the missing column is named.
    let mb = import_fixtures().join("magicbrush");
    let (ok, err) = run(&["instructpix2pix", mb.to_str().unwrap(), "--out", out]);
    assert!(!ok && err.contains("no column `edit_prompt`") && err.contains("source_img"), "{err}");
    // RefCOCO without its COCO images.
    let tmp = work.path().join("refcoco");
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["instances.json", "refs(unc).p"] {
        std::fs::copy(import_fixtures().join("refcoco").join(f), tmp.join(f)).unwrap();
    }
    let (ok, err) = run(&["refcoco", tmp.to_str().unwrap(), "--out", out]);
    assert!(!ok && err.contains("images_dir"), "{err}");
    let images = import_fixtures().join("images");
    let (ok, err) = run(&["images", images.to_str().unwrap(), "--out", out, "--set", "max_side=3"]);
    assert!(!ok && err.contains("max_side"), "{err}");
    // And a good run prints the shard directory on stdout.
    let o = Command::new(bin()).args(["import", "images"]).arg(&images).args(["--out", out, "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), out);
}
