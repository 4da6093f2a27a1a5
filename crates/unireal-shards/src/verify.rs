//! A shard directory checked against its manifest, row by row (`unireal-data verify`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::{Manifest, ShardReader, MANIFEST_NAME};

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub shards: usize,
    pub rows: u64,
    pub images: u64,
    /// Every disagreement found, each naming the file (and row).
    pub problems: Vec<String>,
    /// Inputs by outcome: `ok`, `skipped`, `failed (permanent)`, `failed (transient)`, and
    /// `ok (transient trouble)` for ok inputs the next run retries.
    pub inputs: BTreeMap<String, u64>,
}

/// The outcome an input is counted under in [`VerifyReport::inputs`].
pub fn outcome(r: &crate::InputRecord) -> String {
    use crate::{FailureKind, InputStatus};
    match (r.status, r.kind) {
        (InputStatus::Ok, Some(FailureKind::Transient)) => "ok (transient trouble)".into(),
        (InputStatus::Ok, _) => "ok".into(),
        (InputStatus::Skipped, _) => "skipped".into(),
        (InputStatus::Failed, k) => format!("failed ({})", k.unwrap_or(FailureKind::Permanent).as_str()),
    }
}

/// Checks that every listed shard exists with the listed row and task counts, that sample ids
/// are unique, that rows follow the contract (inputs before outputs, at least one output) and
/// that every image decodes to its recorded size; also reports files the manifest does not
/// list. Returns `Err` only when the manifest itself cannot be read.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, String> {
    let manifest = Manifest::load_dataset(dir)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no {MANIFEST_NAME}", dir.display()))?;
    let mut rep = VerifyReport { shards: manifest.shards.len(), ..Default::default() };
    for r in &manifest.inputs {
        *rep.inputs.entry(outcome(r)).or_default() += 1;
    }
    let mut ids = HashSet::new();
    for entry in &manifest.shards {
        let path = dir.join(&entry.file);
        if !path.is_file() {
            rep.problems.push(format!("{}: listed in the manifest but missing", entry.file));
            continue;
        }
        // The trainer reads rows through the page index.
        if let Err(e) = crate::check_index(&path) {
            rep.problems.push(e.to_string());
        }
        let (mut rows, mut tasks) = (0u64, BTreeMap::<String, u64>::new());
        for (row, s) in ShardReader::open_files(vec![path.clone()]).enumerate() {
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    rep.problems.push(e.to_string());
                    break;
                }
            };
            rows += 1;
            *tasks.entry(s.task.as_str().to_string()).or_default() += 1;
            let at = format!("{} row {row} ({})", entry.file, s.sample_id);
            if !ids.insert(s.sample_id.clone()) {
                rep.problems.push(format!("{at}: duplicate sample_id"));
            }
            if let Err(e) = s.check() {
                rep.problems.push(format!("{at}: {e}"));
            }
            if s.base_prompt.trim().is_empty() {
                rep.problems.push(format!("{at}: empty base_prompt"));
            }
            for (i, img) in s.images.iter().enumerate() {
                rep.images += 1;
                match image::load_from_memory(&img.bytes) {
                    Ok(d) if (d.width(), d.height()) == (img.width, img.height) => {}
                    Ok(d) => rep.problems.push(format!(
                        "{at}: image {i} is {}x{}, recorded {}x{}",
                        d.width(),
                        d.height(),
                        img.width,
                        img.height
                    )),
                    Err(e) => rep.problems.push(format!("{at}: image {i} ({}) does not decode: {e}", img.encoding)),
                }
            }
        }
        rep.rows += rows;
        if rows != entry.rows {
            rep.problems.push(format!("{}: {rows} rows, the manifest says {}", entry.file, entry.rows));
        }
        if tasks != entry.tasks {
            rep.problems.push(format!("{}: tasks {tasks:?}, the manifest says {:?}", entry.file, entry.tasks));
        }
    }
    let listed: HashSet<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
    // The dataset's own directory, or each partition's of a partitioned build.
    let mut dirs: Vec<(String, std::path::PathBuf)> = vec![(String::new(), dir.to_path_buf())];
    if !dir.join(MANIFEST_NAME).exists() {
        dirs = crate::partition_dirs(dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(n, p)| (format!("{n}/"), p))
            .collect();
        let counts: HashSet<String> = dirs
            .iter()
            .filter_map(|(n, _)| n.rsplit_once("-of-").map(|x| x.1.trim_end_matches('/').to_string()))
            .collect();
        if let [count] = counts.iter().collect::<Vec<_>>()[..] {
            let n: usize = count.parse().unwrap_or(0);
            for i in 0..n {
                let name = format!("{}/", crate::partition_name(i, n));
                if !dirs.iter().any(|(d, p)| *d == name && p.join(MANIFEST_NAME).exists()) {
                    rep.problems
                        .push(format!("{name}: partition {i} of {n} is missing (its array task has not finished)"));
                }
            }
        } else if counts.len() > 1 {
            rep.problems.push(format!("partitions of different counts in one directory: {counts:?}"));
        }
    }
    for (prefix, d) in &dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if (name.ends_with(".parquet")
                && name.rsplit('/').next().is_some_and(|n| n.starts_with("part-"))
                && !listed.contains(name.as_str()))
                || name.ends_with(".tmp")
            {
                rep.problems.push(format!(
                    "{name}: not listed in the manifest (left by an interrupted build; the next build removes it)"
                ));
            }
        }
    }
    let from_inputs = manifest.inputs.iter().fold(0u64, |n, i| n.saturating_add(i.samples));
    if from_inputs != manifest.totals.rows {
        rep.problems.push(format!(
            "{MANIFEST_NAME}: inputs account for {from_inputs} samples, shards hold {}",
            manifest.totals.rows
        ));
    }
    Ok(rep)
}
