//! `unireal-data preview`: one self-contained HTML page showing built samples — every image
//! of a sample in order with its role and index word, the prompts, task, source and
//! provenance — filterable by task. Images are embedded as base64 thumbnails, so the page
//! can be copied anywhere and opened offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;
use unireal_core::{index_word, result_word, ImageRole, Sample};
use unireal_shards::{Manifest, ShardError};

#[derive(Debug, Clone)]
pub struct PreviewOptions {
    /// At most this many samples per task (the first ones in shard order).
    pub per_task: usize,
    /// Long side of the thumbnails, pixels.
    pub thumb: u32,
    /// Only these tasks (empty: all).
    pub tasks: Vec<String>,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        PreviewOptions { per_task: 24, thumb: 192, tasks: vec![] }
    }
}

/// What a gallery holds.
#[derive(Debug, Clone, Default)]
pub struct PreviewSummary {
    /// Samples shown, per task.
    pub shown: BTreeMap<String, usize>,
    /// Samples read, per task (shown or not).
    pub seen: BTreeMap<String, u64>,
    /// Images that did not decode (shown as a placeholder).
    pub bad_images: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Shards(#[from] unireal_shards::ShardError),
    #[error("{path}: {message}")]
    Write { path: String, message: String },
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A JPEG thumbnail as a data URL, or None when the image does not decode.
fn thumbnail(bytes: &[u8], long: u32) -> Option<String> {
    let img = image::load_from_memory(bytes).ok()?.to_rgb8();
    let (w, h) = unireal_vision::fit_long_side(img.width(), img.height(), long);
    let t = unireal_vision::resize_rgb(&img, w, h);
    let jpeg = unireal_vision::encode::jpeg(&t, 82).ok()?;
    Some(format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg)))
}

fn card(s: &Sample, thumb: u32, bad: &mut usize) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<article class=\"card\" data-task=\"{t}\"><header><span class=\"task\">{t}</span> <span class=\"src\">{src}</span> <span class=\"split\">{split}</span> <code>{id}</code></header><div class=\"imgs\">",
        t = esc(s.task.as_str()),
        src = esc(&s.source),
        split = esc(s.split.as_str()),
        id = esc(&s.sample_id),
    );
    let (mut ins, mut outs) = (0, 0);
    for img in &s.images {
        let word = if img.role == ImageRole::Output {
            outs += 1;
            result_word(outs)
        } else {
            ins += 1;
            index_word(ins)
        };
        let body = match thumbnail(&img.bytes, thumb) {
            Some(url) => format!("<img src=\"{url}\" alt=\"{word}\" loading=\"lazy\">"),
            None => {
                *bad += 1;
                "<div class=\"bad\">does not decode</div>".to_string()
            }
        };
        let _ = write!(
            h,
            "<figure class=\"role-{role}\">{body}<figcaption><b>{word}</b> {role} · {w}×{hh} {enc}</figcaption></figure>",
            role = img.role.as_str(),
            w = img.width,
            hh = img.height,
            enc = esc(&img.encoding),
        );
    }
    let meta = serde_json::to_string_pretty(&s.meta).unwrap_or_default();
    let _ = write!(
        h,
        "</div><p class=\"base\">{}</p><p class=\"ctx\">{}</p><details><summary>meta</summary><pre>{}</pre></details></article>\n",
        esc(&s.base_prompt),
        esc(&s.context_prompt),
        esc(&meta)
    );
    h
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
nav{position:sticky;top:0;background:#20232a;color:#eee;padding:8px 16px;z-index:1}
nav button{margin:2px;padding:4px 10px;border:0;border-radius:12px;background:#444;color:#eee;cursor:pointer}
nav button.on{background:#61dafb;color:#111}
main{display:flex;flex-wrap:wrap;gap:12px;padding:12px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0003;padding:8px;max-width:100%}
.card header{font-size:12px;color:#555;margin-bottom:6px}
.task{background:#20232a;color:#fff;border-radius:4px;padding:1px 6px}
.imgs{display:flex;gap:6px;align-items:flex-end;flex-wrap:wrap}
figure{margin:0;text-align:center}
figure img{display:block;max-height:192px;border:3px solid #ccc;border-radius:4px;background:#fff}
.role-asset img{border-color:#e6a700}.role-canvas img{border-color:#2a7de1}
.role-control img{border-color:#9b4dca}.role-output img{border-color:#2bb34a}
figcaption{font-size:11px;color:#444}
.base{margin:6px 0 0;font-weight:600;max-width:60em}.ctx{margin:2px 0;color:#666;font-style:italic}
.bad{width:96px;height:64px;background:#fdd;font-size:11px}
pre{font-size:11px;max-width:60em;overflow:auto}
"#;

const SCRIPT: &str = r#"
function show(t){document.querySelectorAll('.card').forEach(c=>{c.style.display=(t==='all'||c.dataset.task===t)?'':'none'});
document.querySelectorAll('nav button').forEach(b=>b.classList.toggle('on',b.dataset.task===t));}
document.querySelectorAll('nav button').forEach(b=>b.addEventListener('click',()=>{show(b.dataset.task);history.replaceState(null,'','#task='+b.dataset.task);}));
if(location.hash.startsWith('#task='))show(decodeURIComponent(location.hash.slice(6)));
"#;

/// Renders the gallery of a shard directory.
pub fn render_gallery(dir: &Path, opts: &PreviewOptions) -> Result<(String, PreviewSummary), PreviewError> {
    let mut summary = PreviewSummary::default();
    let mut cards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let manifest = Manifest::load_dataset(dir)?.ok_or_else(|| ShardError::Manifest {
        path: dir.join(unireal_shards::MANIFEST_NAME),
        message: "no manifest: not a shard directory, or a build that never started".into(),
    })?;
    for shard in &manifest.shards {
        // Rows are chosen from the metadata columns; only the shown ones are read whole.
        let file = dir.join(&shard.file);
        let mut pick = Vec::new();
        for r in unireal_shards::index_rows(&file)? {
            let task = r.task.as_str();
            if !opts.tasks.is_empty() && !opts.tasks.iter().any(|t| t == task) {
                continue;
            }
            *summary.seen.entry(task.to_string()).or_default() += 1;
            let shown = summary.shown.entry(task.to_string()).or_default();
            if *shown < opts.per_task {
                *shown += 1;
                pick.push(r.row);
            }
        }
        for s in unireal_shards::read_rows(&file, &pick)? {
            cards.entry(s.task.as_str().to_string()).or_default().push(card(&s, opts.thumb, &mut summary.bad_images));
        }
    }
    let mut h = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        h,
        "<title>UniReal samples: {}</title><style>{STYLE}</style></head><body><nav>",
        esc(&dir.display().to_string())
    );
    let total: u64 = summary.seen.values().sum();
    let _ = write!(h, "<button class=\"on\" data-task=\"all\">all ({total})</button>");
    for (t, n) in &summary.seen {
        let _ = write!(h, "<button data-task=\"{t}\">{t} ({shown}/{n})</button>", t = esc(t), shown = summary.shown[t]);
    }
    let _ = write!(h, " <small>{}</small></nav><main>\n", esc(&dir.display().to_string()));
    for list in cards.values() {
        for c in list {
            h.push_str(c);
        }
    }
    let _ = write!(h, "</main><script>{SCRIPT}</script></body></html>\n");
    Ok((h, summary))
}

/// Renders and writes the gallery atomically (temporary name, then rename).
pub fn write_gallery(dir: &Path, out: &Path, opts: &PreviewOptions) -> Result<PreviewSummary, PreviewError> {
    let (html, summary) = render_gallery(dir, opts)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| PreviewError::Write { path: parent.display().to_string(), message: e.to_string() })?;
    }
    unireal_core::fsutil::write_atomic(out, html.as_bytes())
        .map_err(|e| PreviewError::Write { path: out.display().to_string(), message: e.to_string() })?;
    Ok(summary)
}
