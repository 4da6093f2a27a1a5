//! Expanding `inputs:` into a list of videos.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One input to process: a video, or a file found beside the videos that is recorded as skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct InputItem {
    pub path: PathBuf,
    /// How the video is named in the manifest and in sample ids: its path as found, with `/`.
    pub key: String,
    /// A caption given with the video in a list file.
    pub caption: Option<String>,
    /// How the file was found, which decides what its record says when it holds no video.
    pub origin: Origin,
}

/// How an input was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named in `inputs:` or in a list, or found in a directory or glob by one of
    /// `video_extensions`: a file without a readable video is a failed input.
    Listed,
    /// Found in a directory or glob without a video extension while `probe_all_files` is on:
    /// FFmpeg decides by content, and a file it cannot read as video is skipped.
    Probed,
    /// Found in a directory or glob without a video extension: recorded as skipped (so that
    /// the manifest accounts for every file it scanned) and never opened.
    OtherExtension,
}

/// The manifest's reason for an [`Origin::OtherExtension`] file.
pub const NOT_A_VIDEO_EXTENSION: &str = "not a video extension";

fn key_of(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(String::from).unwrap_or(s)
}

fn item(path: PathBuf, caption: Option<String>) -> InputItem {
    InputItem { key: key_of(&path), path, caption, origin: Origin::Listed }
}

/// A file found in a directory or glob: listed by its extension, else probed or skipped.
fn found(path: PathBuf, exts: &[String], probe: bool) -> InputItem {
    let origin = match (has_ext(&path, exts), probe) {
        (true, _) => Origin::Listed,
        (false, true) => Origin::Probed,
        (false, false) => Origin::OtherExtension,
    };
    InputItem { origin, ..item(path, None) }
}

fn has_ext(path: &Path, exts: &[String]) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(&e)))
}

/// Every regular file under `dir`, sorted, hidden ones (and our own temporary files) and
/// shard directories (a `manifest.json` of this format) left out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(false);
        if name {
            continue; // hidden files, and our own temporary files
        }
        if p.is_dir() {
            // A shard directory (an output kept beside the videos) is not input.
            match unireal_shards::Manifest::load(&p) {
                Ok(Some(_)) => eprintln!("note: not scanning {}: it is a shard directory", p.display()),
                _ => walk(&p, out)?,
            }
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

fn resolve(list: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        list.parent().unwrap_or(Path::new("")).join(p)
    }
}

/// A CSV list: a header with a `path` column and optionally `caption`. Paths are relative to
/// the list file.
fn read_csv(list: &Path) -> Result<Vec<InputItem>, String> {
    let mut r =
        csv::ReaderBuilder::new().flexible(false).from_path(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let headers = r.headers().map_err(|e| format!("{}: {e}", list.display()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let path_col = col("path").ok_or_else(|| {
        format!(
            "{}: line 1: the header has no `path` column (found: {})",
            list.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        )
    })?;
    let cap_col = col("caption");
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: line {}: {e}", list.display(), i + 2))?;
        let p = rec.get(path_col).unwrap_or("").trim();
        if p.is_empty() {
            return Err(format!("{}: line {}: empty `path`", list.display(), i + 2));
        }
        let caption = cap_col.and_then(|c| rec.get(c)).map(str::trim).filter(|c| !c.is_empty()).map(String::from);
        out.push(item(resolve(list, p), caption));
    }
    Ok(out)
}

/// A JSONL list: one `{"path": …, "caption": …}` object per line.
fn read_jsonl(list: &Path) -> Result<Vec<InputItem>, String> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}: line {}: {e}", list.display(), i + 1))?;
        let p = v
            .get("path")
            .and_then(|p| p.as_str())
            .ok_or_else(|| format!("{}: line {}: no string field `path`", list.display(), i + 1))?;
        let caption = match v.get("caption") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Some(_) => return Err(format!("{}: line {}: `caption` must be a string", list.display(), i + 1)),
        };
        out.push(item(resolve(list, p), caption));
    }
    Ok(out)
}

/// Expands the `inputs:` entries. Every file a directory or glob holds becomes an item: the
/// ones with a video extension as videos, the others probed by content (`probe`) or recorded
/// as skipped. A missing directory, a directory or glob without a single video file (with
/// `probe`: without a single file), or a malformed list is an error naming the entry; a named
/// file that is missing is kept, so that the build records it as failed and goes on.
pub fn expand_inputs(specs: &[String], exts: &[String], probe: bool) -> Result<Vec<InputItem>, String> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let at = |m: String| format!("inputs[{i}] `{spec}`: {m}");
        let path = Path::new(spec);
        let lower = spec.to_lowercase();
        // A directory's or a glob's files, sorted: an error when not one is a video.
        let scanned = |mut files: Vec<PathBuf>, what: &str| -> Result<Vec<InputItem>, String> {
            files.sort();
            let found: Vec<InputItem> = files.into_iter().map(|p| found(p, exts, probe)).collect();
            if !found.iter().all(|f| f.origin == Origin::OtherExtension) {
                return Ok(found);
            }
            Err(at(match probe {
                true => format!("{what} no file"),
                false => format!("{what} no file with a video extension ({})", exts.join(", ")),
            }))
        };
        if path.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files).map_err(at)?;
            out.extend(scanned(files, "this directory holds")?);
        } else if lower.ends_with(".csv") {
            out.extend(read_csv(path).map_err(at)?);
        } else if lower.ends_with(".jsonl") {
            out.extend(read_jsonl(path).map_err(at)?);
        } else if spec.contains(['*', '?', '[']) && !path.exists() {
            let files: Vec<PathBuf> =
                glob::glob_with(spec, glob::MatchOptions { require_literal_leading_dot: true, ..Default::default() })
                    .map_err(|e| at(e.to_string()))?
                    .filter_map(|r| r.ok())
                    .filter(|p| p.is_file())
                    .collect();
            out.extend(scanned(files, "the pattern matches")?);
        } else {
            out.push(item(path.to_path_buf(), None));
        }
    }
    let mut seen = HashSet::new();
    out.retain(|i| seen.insert(i.key.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_globs_and_lists() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for f in ["a.mp4", "sub/b.MOV", "notes.txt", ".hidden.mp4"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let exts: Vec<String> = vec!["mp4".into(), "mov".into()];
        let dir = [root.to_string_lossy().into_owned()];
        let got = expand_inputs(&dir, &exts, false).unwrap();
        let names: Vec<(String, Origin)> =
            got.iter().map(|i| (i.path.file_name().unwrap().to_string_lossy().into_owned(), i.origin)).collect();
        assert_eq!(
            names,
            [
                ("a.mp4".into(), Origin::Listed),
                ("notes.txt".into(), Origin::OtherExtension),
                ("b.MOV".into(), Origin::Listed)
            ]
        );
        // Probing by content: the other files are opened too.
        let got = expand_inputs(&dir, &exts, true).unwrap();
        assert_eq!(got.iter().map(|i| i.origin).collect::<Vec<_>>(), [Origin::Listed, Origin::Probed, Origin::Listed]);

        let g = format!("{}/*.mp4", root.display());
        assert_eq!(expand_inputs(&[g], &exts, false).unwrap().len(), 1);
        let got = expand_inputs(&[format!("{}/*", root.display())], &exts, false).unwrap();
        assert_eq!(got.iter().filter(|i| i.origin == Origin::OtherExtension).count(), 1);
        let err = expand_inputs(&[format!("{}/*.mkv", root.display())], &exts, false).unwrap_err();
        assert!(err.contains("inputs[0]") && err.contains("matches no"), "{err}");
        let err = expand_inputs(&[format!("{}/*.txt", root.display())], &exts, false).unwrap_err();
        assert!(err.contains("no file with a video extension (mp4, mov)"), "{err}");
        assert_eq!(expand_inputs(&[format!("{}/*.txt", root.display())], &exts, true).unwrap().len(), 1);
        let only_text = tempfile::tempdir().unwrap();
        std::fs::write(only_text.path().join("readme.md"), b"x").unwrap();
        let err = expand_inputs(&[only_text.path().to_string_lossy().into_owned()], &exts, false).unwrap_err();
        assert!(err.contains("this directory holds no file with a video extension"), "{err}");

        std::fs::write(root.join("list.csv"), "path,caption\na.mp4,Make it rain.\nsub/b.MOV,\n").unwrap();
        let got = expand_inputs(&[root.join("list.csv").to_string_lossy().into_owned()], &exts, false).unwrap();
        assert_eq!(got[0].caption.as_deref(), Some("Make it rain."));
        assert_eq!(got[1].caption, None);
        assert!(got[1].path.ends_with("sub/b.MOV"));

        std::fs::write(root.join("list.jsonl"), "{\"path\": \"a.mp4\", \"caption\": \"x\"}\n{\"file\": 1}\n").unwrap();
        let err = expand_inputs(&[root.join("list.jsonl").to_string_lossy().into_owned()], &exts, false).unwrap_err();
        assert!(err.contains("line 2") && err.contains("path"), "{err}");

        std::fs::write(root.join("bad.csv"), "file\nx\n").unwrap();
        let err = expand_inputs(&[root.join("bad.csv").to_string_lossy().into_owned()], &exts, false).unwrap_err();
        assert!(err.contains("line 1") && err.contains("`path`"), "{err}");
    }
}
