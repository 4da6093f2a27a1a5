//! Helpers shared by the workspace's tests (dev-only, never published): where the repository
//! and its sample data are, build configs over the sample clips (as YAML for the CLI, or typed
//! for an in-process build), and sample shards built in-process.
//!
//! The sample builds need the `video` feature (it links unireal-data, hence FFmpeg); crates
//! that must not link FFmpeg (unireal-import) use this crate with `default-features = false`.

use std::path::{Path, PathBuf};

pub mod fuzz;

use serde_yaml::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// `datasets/samples/videos`: the bundled sample clips (five, see its ATTRIBUTION.md).
pub fn sample_videos() -> PathBuf {
    repo().join("datasets/samples/videos")
}

/// The importer fixtures, one folder per format in its native layout
/// (`scripts/reference/import_fixtures.py` writes them).
pub fn import_fixtures() -> PathBuf {
    repo().join("crates/unireal-import/tests/fixtures/import")
}

/// `configs/video-f2f.yaml`: a Frame2Frame-only build over the sample clips.
pub fn f2f_config() -> PathBuf {
    repo().join("configs/video-f2f.yaml")
}

/// The Python with pyarrow the shard checks run: `UNIREAL_PYTHON`, else `.venv/bin/python`
/// (scripts/setup.sh makes it).
pub fn python() -> PathBuf {
    std::env::var_os("UNIREAL_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// The sample ids of a shard directory, sorted.
pub fn sample_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = unireal_shards::ShardReader::open_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|s| s.unwrap().sample_id)
        .collect();
    ids.sort();
    ids
}

/// The small-object floors (docs/data-format.md, "Mask rules"): `configs/video.yaml` keeps the
/// UniReal toolkit's 1 %-36 % rules; these overrides keep objects down to 0.1 % of the frame.
pub const SMALL_OBJECTS: [&str; 2] = ["objects.filters.min_component=0.0005", "objects.filters.min_area=0.001"];

/// A build over sample clips. `Default`: every clip of [`sample_videos`], the build defaults
/// (`BuildConfig::default()`), 2 workers.
#[derive(Debug, Clone)]
pub struct SampleShards {
    /// Video files or folders (replace the base config's `inputs`).
    pub inputs: Vec<PathBuf>,
    /// Only Frame2Frame: start from `configs/video-f2f.yaml` (the object families off)
    /// instead of the defaults.
    pub frame2frame_only: bool,
    /// Start from this config file instead (relative: to the repository root), e.g.
    /// `configs/video.yaml`. Not together with `frame2frame_only`.
    pub config: Option<PathBuf>,
    /// `frames.max_side` (None: the base config's).
    pub max_side: Option<u32>,
    /// `split.val_fraction` (None: the base config's).
    pub val_fraction: Option<f64>,
    pub workers: usize,
    /// More `--set key=value` overrides, applied last.
    pub set: Vec<String>,
}

impl Default for SampleShards {
    fn default() -> Self {
        SampleShards {
            inputs: vec![sample_videos()],
            frame2frame_only: false,
            config: None,
            max_side: None,
            val_fraction: None,
            workers: 2,
            set: vec![],
        }
    }
}

impl SampleShards {
    /// Frame2Frame only (`configs/video-f2f.yaml`) over every sample clip.
    pub fn frame2frame() -> Self {
        SampleShards { frame2frame_only: true, ..Default::default() }
    }

    /// The build config as a YAML tree: the base file (or nothing: the defaults) with
    /// `inputs`, `output`, `workers` and the options set.
    fn tree(&self, output: &Path) -> Value {
        let base = match (&self.config, self.frame2frame_only) {
            (Some(_), true) => panic!("SampleShards: `config` or `frame2frame_only`, not both"),
            (Some(c), false) => Some(repo().join(c)),
            (None, true) => Some(f2f_config()),
            (None, false) => None,
        };
        let mut tree = match base {
            Some(p) => {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            }
            None => Value::Mapping(Default::default()),
        };
        let path = |p: &Path| Value::String(p.to_string_lossy().into_owned());
        let map = tree.as_mapping_mut().expect("a build config is a mapping");
        map.insert("inputs".into(), Value::Sequence(self.inputs.iter().map(|p| path(p)).collect()));
        map.insert("output".into(), path(output));
        map.insert("workers".into(), (self.workers as u64).into());
        let mut sets: Vec<String> = vec![];
        if let Some(m) = self.max_side {
            sets.push(format!("frames.max_side={m}"));
        }
        if let Some(v) = self.val_fraction {
            sets.push(format!("split.val_fraction={v:?}"));
        }
        for s in sets.iter().chain(&self.set) {
            unireal_core::apply_override(&mut tree, s).unwrap_or_else(|e| panic!("--set {s}: {e}"));
        }
        tree
    }
}

/// Writes the build config of `opts` into `dir/build.yaml`, with its shards going to
/// `output`, for `unireal-data build`; returns the file.
pub fn write_build_config(dir: &Path, output: &Path, opts: &SampleShards) -> PathBuf {
    let p = dir.join("build.yaml");
    std::fs::write(&p, serde_yaml::to_string(&opts.tree(output)).unwrap()).unwrap();
    p
}

#[cfg(feature = "video")]
pub use video::*;

#[cfg(feature = "video")]
mod video {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use unireal_data::{run_build, BuildConfig, BuildOptions, BuildSummary};

    use super::SampleShards;

    /// The typed build config of `opts`, its shards going to `output` (as
    /// [`write_build_config`](super::write_build_config) writes it).
    pub fn sample_build_config(output: &Path, opts: &SampleShards) -> BuildConfig {
        let text = serde_yaml::to_string(&opts.tree(output)).unwrap();
        unireal_core::parse_config_str(&text, "SampleShards").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds `opts` into `output` in-process (resuming what is there, no progress bars);
    /// panics on error.
    pub fn build_samples(output: &Path, opts: &SampleShards) -> BuildSummary {
        let cfg = sample_build_config(output, opts);
        let run = BuildOptions { force: false, quiet: true, ..Default::default() };
        run_build(&cfg, &run, Arc::new(AtomicBool::new(false))).unwrap_or_else(|e| panic!("sample build: {e}"))
    }

    /// Builds `opts` into `dir/shards` in-process and returns that directory.
    pub fn build_sample_shards(dir: &Path, opts: &SampleShards) -> PathBuf {
        let out = dir.join("shards");
        build_samples(&out, opts);
        out
    }
}

/// Copies the tree `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A build or import into `out` that ran out of disk with error `err`: the error names the
/// disk and `out`, only finished shards and a valid manifest are left, at least one shard.
pub fn assert_stopped_cleanly_on_a_full_disk(out: &Path, err: &str) {
    assert!(err.contains("No space left on device") && err.contains(&*out.to_string_lossy()), "{err}");
    for e in std::fs::read_dir(out).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(n == "manifest.json" || (n.starts_with("part-") && n.ends_with(".parquet")), "left behind: {n}");
    }
    let rep = unireal_shards::verify_dir(out).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(rep.shards >= 1, "the test wants at least one shard written before the disk is full");
}

/// A tmpfs of `size` mounted at a fresh directory for the test's life; None (after saying
/// why) when this process cannot mount one (not root, or a container without the right).
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipping the full-disk test: cannot mount a tmpfs here (it needs root)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Grows (or shrinks) the filesystem: the test's way of freeing space.
    pub fn resize(&self, size: &str) {
        let o = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_is_the_base_file_with_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SampleShards {
            frame2frame_only: true,
            max_side: Some(128),
            set: vec!["shards.target_size_mb=0.25".into()],
            ..Default::default()
        };
        let p = write_build_config(dir.path(), &dir.path().join("out"), &opts);
        let v: Value = serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(v["inputs"][0].as_str().unwrap(), sample_videos().to_string_lossy());
        assert_eq!(v["workers"].as_u64(), Some(2));
        assert_eq!(v["frames"]["max_side"].as_u64(), Some(128));
        assert_eq!(v["shards"]["target_size_mb"].as_f64(), Some(0.25));
        assert_eq!(v["families"]["seg"]["enabled"].as_bool(), Some(false));
    }

    /// configs/video-f2f.yaml is the defaults with every family but Frame2Frame off.
    #[cfg(feature = "video")]
    #[test]
    fn video_f2f_is_the_defaults_with_only_frame2frame() {
        let out = Path::new("/tmp/out");
        let got = sample_build_config(out, &SampleShards::frame2frame());
        let mut want = sample_build_config(out, &SampleShards::default());
        let f = &mut want.families;
        for fam in [&mut f.multi_object, &mut f.insertion, &mut f.object_add, &mut f.seg, &mut f.control] {
            fam.enabled = false;
        }
        assert_eq!(got, want);
        let file: unireal_data::BuildConfig = unireal_core::load_config(&f2f_config(), &[]).unwrap();
        assert_eq!(file.families, got.families);
        assert_eq!(file.inputs, ["datasets/samples/videos"]);
    }
}
