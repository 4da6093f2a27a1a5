//! Fuzzed readers (issue 17): build configs, `--set` values and CSV/JSONL input lists, seeded
//! from the shipped configs. Each is accepted or refused with an error naming the file (or the
//! `--set` argument); none panics. `UNIREAL_FUZZ_CASES=N` runs longer (unireal_testkit::fuzz).

use std::path::Path;

use unireal_core::ConfigError;
use unireal_data::inputs::expand_inputs;
use unireal_data::BuildConfig;
use unireal_testkit::fuzz::{Format, Fuzz, Verdict};

fn shipped_configs() -> Vec<Vec<u8>> {
    ["configs/video.yaml", "configs/video-f2f.yaml"]
        .iter()
        .map(|p| std::fs::read(unireal_testkit::repo().join(p)).unwrap())
        .collect()
}

/// What `unireal-data build` does with a config before it opens a video.
fn check_config(path: &Path, set: &[String], names: &str) -> Result<Verdict, String> {
    let cfg: BuildConfig = match unireal_core::load_config(path, set) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string();
            return match text.contains(names) {
                true => Ok(Verdict::Refused),
                false => Err(format!("the error does not name {names}: {text}")),
            };
        }
    };
    match cfg.validate() {
        Err(m) if m.trim().is_empty() => Err("validate refused with an empty message".into()),
        Err(_) => Ok(Verdict::Refused),
        Ok(()) => {
            let _ = cfg.fingerprint();
            Ok(Verdict::Accepted)
        }
    }
}

#[test]
fn damaged_build_configs_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("video.yaml");
    let dict: &[&[u8]] =
        &[b"~", b": ", b"- ", b"&a ", b"*a", b"!!binary ", b"[", b"{", b".nan", b"-1", b"1e999", b"\t"];
    Fuzz::new("build-config", 1500).format(Format::Yaml).run(&shipped_configs(), dict, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        check_config(&path, &[], &path.display().to_string())
    });
}

/// Every leaf of a YAML tree as `dotted.key=value`.
fn leaves(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or("?");
                let key = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                leaves(&key, v, out);
            }
        }
        leaf => {
            // JSON is YAML's flow style: one line, as on a command line.
            out.push(format!("{prefix}={}", serde_json::to_string(leaf).unwrap()));
        }
    }
}

#[test]
fn damaged_set_values_give_errors_naming_the_argument() {
    let config = unireal_testkit::repo().join("configs/video.yaml");
    let tree: serde_yaml::Value = serde_yaml::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let mut seeds = Vec::new();
    leaves("", &tree, &mut seeds);
    assert!(seeds.len() > 20, "{seeds:?}");
    // Every key with values of other types and at the extremes: these reach validate().
    let odd = ["0", "-1", "1e308", "-1e308", ".nan", "18446744073709551615", "null", "''", "[]", "{}", "x", "[0, 0]"];
    let (mut accepted, mut tried) = (0, 0);
    for seed in &seeds {
        let key = seed.split_once('=').unwrap().0;
        for v in odd {
            let arg = format!("{key}={v}");
            let r = std::panic::catch_unwind(|| check_config(&config, std::slice::from_ref(&arg), "--set"));
            match r {
                Ok(Ok(verdict)) => accepted += usize::from(verdict == Verdict::Accepted),
                Ok(Err(e)) => panic!("--set {arg}: {e}"),
                Err(_) => panic!("--set {arg}: panicked"),
            }
            tried += 1;
        }
    }
    // Values validate() must refuse (each once let a build start that could not work).
    for arg in ["decode_threads=18446744073709551615", "shots.threshold=.nan", "shots.threshold=-1"] {
        assert_eq!(check_config(&config, &[arg.into()], "--set"), Ok(Verdict::Refused), "{arg}");
    }
    eprintln!("set-values: every key with {} odd values: {tried} cases, {accepted} accepted, no panic", odd.len());
    let seeds: Vec<Vec<u8>> = seeds.into_iter().map(String::into_bytes).collect();
    let dict: &[&[u8]] = &[b"=", b".", b"..", b"null", b"[1, 2]", b"{kind: x}", b"-5", b"1e999", b"'", b"objects."];
    Fuzz::new("set-values", 3000).run(&seeds, dict, |bytes| {
        let arg = String::from_utf8_lossy(bytes).into_owned();
        check_config(&config, &[arg], "--set")
    });
}

#[test]
fn damaged_input_lists_give_errors_naming_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let csv = b"path,caption\nvideos/box.mp4,a yellow box on a table\n\"videos/phone, dog.mp4\",\"a dog, \"\"up close\"\"\"\n/abs/bikes.mp4,\n".to_vec();
    let jsonl = b"{\"path\": \"videos/box.mp4\", \"caption\": \"a yellow box\"}\n\n{\"path\": \"/abs/bikes.mp4\", \"caption\": null}\n{\"path\": \"dog.mp4\"}\n".to_vec();
    let exts: Vec<String> = unireal_data::config::DEFAULT_VIDEO_EXTENSIONS.iter().map(|s| s.to_string()).collect();
    let dict: &[&[u8]] =
        &[b",", b"\"", b"\n", b"\r\n", b"path", b"caption", b"{\"path\": 1}", b"\xef\xbb\xbf", b"\xff"];
    for (name, seed) in [("list.csv", csv), ("list.jsonl", jsonl)] {
        let path = dir.path().join(name);
        let spec = path.display().to_string();
        let format = if name.ends_with(".csv") { Format::Bytes } else { Format::Json };
        Fuzz::new(&format!("input-{name}"), 1500).format(format).run(&[seed], dict, |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match expand_inputs(std::slice::from_ref(&spec), &exts, false) {
                Ok(items) => {
                    if items.iter().any(|i| i.key.is_empty()) {
                        return Err(format!("an input with an empty key: {items:?}"));
                    }
                    Ok(Verdict::Accepted)
                }
                Err(e) if e.contains(&spec) => Ok(Verdict::Refused),
                Err(e) => Err(format!("the error does not name {spec}: {e}")),
            }
        });
    }
}

#[test]
fn config_errors_keep_their_kind() {
    // The checks above rely on load_config naming the file: one known case of each kind.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "workers: [").unwrap();
    let e = unireal_core::load_config::<BuildConfig>(&path, &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }) && e.to_string().contains("c.yaml"), "{e}");
    let e = unireal_core::load_config::<BuildConfig>(&shipped(), &["workers".into()]).unwrap_err();
    assert!(e.to_string().contains("--set"), "{e}");
}

fn shipped() -> std::path::PathBuf {
    unireal_testkit::repo().join("configs/video.yaml")
}
