//! Hugging Face Parquet exports: InstructPix2Pix, UltraEdit (FreeForm and RegionBase),
//! MagicBrush and the EMU Edit test set. Image columns are HF `Image` structs
//! `{bytes: binary, path: string}` (a null `bytes` with a `path` is read relative to the
//! Parquet file). One unit is one row group.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use unireal_core::{index_word, result_word, ImageRole, Split, Task};

use crate::{files_with, input_err, Ctx, Format, ImportError, Importer, Unit, UnitOut};

pub(crate) struct HfParquet {
    format: Format,
    root: PathBuf,
    files: Vec<PathBuf>,
}

impl HfParquet {
    pub fn new(format: Format, path: &Path) -> Result<Self, ImportError> {
        let files = if path.is_dir() { files_with(path, &["parquet"])? } else { vec![path.to_path_buf()] };
        let root =
            if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
        Ok(HfParquet { format, root, files })
    }
}

/// A string cell (utf8 or large utf8); None when null or absent.
fn str_at(batch: &RecordBatch, col: &str, row: usize) -> Result<Option<String>, String> {
    let Some(a) = batch.column_by_name(col) else { return Ok(None) };
    if a.is_null(row) {
        return Ok(None);
    }
    if let Some(s) = a.as_string_opt::<i32>() {
        return Ok(Some(s.value(row).to_string()));
    }
    if let Some(s) = a.as_string_opt::<i64>() {
        return Ok(Some(s.value(row).to_string()));
    }
    if let Some(s) = a.as_string_view_opt() {
        return Ok(Some(s.value(row).to_string()));
    }
    Err(format!("column `{col}` is {}, not a string", a.data_type()))
}

/// A number cell as JSON (for meta); null when null or absent.
fn num_at(batch: &RecordBatch, col: &str, row: usize) -> serde_json::Value {
    let Some(a) = batch.column_by_name(col) else { return serde_json::Value::Null };
    if a.is_null(row) {
        return serde_json::Value::Null;
    }
    let cast = arrow::compute::cast(&a.slice(row, 1), &arrow::datatypes::DataType::Float64);
    match cast {
        Ok(c) => {
            let v = c.as_primitive::<arrow::datatypes::Float64Type>().value(0);
            if v.fract() == 0.0 && v.abs() < 1e15 {
                json!(v as i64)
            } else {
                json!(v)
            }
        }
        Err(_) => serde_json::Value::Null,
    }
}

fn binary(a: &ArrayRef, row: usize) -> Option<Vec<u8>> {
    if a.is_null(row) {
        return None;
    }
    if let Some(b) = a.as_binary_opt::<i32>() {
        return Some(b.value(row).to_vec());
    }
    if let Some(b) = a.as_binary_opt::<i64>() {
        return Some(b.value(row).to_vec());
    }
    a.as_binary_view_opt().map(|b| b.value(row).to_vec())
}

/// The bytes of an HF `Image` cell; Ok(None) when the cell is null.
fn image_at(batch: &RecordBatch, col: &str, row: usize, dir: &Path) -> Result<Option<Vec<u8>>, String> {
    let Some(a) = batch.column_by_name(col) else { return Ok(None) };
    if a.is_null(row) {
        return Ok(None);
    }
    if let Some(s) = a.as_struct_opt() {
        if let Some(b) = s.column_by_name("bytes").and_then(|b| binary(b, row)) {
            return Ok(Some(b));
        }
        if let Some(p) = s
            .column_by_name("path")
            .filter(|p| !p.is_null(row))
            .and_then(|p| p.as_string_opt::<i32>().map(|p| p.value(row).to_string()))
        {
            let full = dir.join(&p);
            return std::fs::read(&full).map(Some).map_err(|e| format!("`{col}`: {}: {e}", full.display()));
        }
        return Err(format!("`{col}` has neither bytes nor path"));
    }
    binary(a, row).map(Some).ok_or_else(|| format!("column `{col}` is {}, not an image", a.data_type()))
}

/// The columns a format needs (the first missing one makes the file fail with its name).
fn required(format: Format) -> &'static [&'static str] {
    match format {
        Format::Instructpix2pix => &["edit_prompt", "original_image", "edited_image"],
        Format::Ultraedit => &["edit_prompt", "source_image", "edited_image"],
        Format::Magicbrush => &["instruction", "source_img", "target_img"],
        Format::EmuEdit => &["instruction", "image"],
        _ => &[],
    }
}

impl Importer for HfParquet {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        let mut out = Vec::new();
        for f in &self.files {
            let file = File::open(f).map_err(|e| input_err(f, e.to_string()))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| input_err(f, format!("not Parquet: {e}")))?;
            let schema = b.schema().clone();
            if let Some(c) = required(self.format).iter().find(|c| schema.column_with_name(c).is_none()) {
                return Err(input_err(
                    f,
                    format!(
                        "no column `{c}`: not the {} layout (columns: {})",
                        self.format.as_str(),
                        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            for rg in 0..b.metadata().num_row_groups() {
                let rel = f.strip_prefix(&self.root).unwrap_or(f).to_string_lossy().replace('\\', "/");
                out.push(Unit { key: format!("{rel}#rg{rg}"), file: f.clone(), part: rg, rows: (0, 0) });
            }
        }
        Ok(out)
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let f = &unit.file;
        let open = || -> Result<_, String> {
            let file = File::open(f).map_err(|e| e.to_string())?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
            let offset: i64 = (0..unit.part).map(|i| b.metadata().row_group(i).num_rows()).sum();
            let reader = b.with_row_groups(vec![unit.part]).with_batch_size(64).build().map_err(|e| e.to_string())?;
            Ok((offset as usize, reader))
        };
        let (offset, reader) = match open() {
            Ok(x) => x,
            Err(e) => return UnitOut::fatal(format!("{}: {e}", ctx.rel(f))),
        };
        let dir = f.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = ctx.rel(f);
        let mut out = UnitOut::default();
        let mut row = offset;
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    out.fatal = Some(format!("{file}: row group {}: {e}", unit.part));
                    return out;
                }
            };
            for r in 0..batch.num_rows() {
                out.rows += 1;
                let rid = format!("{file}#{row}");
                match self.row(&batch, r, &dir, &file, row, ctx) {
                    Ok(s) => out.samples.push(s),
                    Err(e) => out.bad(rid, e),
                }
                row += 1;
            }
        }
        out
    }
}

impl HfParquet {
    fn row(
        &self,
        b: &RecordBatch,
        r: usize,
        dir: &Path,
        file: &str,
        row: usize,
        ctx: &Ctx,
    ) -> Result<unireal_core::Sample, String> {
        let need_str = |c: &str| -> Result<String, String> {
            str_at(b, c, r)?.filter(|s| !s.trim().is_empty()).ok_or_else(|| format!("`{c}` is empty"))
        };
        let need_img = |c: &str, role: ImageRole| -> Result<unireal_core::SampleImage, String> {
            let bytes = image_at(b, c, r, dir)?.ok_or_else(|| format!("`{c}` is null"))?;
            ctx.image(role, bytes).map_err(|e| format!("`{c}`: {e}"))
        };
        let rowid = row.to_string();
        let edit =
            |instruction: &str| format!("Turn {} into {}: {}", index_word(1), result_word(1), instruction.trim());
        match self.format {
            Format::Instructpix2pix => {
                let instruction = need_str("edit_prompt")?;
                let images =
                    vec![need_img("original_image", ImageRole::Canvas)?, need_img("edited_image", ImageRole::Output)?];
                let id = ctx.id(Task::Edit, &[file, &rowid]);
                let meta = json!({
                    "file": file, "row": row,
                    "original_prompt": str_at(b, "original_prompt", r)?, "edited_prompt": str_at(b, "edited_prompt", r)?,
                });
                Ok(ctx.sample(Task::Edit, id.clone(), ctx.hashed_split(&id), edit(&instruction), images, meta))
            }
            Format::Ultraedit => {
                let instruction = need_str("edit_prompt")?;
                let images =
                    vec![need_img("source_image", ImageRole::Canvas)?, need_img("edited_image", ImageRole::Output)?];
                let id = ctx.id(Task::Edit, &[file, &rowid]);
                let has_mask = image_at(b, "mask_image", r, dir).ok().flatten().is_some();
                let meta = json!({
                    "file": file, "row": row, "idx": num_at(b, "idx", r),
                    "subset": if b.column_by_name("mask_image").is_some() && b.column_by_name("edit_object").is_some() { "RegionBase" } else { "FreeForm" },
                    "source_caption": str_at(b, "source_caption", r)?, "target_caption": str_at(b, "target_caption", r)?,
                    "edit_object": str_at(b, "edit_object", r)?, "has_mask": has_mask,
                    "clip_sim_source": num_at(b, "clip_sim_source", r), "clip_sim_target": num_at(b, "clip_sim_target", r),
                });
                Ok(ctx.sample(Task::Edit, id.clone(), ctx.hashed_split(&id), edit(&instruction), images, meta))
            }
            Format::Magicbrush => {
                let instruction = need_str("instruction")?;
                let images =
                    vec![need_img("source_img", ImageRole::Canvas)?, need_img("target_img", ImageRole::Output)?];
                let img_id = str_at(b, "img_id", r)?.unwrap_or_default();
                let turn = num_at(b, "turn_index", r);
                let id = ctx.id(Task::Edit, &[&img_id, &turn.to_string(), file, &rowid]);
                let meta = json!({"file": file, "row": row, "img_id": img_id, "turn_index": turn});
                // MagicBrush's own split is its file (train/dev); dev rows are validation.
                let split =
                    if file.contains("dev") || file.contains("valid") { Split::Val } else { ctx.hashed_split(&id) };
                Ok(ctx.sample(Task::Edit, id, split, edit(&instruction), images, meta))
            }
            Format::EmuEdit => {
                let instruction = need_str("instruction")?;
                let images = vec![need_img("image", ImageRole::Canvas)?];
                let id = ctx.id(Task::Edit, &[file, &rowid]);
                let meta = json!({
                    "file": file, "row": row, "idx": num_at(b, "idx", r), "task": str_at(b, "task", r)?,
                    "hf_split": str_at(b, "split", r)?, "input_caption": str_at(b, "input_caption", r)?,
                    "output_caption": str_at(b, "output_caption", r)?,
                });
                // An evaluation set: no target image, split `test`.
                Ok(ctx.sample(Task::Edit, id, Split::Test, edit(&instruction), images, meta))
            }
            _ => unreachable!("HfParquet is built only for the HF formats"),
        }
    }
}
