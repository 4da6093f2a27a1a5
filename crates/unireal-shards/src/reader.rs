//! Streaming reads of shards.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use unireal_core::Sample;

use crate::manifest::Manifest;
use crate::schema::batch_to_samples;
use crate::{io_err, Result, ShardError};

fn open_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(io_err(path))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| ShardError::Parquet { path: path.to_path_buf(), source })
}

/// The `sample_id` column of one shard file.
pub fn read_sample_ids(path: &Path) -> Result<Vec<String>> {
    let builder = open_builder(path)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["sample_id"]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|source| ShardError::Parquet { path: path.to_path_buf(), source })?;
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| ShardError::Arrow { path: path.to_path_buf(), source })?;
        let col = batch
            .column_by_name("sample_id")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .ok_or_else(|| ShardError::Row {
                path: path.to_path_buf(),
                row: ids.len(),
                message: "no sample_id string column: not a unireal shard".into(),
            })?;
        ids.extend(col.iter().map(|v| v.unwrap_or_default().to_string()));
    }
    Ok(ids)
}

/// Streams the samples of a shard directory (the shards its manifest lists, in order), or of
/// single shard files. Memory holds one small batch at a time.
pub struct ShardReader {
    files: VecDeque<PathBuf>,
    current: Option<(PathBuf, ParquetRecordBatchReader, usize)>,
    pending: VecDeque<Sample>,
    batch_size: usize,
}

impl ShardReader {
    /// The shards of a directory with a manifest (or of every partition of a partitioned build).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let m = Manifest::load_dataset(dir)?.ok_or_else(|| ShardError::Manifest {
            path: dir.join(crate::MANIFEST_NAME),
            message: "no manifest: not a shard directory, or a build that never started".into(),
        })?;
        Ok(Self::open_files(m.shards.iter().map(|s| dir.join(&s.file)).collect()))
    }

    pub fn open_files(files: Vec<PathBuf>) -> Self {
        ShardReader { files: files.into(), current: None, pending: VecDeque::new(), batch_size: 16 }
    }

    fn next_inner(&mut self) -> Result<Option<Sample>> {
        loop {
            if let Some(s) = self.pending.pop_front() {
                return Ok(Some(s));
            }
            if self.current.is_none() {
                let Some(path) = self.files.pop_front() else { return Ok(None) };
                let reader = open_builder(&path)?
                    .with_batch_size(self.batch_size)
                    .build()
                    .map_err(|source| ShardError::Parquet { path: path.clone(), source })?;
                self.current = Some((path, reader, 0));
            }
            let (path, reader, row) = self.current.as_mut().expect("set above");
            match reader.next() {
                None => self.current = None,
                Some(batch) => {
                    let batch = batch.map_err(|source| ShardError::Arrow { path: path.clone(), source })?;
                    let samples = batch_to_samples(&batch).map_err(|(r, message)| ShardError::Row {
                        path: path.clone(),
                        row: *row + r,
                        message,
                    })?;
                    *row += batch.num_rows();
                    self.pending.extend(samples);
                }
            }
        }
    }
}

impl Iterator for ShardReader {
    type Item = Result<Sample>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_inner() {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => None,
            Err(e) => {
                self.current = None;
                self.files.clear();
                Some(Err(e))
            }
        }
    }
}

/// Counts rows by the values of some string columns (e.g. `task`, `source`, `split`) over
/// shard files, reading only those columns.
pub fn count_by_columns(files: &[PathBuf], columns: &[&str]) -> Result<std::collections::BTreeMap<Vec<String>, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for path in files {
        let builder = open_builder(path)?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|source| ShardError::Parquet { path: path.clone(), source })?;
        for batch in reader {
            let batch = batch.map_err(|source| ShardError::Arrow { path: path.clone(), source })?;
            let cols: Vec<&arrow::array::StringArray> = columns
                .iter()
                .map(|c| {
                    batch
                        .column_by_name(c)
                        .and_then(|a| a.as_any().downcast_ref::<arrow::array::StringArray>())
                        .ok_or_else(|| ShardError::Row {
                            path: path.clone(),
                            row: 0,
                            message: format!("no string column `{c}`"),
                        })
                })
                .collect::<Result<_>>()?;
            for row in 0..batch.num_rows() {
                *out.entry(cols.iter().map(|c| c.value(row).to_string()).collect()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// The Arrow schema stored in a shard file, printed one field per line.
pub fn describe_schema(path: &Path) -> Result<String> {
    let builder = open_builder(path)?;
    let mut s = String::new();
    for f in builder.schema().fields() {
        s.push_str(&format!("  {}: {}{}\n", f.name(), f.data_type(), if f.is_nullable() { "" } else { " (not null)" }));
    }
    Ok(s)
}

/// What a trainer needs to schedule a row without its image bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RowInfo {
    /// Row number within its file.
    pub row: usize,
    pub sample_id: String,
    pub task: unireal_core::Task,
    pub split: unireal_core::Split,
    /// Input and output image counts.
    pub signature: (usize, usize),
    /// Size of the first output image.
    pub output_size: (u32, u32),
    /// What a held-out split groups by ([`unireal_core::holdout_key`] of the row's meta).
    pub holdout_key: String,
}

/// The rows of one shard file, in order. Reads only the id, task, split, meta and image role
/// and size columns: image bytes are never decoded from the file.
pub fn index_rows(path: &Path) -> Result<Vec<RowInfo>> {
    use arrow::array::{Array, Int32Array, ListArray, StringArray, StructArray};
    let builder = open_builder(path)?;
    let schema = builder.parquet_schema();
    let wanted = |p: &str| {
        matches!(p, "sample_id" | "task" | "split" | "meta")
            || (p.starts_with("images.") && (p.ends_with(".role") || p.ends_with(".width") || p.ends_with(".height")))
    };
    let leaves: Vec<usize> = (0..schema.num_columns()).filter(|&i| wanted(&schema.column(i).path().string())).collect();
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|source| ShardError::Parquet { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| ShardError::Arrow { path: path.to_path_buf(), source })?;
        let row0 = out.len();
        let bad = |row: usize, message: String| ShardError::Row { path: path.to_path_buf(), row: row0 + row, message };
        let col = |name: &str| batch.column_by_name(name).ok_or_else(|| bad(0, format!("column `{name}` missing")));
        let strings = |name: &str| {
            col(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| bad(0, format!("`{name}` is not a string column")))
        };
        let (ids, tasks, splits, metas) =
            (strings("sample_id")?, strings("task")?, strings("split")?, strings("meta")?);
        let images = col("images")?
            .as_any()
            .downcast_ref::<ListArray>()
            .cloned()
            .ok_or_else(|| bad(0, "`images` is not a list".into()))?;
        for row in 0..batch.num_rows() {
            let list = images.value(row);
            let st = list
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| bad(row, "images is not a list of structs".into()))?;
            let field = |n: &str| st.column_by_name(n).ok_or_else(|| bad(row, format!("images.{n} missing")));
            let roles = field("role")?
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad(row, "images.role type".into()))?;
            let ws = field("width")?
                .as_any()
                .downcast_ref::<Int32Array>()
                .ok_or_else(|| bad(row, "images.width type".into()))?;
            let hs = field("height")?
                .as_any()
                .downcast_ref::<Int32Array>()
                .ok_or_else(|| bad(row, "images.height type".into()))?;
            let mut inputs = 0;
            let mut output_size = None;
            for i in 0..st.len() {
                let role: unireal_core::ImageRole = roles
                    .value(i)
                    .parse()
                    .map_err(|e: unireal_core::UnknownName| bad(row, format!("images[{i}]: {e}")))?;
                if role.is_input() {
                    inputs += 1;
                } else if output_size.is_none() {
                    output_size = Some((ws.value(i).max(0) as u32, hs.value(i).max(0) as u32));
                }
            }
            out.push(RowInfo {
                row: row0 + row,
                sample_id: ids.value(row).to_string(),
                task: tasks.value(row).parse().map_err(|e: unireal_core::UnknownName| bad(row, e.to_string()))?,
                split: splits.value(row).parse().map_err(|e: unireal_core::UnknownName| bad(row, e.to_string()))?,
                signature: (inputs, st.len() - inputs),
                output_size: output_size.unwrap_or((0, 0)),
                holdout_key: {
                    let meta: serde_json::Value = serde_json::from_str(metas.value(row))
                        .map_err(|e| bad(row, format!("meta is not JSON: {e}")))?;
                    unireal_core::holdout_key(&meta, ids.value(row))
                },
            });
        }
    }
    Ok(out)
}

/// Opens a shard with its page index, as [`read_rows`] does: damage to the index (which a
/// sequential read never looks at) shows here.
fn open_indexed(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use parquet::file::metadata::PageIndexPolicy;
    let file = File::open(path).map_err(io_err(path))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|source| ShardError::Parquet { path: path.to_path_buf(), source })
}

/// Checks that a shard's metadata and page index read (`verify` calls it beside the row reads).
pub fn check_index(path: &Path) -> Result<()> {
    open_indexed(path).map(drop)
}

/// Reads the given rows (ascending or not; duplicates allowed) of one shard file, returning
/// them in the order asked. Only the pages holding those rows are decoded (page index).
pub fn read_rows(path: &Path, rows: &[usize]) -> Result<Vec<Sample>> {
    use parquet::arrow::arrow_reader::RowSelection;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let mut sorted: Vec<usize> = rows.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let builder = open_indexed(path)?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    if let Some(&bad) = sorted.iter().find(|&&r| r >= total) {
        return Err(ShardError::Row {
            path: path.to_path_buf(),
            row: bad,
            message: format!("the file has {total} rows"),
        });
    }
    let selection = RowSelection::from_consecutive_ranges(sorted.iter().map(|&r| r..r + 1), total);
    let reader = builder
        .with_row_selection(selection)
        .build()
        .map_err(|source| ShardError::Parquet { path: path.to_path_buf(), source })?;
    let mut got = Vec::with_capacity(sorted.len());
    for batch in reader {
        let batch = batch.map_err(|source| ShardError::Arrow { path: path.to_path_buf(), source })?;
        let samples = batch_to_samples(&batch).map_err(|(r, message)| ShardError::Row {
            path: path.to_path_buf(),
            row: sorted.get(got.len() + r).copied().unwrap_or(0),
            message,
        })?;
        got.extend(samples);
    }
    if got.len() != sorted.len() {
        return Err(ShardError::Row {
            path: path.to_path_buf(),
            row: sorted[0],
            message: format!("asked for {} rows, read {}", sorted.len(), got.len()),
        });
    }
    Ok(rows.iter().map(|r| got[sorted.binary_search(r).expect("deduped from rows")].clone()).collect())
}
