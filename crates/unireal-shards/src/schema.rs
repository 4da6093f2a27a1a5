//! The Arrow schema of a shard and conversions between samples and record batches.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, Int32Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use unireal_core::{ImageRole, Sample, SampleImage, Split, Task};

fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("encoding", DataType::Utf8, false),
        Field::new("bytes", DataType::Binary, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
    ])
}

fn images_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(image_fields()), false))
}

/// The shard schema (docs/data-format.md).
pub fn shard_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sample_id", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("base_prompt", DataType::Utf8, false),
        Field::new("context_prompt", DataType::Utf8, false),
        Field::new("images", DataType::List(images_item_field()), false),
        Field::new("meta", DataType::Utf8, false),
    ]))
}

/// Samples → one record batch of the shard schema.
pub fn samples_to_batch(samples: &[Sample]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let strings =
        |f: &dyn Fn(&Sample) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(samples.iter().map(f))) };
    let all: Vec<&SampleImage> = samples.iter().flat_map(|s| s.images.iter()).collect();
    let image_struct = StructArray::try_new(
        image_fields(),
        vec![
            Arc::new(StringArray::from_iter_values(all.iter().map(|i| i.role.as_str()))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(all.iter().map(|i| i.encoding.as_str()))),
            Arc::new(BinaryArray::from_iter_values(all.iter().map(|i| i.bytes.as_slice()))),
            Arc::new(Int32Array::from_iter_values(all.iter().map(|i| i.width as i32))),
            Arc::new(Int32Array::from_iter_values(all.iter().map(|i| i.height as i32))),
        ],
        None,
    )?;
    let offsets = OffsetBuffer::from_lengths(samples.iter().map(|s| s.images.len()));
    let images = ListArray::try_new(images_item_field(), offsets, Arc::new(image_struct), None)?;
    RecordBatch::try_new(
        shard_schema(),
        vec![
            strings(&|s| s.sample_id.clone()),
            strings(&|s| s.task.as_str().to_string()),
            strings(&|s| s.source.clone()),
            strings(&|s| s.split.as_str().to_string()),
            strings(&|s| s.base_prompt.clone()),
            strings(&|s| s.context_prompt.clone()),
            Arc::new(images),
            strings(&|s| s.meta.to_string()),
        ],
    )
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("missing column `{name}`"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| {
            format!("column `{name}` has type {:?}", batch.column_by_name(name).map(|c| c.data_type().clone()))
        })
}

/// One record batch of the shard schema → samples. Errors name the row and the field.
pub fn batch_to_samples(batch: &RecordBatch) -> Result<Vec<Sample>, (usize, String)> {
    let e0 = |m: String| (0usize, m);
    let ids = column::<StringArray>(batch, "sample_id").map_err(e0)?;
    let tasks = column::<StringArray>(batch, "task").map_err(e0)?;
    let sources = column::<StringArray>(batch, "source").map_err(e0)?;
    let splits = column::<StringArray>(batch, "split").map_err(e0)?;
    let base = column::<StringArray>(batch, "base_prompt").map_err(e0)?;
    let ctx = column::<StringArray>(batch, "context_prompt").map_err(e0)?;
    let meta = column::<StringArray>(batch, "meta").map_err(e0)?;
    let images = column::<ListArray>(batch, "images").map_err(e0)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let er = |m: String| (row, m);
        let task: Task = tasks.value(row).parse().map_err(|e: unireal_core::UnknownName| er(e.to_string()))?;
        let split: Split = splits.value(row).parse().map_err(|e: unireal_core::UnknownName| er(e.to_string()))?;
        let list = images.value(row);
        let st =
            list.as_any().downcast_ref::<StructArray>().ok_or_else(|| er("images is not a list of structs".into()))?;
        let field = |n: &str| st.column_by_name(n).ok_or_else(|| er(format!("images.{n} missing")));
        let roles =
            field("role")?.as_any().downcast_ref::<StringArray>().ok_or_else(|| er("images.role type".into()))?;
        let encs = field("encoding")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| er("images.encoding type".into()))?;
        let bytes =
            field("bytes")?.as_any().downcast_ref::<BinaryArray>().ok_or_else(|| er("images.bytes type".into()))?;
        let ws = field("width")?.as_any().downcast_ref::<Int32Array>().ok_or_else(|| er("images.width type".into()))?;
        let hs =
            field("height")?.as_any().downcast_ref::<Int32Array>().ok_or_else(|| er("images.height type".into()))?;
        let mut imgs = Vec::with_capacity(st.len());
        for i in 0..st.len() {
            let role: ImageRole =
                roles.value(i).parse().map_err(|e: unireal_core::UnknownName| er(format!("images[{i}]: {e}")))?;
            imgs.push(SampleImage {
                role,
                encoding: encs.value(i).to_string(),
                bytes: bytes.value(i).to_vec(),
                width: ws.value(i).max(0) as u32,
                height: hs.value(i).max(0) as u32,
            });
        }
        out.push(Sample {
            sample_id: ids.value(row).to_string(),
            task,
            source: sources.value(row).to_string(),
            split,
            base_prompt: base.value(row).to_string(),
            context_prompt: ctx.value(row).to_string(),
            images: imgs,
            meta: serde_json::from_str(meta.value(row)).map_err(|e| er(format!("meta is not JSON: {e}")))?,
        });
    }
    Ok(out)
}
