//! Folder layouts: VITON-HD, DreamBooth's DreamBench, OmniGen JSONL, and images with captions.

use std::path::{Path, PathBuf};

use serde_json::json;
use unireal_core::{index_word, result_word, ImageRole, SampleImage, Split, Task};

use crate::{chunk_units, files_with, input_err, Ctx, ImportError, Importer, Unit, UnitOut};

fn read_text(p: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(p).map_err(|e| input_err(p, e.to_string()))
}

// ---------------------------------------------------------------------------------------
// VITON-HD: {train,test}/{image,cloth,agnostic-v3.2,…}/NAME.jpg and {train,test}_pairs.txt
// ("person.jpg garment.jpg" per line). One unit per pairs file.

pub(crate) struct VitonHd {
    root: PathBuf,
    pairs: Vec<PathBuf>,
}

impl VitonHd {
    pub fn new(root: &Path) -> Result<Self, ImportError> {
        let pairs: Vec<PathBuf> =
            ["train_pairs.txt", "test_pairs.txt"].iter().map(|n| root.join(n)).filter(|p| p.is_file()).collect();
        if pairs.is_empty() {
            return Err(input_err(root, "no train_pairs.txt or test_pairs.txt: not the VITON-HD folder"));
        }
        Ok(VitonHd { root: root.to_path_buf(), pairs })
    }
}

impl Importer for VitonHd {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        Ok(self
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| Unit {
                key: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                file: p.clone(),
                part: i,
                rows: (0, 0),
            })
            .collect())
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let text = match std::fs::read_to_string(&unit.file) {
            Ok(t) => t,
            Err(e) => return UnitOut::fatal(format!("{}: {e}", unit.key)),
        };
        let split_dir = if unit.key.starts_with("train") { "train" } else { "test" };
        let dir = self.root.join(split_dir);
        let mut out = UnitOut::default();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            out.rows += 1;
            let rid = format!("{}:{}", unit.key, n + 1);
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [person, garment] = parts[..] else {
                out.bad(rid, format!("expected `person.jpg garment.jpg`, got {line:?}"));
                continue;
            };
            // Training pairs and test pairs of one id have ground truth; the official test
            // pairs (another person's garment) do not: split `test`, no output.
            let paired = person == garment;
            let split = match (split_dir, paired) {
                ("train", _) => Split::Train,
                (_, true) => Split::Val,
                _ => Split::Test,
            };
            let r = (|| -> Result<Vec<SampleImage>, String> {
                let mut images = vec![
                    ctx.image_file(ImageRole::Asset, &dir.join("cloth").join(garment))?,
                    ctx.image_file(ImageRole::Canvas, &dir.join("agnostic-v3.2").join(person))?,
                ];
                if split != Split::Test {
                    images.push(ctx.image_file(ImageRole::Output, &dir.join("image").join(person))?);
                }
                Ok(images)
            })();
            match r {
                Ok(images) => {
                    let id = ctx.id(Task::TryOn, &[split_dir, person, garment]);
                    let base = format!(
                        "Dress the person in {} in the garment of {} to make {}.",
                        index_word(2),
                        index_word(1),
                        result_word(1)
                    );
                    let meta = json!({"pairs": unit.key, "line": n + 1, "person": person, "garment": garment, "paired": paired});
                    out.samples.push(ctx.sample(Task::TryOn, id, split, base, images, meta));
                }
                Err(e) => out.bad(rid, e),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// DreamBench (DreamBooth's dataset/): <subject>/*.jpg and prompts_and_classes.txt. One unit
// per subject; each prompt becomes an evaluation sample (split `test`, no output).

pub(crate) struct DreamBench {
    dataset: PathBuf,
    classes: Vec<(String, String)>,
    object_prompts: Vec<String>,
    live_prompts: Vec<String>,
}

/// The templates of a `prompt_list = [ '…'.format(unique_token, class_token), … ]` block.
fn templates(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let q = l.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            let end = l[1..].find(q)? + 1;
            Some(l[1..end].to_string())
        })
        .collect()
}

impl DreamBench {
    pub fn new(root: &Path) -> Result<Self, ImportError> {
        let dataset =
            if root.join("prompts_and_classes.txt").is_file() { root.to_path_buf() } else { root.join("dataset") };
        let file = dataset.join("prompts_and_classes.txt");
        if !file.is_file() {
            return Err(input_err(
                root,
                "no prompts_and_classes.txt (in it or in dataset/): not the DreamBooth dataset folder",
            ));
        }
        let text = read_text(&file)?;
        let bad = |m: &str| input_err(&file, m.to_string());
        let (head, prompts) = text.split_once("Prompts").ok_or_else(|| bad("no `Prompts` section"))?;
        let classes: Vec<(String, String)> = head
            .lines()
            .skip_while(|l| !l.trim().starts_with("subject_name"))
            .skip(1)
            .filter_map(|l| l.trim().split_once(','))
            .map(|(s, c)| (s.trim().to_string(), c.trim().to_string()))
            .collect();
        let (object, live) =
            prompts.split_once("Live Subject Prompts").ok_or_else(|| bad("no `Live Subject Prompts` section"))?;
        let (object_prompts, live_prompts) = (templates(object), templates(live));
        if classes.is_empty() || object_prompts.is_empty() || live_prompts.is_empty() {
            return Err(bad("no classes or no prompts found"));
        }
        Ok(DreamBench { dataset, classes, object_prompts, live_prompts })
    }
}

impl Importer for DreamBench {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        Ok(self
            .classes
            .iter()
            .enumerate()
            .map(|(i, (s, _))| Unit { key: format!("dataset/{s}"), file: self.dataset.join(s), part: i, rows: (0, 0) })
            .collect())
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let (subject, class) = &self.classes[unit.part];
        let images = match files_with(&unit.file, &["jpg", "jpeg", "png"]) {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => return UnitOut::fatal(format!("{}: no images", unit.key)),
            Err(e) => return UnitOut::fatal(e.to_string()),
        };
        // The first image (by name) is the subject's reference.
        let asset = match ctx.image_file(ImageRole::Asset, &images[0]) {
            Ok(a) => a,
            Err(e) => return UnitOut::fatal(e),
        };
        let live = matches!(class.as_str(), "dog" | "cat");
        let prompts = if live { &self.live_prompts } else { &self.object_prompts };
        let mut out = UnitOut::default();
        for (k, t) in prompts.iter().enumerate() {
            out.rows += 1;
            let prompt = t.replacen("{0}", &index_word(1), 1).replacen("{1}", class, 1);
            let id = ctx.id(Task::MultiObject, &[subject, &k.to_string()]);
            let meta = json!({
                "subject": subject, "class": class, "live": live, "prompt_index": k, "template": t,
                "reference": ctx.rel(&images[0]), "subject_images": images.iter().map(|p| ctx.rel(p)).collect::<Vec<_>>(),
            });
            let base = format!("Generate {}: {prompt}", result_word(1));
            out.samples.push(ctx.sample(Task::MultiObject, id, Split::Test, base, vec![asset.clone()], meta));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// OmniGen JSONL: {task_type, instruction, input_images, output_image} per line, paths
// relative to the file; `<img><|image_k|></img>` in the instruction is input k.

pub(crate) struct OmniGen {
    /// Per file: its path, its line count and the byte offset where each unit's lines start
    /// (so that a unit reads its own lines, not the whole file).
    files: Vec<(PathBuf, usize, Vec<u64>)>,
    unit_rows: usize,
}

impl OmniGen {
    pub fn new(path: &Path, unit_rows: usize) -> Result<Self, ImportError> {
        use std::io::BufRead;
        let files = if path.is_dir() { files_with(path, &["jsonl"])? } else { vec![path.to_path_buf()] };
        let mut out = Vec::new();
        for f in files {
            let file = std::fs::File::open(&f).map_err(|e| input_err(&f, e.to_string()))?;
            let mut reader = std::io::BufReader::new(file);
            let (mut lines, mut offset, mut starts, mut buf) = (0usize, 0u64, Vec::new(), Vec::new());
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(|e| input_err(&f, e.to_string()))?;
                if n == 0 {
                    break;
                }
                if lines % unit_rows == 0 {
                    starts.push(offset);
                }
                lines += 1;
                offset += n as u64;
            }
            out.push((f, lines, starts));
        }
        Ok(OmniGen { files: out, unit_rows })
    }

    /// The lines of one unit, numbered from 0 in the file.
    fn unit_lines(&self, unit: &Unit) -> Result<Vec<(usize, String)>, String> {
        use std::io::{BufRead, Seek};
        let (_, _, starts) = self.files.iter().find(|(f, _, _)| *f == unit.file).ok_or("unknown file")?;
        let mut file = std::fs::File::open(&unit.file).map_err(|e| e.to_string())?;
        file.seek(std::io::SeekFrom::Start(starts[unit.part])).map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().take(unit.rows.1 - unit.rows.0).enumerate() {
            lines.push((unit.rows.0 + i, line.map_err(|e| format!("line {}: {e}", unit.rows.0 + i + 1))?));
        }
        Ok(lines)
    }
}

/// Maps OmniGen's task_type to a task and the role of its inputs.
fn omnigen_task(task_type: &str, inputs: usize) -> (Task, ImageRole) {
    let t = task_type.to_ascii_lowercase();
    let has = |k: &[&str]| k.iter().any(|k| t.contains(k));
    if inputs == 0 || has(&["text_to_image", "text2image", "t2i"]) {
        (Task::TextToImage, ImageRole::Canvas)
    } else if has(&["try"]) {
        (Task::TryOn, ImageRole::Asset)
    } else if has(&["seg", "detect", "referring"]) {
        (Task::Seg, ImageRole::Canvas)
    } else if has(&["canny", "depth", "pose", "hed", "control", "sketch"]) {
        (Task::Control, ImageRole::Control)
    } else if has(&["subject", "custom", "identity", "id_", "reference"]) {
        (Task::MultiObject, ImageRole::Asset)
    } else {
        (Task::Edit, ImageRole::Canvas)
    }
}

impl Importer for OmniGen {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        let mut out = Vec::new();
        for (f, n, _) in &self.files {
            let label = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.extend(chunk_units(&label, f, *n, self.unit_rows));
        }
        Ok(out)
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let lines = match self.unit_lines(unit) {
            Ok(l) => l,
            Err(e) => return UnitOut::fatal(format!("{}: {e}", unit.key)),
        };
        let dir = unit.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = ctx.rel(&unit.file);
        let mut out = UnitOut::default();
        for (n, line) in &lines {
            let (n, line) = (*n, line.as_str());
            if line.trim().is_empty() {
                continue;
            }
            out.rows += 1;
            let rid = format!("{file}:{}", n + 1);
            let r = (|| -> Result<unireal_core::Sample, String> {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
                let instruction = v["instruction"].as_str().ok_or("no \"instruction\"")?;
                let output = v["output_image"].as_str().ok_or("no \"output_image\"")?;
                let inputs: Vec<&str> = match &v["input_images"] {
                    serde_json::Value::Null => vec![],
                    serde_json::Value::Array(a) => {
                        a.iter().map(|x| x.as_str().ok_or("input_images: not a path")).collect::<Result<_, _>>()?
                    }
                    _ => return Err("input_images: not a list".into()),
                };
                let task_type = v["task_type"].as_str().unwrap_or("");
                let (task, role) = omnigen_task(task_type, inputs.len());
                let mut images = Vec::new();
                for (k, p) in inputs.iter().enumerate() {
                    // Try-on: the garment first (asset), the person second (canvas).
                    let role = if task == Task::TryOn && k > 0 { ImageRole::Canvas } else { role };
                    images.push(ctx.image_file(role, &dir.join(p))?);
                }
                images.push(ctx.image_file(ImageRole::Output, &dir.join(output))?);
                let mut text = instruction.to_string();
                for k in 1..=inputs.len() {
                    text = text.replace(&format!("<img><|image_{k}|></img>"), &index_word(k));
                }
                let base = format!("Generate {}: {}", result_word(1), text.trim());
                let id = ctx.id(task, &[&file, &n.to_string()]);
                let meta = json!({"file": file, "line": n + 1, "task_type": task_type, "input_images": inputs, "output_image": output});
                Ok(ctx.sample(task, id.clone(), ctx.hashed_split(&id), base, images, meta))
            })();
            match r {
                Ok(s) => out.samples.push(s),
                Err(e) => out.bad(rid, e),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Images with captions (text-to-image rows): a folder with `NAME.txt` next to each image, or
// a `.csv` (header with `path`, `caption`) / `.jsonl` ({"path", "caption"}) list.

pub(crate) struct Images {
    /// (image path, caption from the list, list line or relative path for messages)
    items: Vec<(PathBuf, Option<String>, String)>,
    /// A folder: captions are the `.txt` files beside the images, read by the unit's worker.
    sidecar_captions: bool,
    label: String,
    unit_rows: usize,
}

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

impl Images {
    pub fn new(path: &Path, unit_rows: usize) -> Result<Self, ImportError> {
        let mut items = Vec::new();
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        match (path.is_dir(), ext.as_deref()) {
            (true, _) => {
                for p in files_with(path, IMAGE_EXTS)? {
                    let id = p.strip_prefix(path).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                    items.push((p, None, id));
                }
            }
            (false, Some("jsonl")) => {
                for (n, line) in read_text(path)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .map_err(|e| input_err(path, format!("line {}: not JSON: {e}", n + 1)))?;
                    let p =
                        v["path"].as_str().ok_or_else(|| input_err(path, format!("line {}: no \"path\"", n + 1)))?;
                    items.push((dir.join(p), v["caption"].as_str().map(String::from), format!("line {}", n + 1)));
                }
            }
            (false, Some("csv")) => {
                let mut r = csv::Reader::from_path(path).map_err(|e| input_err(path, e.to_string()))?;
                let h = r.headers().map_err(|e| input_err(path, e.to_string()))?.clone();
                let col = |name: &str| h.iter().position(|c| c.trim() == name);
                let pc = col("path").ok_or_else(|| input_err(path, "no `path` column in the header"))?;
                let cc = col("caption");
                for (n, rec) in r.records().enumerate() {
                    let rec = rec.map_err(|e| input_err(path, format!("line {}: {e}", n + 2)))?;
                    let p = rec.get(pc).unwrap_or("").trim().to_string();
                    items.push((
                        dir.join(p),
                        cc.and_then(|c| rec.get(c)).map(|s| s.trim().to_string()),
                        format!("line {}", n + 2),
                    ));
                }
            }
            _ => {
                return Err(input_err(
                    path,
                    "expected a folder of images, or a .csv/.jsonl list of images with captions",
                ))
            }
        }
        let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "images".into());
        Ok(Images { items, sidecar_captions: path.is_dir(), label, unit_rows })
    }
}

impl Importer for Images {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        Ok(chunk_units(&self.label, Path::new(&self.label), self.items.len(), self.unit_rows))
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let mut out = UnitOut::default();
        for (p, cap, rid) in &self.items[unit.rows.0..unit.rows.1] {
            out.rows += 1;
            let rel = ctx.rel(p);
            let sidecar = match self.sidecar_captions {
                true => std::fs::read_to_string(p.with_extension("txt")).ok().map(|s| s.trim().to_string()),
                false => None,
            };
            let Some(cap) = sidecar.as_deref().or(cap.as_deref()).filter(|c| !c.is_empty()) else {
                out.bad(rid.as_str(), format!("{rel}: no caption (a .txt next to it, or a `caption` in the list)"));
                continue;
            };
            match ctx.image_file(ImageRole::Output, p) {
                Ok(img) => {
                    let id = ctx.id(Task::TextToImage, &[&rel]);
                    let base = format!("Generate {}: {cap}", result_word(1));
                    let meta = json!({"path": rel});
                    out.samples.push(ctx.sample(
                        Task::TextToImage,
                        id.clone(),
                        ctx.hashed_split(&id),
                        base,
                        vec![img],
                        meta,
                    ));
                }
                Err(e) => out.bad(rid.as_str(), e),
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// MagicBrush's test archive (what the paper's Table 2 and MagicBrush's own evaluation score):
// `edit_sessions.json` ({img_id: [{input, mask, output, instruction}, …]}, turn k's input
// being turn k-1's ground-truth output), `global_descriptions.json` ({img_id: {file:
// caption}}) and `images/<img_id>/<file>`, in the folder or its `test/`. One unit per
// session, every turn a row of split `test` (the "independent" setting: each turn edits the
// ground truth of the one before).

/// Where MagicBrush's test archive is, if `root` (or its `test/`) is one.
pub(crate) fn magicbrush_test_dir(root: &Path) -> Option<PathBuf> {
    [root.to_path_buf(), root.join("test")].into_iter().find(|d| d.join("edit_sessions.json").is_file())
}

#[derive(serde::Deserialize)]
struct MagicBrushTurn {
    input: String,
    output: String,
    instruction: String,
}

pub(crate) struct MagicBrushTest {
    dir: PathBuf,
    sessions: Vec<(String, Vec<MagicBrushTurn>)>,
    captions: serde_json::Map<String, serde_json::Value>,
}

impl MagicBrushTest {
    pub fn new(dir: &Path) -> Result<Self, ImportError> {
        let path = dir.join("edit_sessions.json");
        let sessions: std::collections::BTreeMap<String, Vec<MagicBrushTurn>> =
            serde_json::from_str(&read_text(&path)?).map_err(|e| {
                input_err(
                    &path,
                    format!("not MagicBrush's edit sessions ({{img_id: [{{input, output, instruction}}]}}): {e}"),
                )
            })?;
        // The evaluation script's default name is singular; the archive's is plural.
        let captions = match ["global_descriptions.json", "global_description.json"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
        {
            Some(p) => serde_json::from_str::<serde_json::Value>(&read_text(&p)?)
                .map_err(|e| input_err(&p, e.to_string()))?
                .as_object()
                .cloned()
                .ok_or_else(|| input_err(&p, "not an object of {img_id: {file: caption}}"))?,
            None => serde_json::Map::new(),
        };
        Ok(MagicBrushTest { dir: dir.to_path_buf(), sessions: sessions.into_iter().collect(), captions })
    }

    fn caption(&self, img_id: &str, file: &str) -> Option<String> {
        self.captions.get(img_id).and_then(|c| c.get(file)).and_then(|v| v.as_str()).map(String::from)
    }
}

impl Importer for MagicBrushTest {
    fn units(&self) -> Result<Vec<Unit>, ImportError> {
        Ok(self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, (id, _))| Unit {
                key: format!("edit_sessions.json#{id}"),
                file: self.dir.join("images").join(id),
                part: i,
                rows: (0, 0),
            })
            .collect())
    }

    fn process(&self, unit: &Unit, ctx: &Ctx) -> UnitOut {
        let (img_id, turns) = &self.sessions[unit.part];
        let mut out = UnitOut::default();
        for (k, turn) in turns.iter().enumerate() {
            out.rows += 1;
            let images = (|| -> Result<Vec<SampleImage>, String> {
                Ok(vec![
                    ctx.image_file(ImageRole::Canvas, &unit.file.join(&turn.input))?,
                    ctx.image_file(ImageRole::Output, &unit.file.join(&turn.output))?,
                ])
            })();
            let instruction = turn.instruction.trim();
            let images = match images {
                Ok(_) if instruction.is_empty() => Err("empty instruction".to_string()),
                other => other,
            };
            match images {
                Ok(images) => {
                    let id = ctx.id(Task::Edit, &["test", img_id, &(k + 1).to_string()]);
                    let base = format!("Turn {} into {}: {instruction}", index_word(1), result_word(1));
                    let meta = json!({
                        "img_id": img_id, "turn_index": k + 1, "turns": turns.len(),
                        "input": turn.input, "output": turn.output,
                        "input_caption": self.caption(img_id, &turn.input),
                        "output_caption": self.caption(img_id, &turn.output),
                    });
                    out.samples.push(ctx.sample(Task::Edit, id, Split::Test, base, images, meta));
                }
                Err(e) => out.bad(format!("{}#{}", unit.key, k + 1), e),
            }
        }
        out
    }
}
