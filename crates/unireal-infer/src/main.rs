//! `unireal-infer --checkpoint RUN/checkpoints/step-N --image a.png --prompt "…" --task frame2frame --out out.png`
//!
//! Runs any task: 0 images is text-to-image; each `--image` is an input frame (`IMG1`, `IMG2`,
//! …) with a role from `--role` or the task's default. Writes the output frame(s) as PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_core::{context_prompt, ContextTag, ImageRole, Task};
use unireal_flow::Guidance;
use unireal_train::data::{cover_crop, full_prompt_parts, image_to_chw, role_index, Bucket};
use unireal_train::generate::{chw_to_image, generate, save_png, Request};
use unireal_train::TrainConfig;

#[cfg(feature = "cuda")]
type Backend = burn::backend::Cuda;
#[cfg(all(not(feature = "cuda"), feature = "ndarray"))]
type Backend = burn::backend::NdArray;
#[cfg(all(not(feature = "cuda"), not(feature = "ndarray"), feature = "flex"))]
type Backend = burn::backend::Flex;

/// Generate or edit images with a trained UniReal checkpoint.
#[derive(Parser, Debug)]
#[command(name = "unireal-infer", version)]
struct Args {
    /// A checkpoint directory (RUN/checkpoints/step-N), or a run directory (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Input images, in order (IMG1, IMG2, …). None for text-to-image.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// Role of each input image (asset, canvas, control), in order; defaults follow --task.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// The instruction or caption (the base prompt), with IMG1/RES1 words where useful.
    #[arg(long)]
    prompt: String,
    /// Task family: frame2frame, edit, multi_object, insertion, object_add, seg, control, try_on, t2i.
    #[arg(long, default_value = "frame2frame")]
    task: String,
    /// The context prompt; defaults follow --task (e.g. "realistic style, dynamic scene.").
    #[arg(long)]
    context: Option<String>,
    /// Output PNG; with --outputs above 1, `-2`, `-3`, … are added before the extension.
    #[arg(long, default_value = "out.png")]
    out: PathBuf,
    /// Output size WxH in pixels (rounded to the model's multiple); default: the training
    /// resolution at the first input image's aspect ratio.
    #[arg(long)]
    size: Option<String>,
    #[arg(long, default_value_t = 1)]
    outputs: usize,
    #[arg(long, default_value_t = 28)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 3.0)]
    text_guidance: f64,
    #[arg(long, default_value_t = 1.6)]
    image_guidance: f64,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    no_ema: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, hint)) => {
            eprintln!("error: {e}");
            if let Some(h) = hint {
                eprintln!("hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

type Failure = (String, Option<String>);

fn fail(e: impl ToString) -> Failure {
    (e.to_string(), None)
}

fn default_roles(task: Task, n: usize) -> Vec<ImageRole> {
    (0..n)
        .map(|i| match task {
            Task::Control => ImageRole::Control,
            Task::MultiObject => ImageRole::Asset,
            Task::Insertion | Task::TryOn if i == 0 => ImageRole::Asset,
            _ if i == 0 => ImageRole::Canvas,
            _ => ImageRole::Asset,
        })
        .collect()
}

fn default_context(task: Task) -> String {
    use ContextTag::*;
    context_prompt(match task {
        Task::Frame2Frame => &[Realistic, DynamicScene],
        Task::Edit | Task::ObjectAdd => &[Realistic, StaticScene],
        Task::Seg => &[Realistic, Perception],
        Task::MultiObject | Task::Insertion | Task::TryOn => &[Realistic, WithReferenceObject],
        _ => &[Realistic],
    })
}

fn run(args: Args) -> Result<(), Failure> {
    let ckpt = if args.checkpoint.join("state.json").is_file() {
        args.checkpoint.clone()
    } else {
        unireal_train::checkpoint::latest(&args.checkpoint).map(|c| c.1).ok_or_else(|| {
            (
                format!("{}: not a checkpoint directory, and no checkpoints under it", args.checkpoint.display()),
                Some("point --checkpoint at RUN/checkpoints/step-N or at the run directory".into()),
            )
        })?
    };
    let cfg_path = ckpt.join("config.yaml");
    let cfg: TrainConfig = unireal_core::load_config(&cfg_path, &[]).map_err(fail)?;
    let task: Task = args.task.parse().map_err(|e| (format!("--task: {e}"), None))?;
    let roles: Vec<ImageRole> = if args.roles.is_empty() {
        default_roles(task, args.images.len())
    } else {
        if args.roles.len() != args.images.len() {
            return Err((format!("{} --role for {} --image", args.roles.len(), args.images.len()), None));
        }
        args.roles
            .iter()
            .map(|r| r.parse::<ImageRole>().map_err(|e| (format!("--role: {e}"), None)))
            .collect::<Result<_, _>>()?
    };
    if roles.contains(&ImageRole::Output) {
        return Err(("--role output: inputs are asset, canvas or control".into(), None));
    }
    let device = Default::default();
    let mut model = cfg.model.init::<Backend>(&device).map_err(fail)?;
    let weights =
        if !args.no_ema && ckpt.join("ema.safetensors").is_file() { "ema.safetensors" } else { "model.safetensors" };
    unireal_model::load_safetensors(&mut model, &ckpt.join(weights), &[], unireal_model::LoadOptions { strict: true })
        .map_err(fail)?;
    let frozen = cfg.model.frozen::<Backend>(&device).map_err(fail)?;

    let images: Vec<image::RgbImage> = args
        .images
        .iter()
        .map(|p| image::open(p).map(|i| i.to_rgb8()).map_err(|e| (format!("{}: {e}", p.display()), None)))
        .collect::<Result<_, _>>()?;
    let patch = cfg.model.dit_config().map_err(fail)?.patch;
    let align = (frozen.latent.factor() * patch) as u32;
    let snap = |x: u32| (x.div_ceil(align).max(1)) * align;
    let bucket = match &args.size {
        Some(s) => {
            let (w, h) = s
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .ok_or_else(|| (format!("--size {s}: expected WxH, e.g. 64x64"), None))?;
            Bucket { width: snap(w), height: snap(h) }
        }
        None => {
            let buckets = unireal_train::data::buckets(cfg.data.resolution, &cfg.data.aspect_ratios, align);
            match images.first() {
                Some(i) => buckets[unireal_train::data::nearest_bucket(&buckets, i.width(), i.height())],
                None => buckets[0],
            }
        }
    };
    let context = args.context.clone().unwrap_or_else(|| default_context(task));
    let mut inputs = Vec::new();
    for img in &images {
        inputs.extend(image_to_chw(&cover_crop(img, bucket)));
    }
    let req = Request {
        prompts: vec![full_prompt_parts(&context, &args.prompt)],
        inputs,
        input_roles: roles.iter().map(|r| role_index(*r)).collect(),
        n_inputs: images.len(),
        n_outputs: args.outputs.max(1),
        bucket,
        steps: args.steps,
        shift: unireal_train::trainer::shift_for(
            &cfg,
            unireal_train::trainer::tokens_per_frame(bucket, frozen.latent.factor(), patch),
        ),
        guidance: Guidance { text: args.text_guidance, image: args.image_guidance },
        seed: args.seed,
    };
    eprintln!(
        "unireal-infer: {} ({weights}), task {}, {} input(s), {}x{}, {} steps",
        ckpt.display(),
        task.as_str(),
        images.len(),
        bucket.width,
        bucket.height,
        args.steps
    );
    let out = generate(&model, &frozen, &cfg.model, &req, &device, |_, _| {}).map_err(fail)?;
    let px: Vec<f32> = out.into_data().convert::<f32>().to_vec().map_err(|e| fail(format!("{e:?}")))?;
    let plane = (3 * bucket.width * bucket.height) as usize;
    for k in 0..req.n_outputs {
        let path = if k == 0 {
            args.out.clone()
        } else {
            let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
            args.out.with_file_name(format!("{stem}-{}.png", k + 1))
        };
        save_png(&chw_to_image(&px[k * plane..(k + 1) * plane], bucket.width, bucket.height), &path).map_err(fail)?;
        println!("{}", path.display());
    }
    Ok(())
}
