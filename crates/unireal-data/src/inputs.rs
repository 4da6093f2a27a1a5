//! Expanding `inputs:` into a list of videos.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One video to process.
#[derive(Debug, Clone, PartialEq)]
pub struct InputItem {
    pub path: PathBuf,
    /// How the video is named in the manifest and in sample ids: its path as found, with `/`.
    pub key: String,
    /// A caption given with the video in a list file.
    pub caption: Option<String>,
}

fn key_of(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(String::from).unwrap_or(s)
}

fn item(path: PathBuf, caption: Option<String>) -> InputItem {
    InputItem { key: key_of(&path), path, caption }
}

fn has_ext(path: &Path, exts: &[String]) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(&e)))
}

fn walk(dir: &Path, exts: &[String], out: &mut Vec<PathBuf>) -> Result<(), String> {
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
            walk(&p, exts, out)?;
        } else if has_ext(&p, exts) {
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

/// Expands the `inputs:` entries. A missing directory, a glob that matches nothing or a
/// malformed list is an error naming the entry; a named file that is missing is kept, so
/// that the build records it as failed and goes on.
pub fn expand_inputs(specs: &[String], exts: &[String]) -> Result<Vec<InputItem>, String> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let at = |m: String| format!("inputs[{i}] `{spec}`: {m}");
        let path = Path::new(spec);
        let lower = spec.to_lowercase();
        if path.is_dir() {
            let mut files = Vec::new();
            walk(path, exts, &mut files).map_err(at)?;
            if files.is_empty() {
                return Err(at(format!("no files with a video extension ({}) in this directory", exts.join(", "))));
            }
            out.extend(files.into_iter().map(|p| item(p, None)));
        } else if lower.ends_with(".csv") {
            out.extend(read_csv(path).map_err(at)?);
        } else if lower.ends_with(".jsonl") {
            out.extend(read_jsonl(path).map_err(at)?);
        } else if spec.contains(['*', '?', '[']) && !path.exists() {
            let mut files: Vec<PathBuf> =
                glob::glob_with(spec, glob::MatchOptions { require_literal_leading_dot: true, ..Default::default() })
                    .map_err(|e| at(e.to_string()))?
                    .filter_map(|r| r.ok())
                    .filter(|p| p.is_file() && has_ext(p, exts))
                    .collect();
            files.sort();
            if files.is_empty() {
                return Err(at("the pattern matches no video file".into()));
            }
            out.extend(files.into_iter().map(|p| item(p, None)));
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
        let got = expand_inputs(&[root.to_string_lossy().into_owned()], &exts).unwrap();
        let names: Vec<String> =
            got.iter().map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.mp4", "b.MOV"]);

        let g = format!("{}/*.mp4", root.display());
        assert_eq!(expand_inputs(&[g], &exts).unwrap().len(), 1);
        let err = expand_inputs(&[format!("{}/*.mkv", root.display())], &exts).unwrap_err();
        assert!(err.contains("inputs[0]") && err.contains("matches no"), "{err}");

        std::fs::write(root.join("list.csv"), "path,caption\na.mp4,Make it rain.\nsub/b.MOV,\n").unwrap();
        let got = expand_inputs(&[root.join("list.csv").to_string_lossy().into_owned()], &exts).unwrap();
        assert_eq!(got[0].caption.as_deref(), Some("Make it rain."));
        assert_eq!(got[1].caption, None);
        assert!(got[1].path.ends_with("sub/b.MOV"));

        std::fs::write(root.join("list.jsonl"), "{\"path\": \"a.mp4\", \"caption\": \"x\"}\n{\"file\": 1}\n").unwrap();
        let err = expand_inputs(&[root.join("list.jsonl").to_string_lossy().into_owned()], &exts).unwrap_err();
        assert!(err.contains("line 2") && err.contains("path"), "{err}");

        std::fs::write(root.join("bad.csv"), "file\nx\n").unwrap();
        let err = expand_inputs(&[root.join("bad.csv").to_string_lossy().into_owned()], &exts).unwrap_err();
        assert!(err.contains("line 1") && err.contains("`path`"), "{err}");
    }
}
