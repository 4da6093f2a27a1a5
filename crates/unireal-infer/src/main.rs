//! `unireal-infer --checkpoint RUN/checkpoints/step-N --image a.png --prompt "…" --task frame2frame --out out.png`
//!
//! Runs any task: 0 images is text-to-image; each `--image` is an input frame (`IMG1`, `IMG2`,
//! …) with a role from `--role` or the task's default. Writes the output frame(s) as PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_core::{Hinted, ImageRole, Task, WithHint};
use unireal_flow::Guidance;
use unireal_pipeline::image::{chw_to_image, image_to_chw, mean_colour, open_rgb, psnr, save_png, SampleFit};
use unireal_pipeline::prompt::{default_context, default_roles, role_index};
use unireal_pipeline::{generate_pixels, Bucket, Checkpoint, PipelineError, Request};

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
    /// The context prompt; default: the one the task's training samples have
    /// (`unireal_core::task_context`, e.g. "realistic style, dynamic scene.").
    #[arg(long)]
    context: Option<String>,
    /// Output PNG; with --outputs above 1, `-2`, `-3`, … are added before the extension.
    #[arg(long, default_value = "out.png")]
    out: PathBuf,
    /// Output size WxH in pixels (rounded to the model's multiple); default: the run's
    /// `log.infer_resolution` (else its training resolution) at the first input image's
    /// aspect ratio.
    #[arg(long)]
    size: Option<String>,
    #[arg(long, default_value_t = 1)]
    outputs: usize,
    /// Sampling steps (default: the run's `log.sample_steps`, as its sample grids).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Text guidance scale (default: the run's `log.guidance.text`).
    #[arg(long)]
    text_guidance: Option<f64>,
    /// Image guidance scale (default: the run's `log.guidance.image`).
    #[arg(long)]
    image_guidance: Option<f64>,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    no_ema: bool,
    /// The expected output (e.g. a held-out sample's target frame): fitted to the output's
    /// size as training fits an output (unless it has that size), it is compared with each output, and stdout gets one
    /// JSON line per output instead of its path: `{"output", "psnr_db",
    /// "mean_colour_psnr_db"}` (the second is a flat image of the target's mean colour: the
    /// baseline an output must beat to show more than the scene's average colour).
    #[arg(long)]
    target: Option<PathBuf>,
}

fn main() -> ExitCode {
    unireal_core::hint::exit(run(Args::parse()))
}

/// `WxH`, e.g. `64x64`.
fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    s.split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--size {s}: expected WxH"))
        .hint("e.g. --size 64x64 (rounded up to the model's multiple)")
        .map_err(Into::into)
}

fn roles(task: Task, args: &Args) -> anyhow::Result<Vec<ImageRole>> {
    if args.roles.is_empty() {
        return Ok(default_roles(task, args.images.len()));
    }
    if args.roles.len() != args.images.len() {
        return Err(Hinted::new(
            format!("{} --role for {} --image", args.roles.len(), args.images.len()),
            "give one --role per --image, in order, or none for the task's defaults",
        )
        .into());
    }
    let roles: Vec<ImageRole> = args
        .roles
        .iter()
        .map(|r| r.parse::<ImageRole>().map_err(|e| anyhow::anyhow!("--role: {e}")))
        .collect::<anyhow::Result<_>>()?;
    if roles.contains(&ImageRole::Output) {
        return Err(Hinted::new("--role output: inputs are asset, canvas or control", "drop the output role").into());
    }
    Ok(roles)
}

fn run(args: Args) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(&args.checkpoint).map_err(|e| match e {
        PipelineError::NotACheckpoint(_) => {
            Hinted::new(e, "point --checkpoint at RUN/checkpoints/step-N or at the run directory").into()
        }
        e => anyhow::Error::new(e),
    })?;
    let task: Task = args.task.parse().map_err(|e| anyhow::anyhow!("--task: {e}"))?;
    let roles = roles(task, &args)?;
    let device = Default::default();
    let ema = !args.no_ema;
    let model = ckpt.load_model::<Backend>(ema, &device)?;
    let frozen = ckpt.config.model.frozen::<Backend>(&device)?;
    let images: Vec<image::RgbImage> = args.images.iter().map(|p| open_rgb(p)).collect::<Result<_, _>>()?;
    let bucket = match &args.size {
        Some(s) => {
            let (w, h) = parse_size(s)?;
            let align = ckpt.config.model.pixel_align()?;
            let snap = |x: u32| (x.div_ceil(align).max(1)) * align;
            Bucket { width: snap(w), height: snap(h) }
        }
        // As in training, where a sample's bucket follows its output: the bucket of the first
        // canvas or control image (the frame the output is aligned with), else of the first image.
        None => {
            let sizes = roles.iter().copied().zip(images.iter().map(|i| i.dimensions()));
            ckpt.bucket_for(SampleFit::reference(sizes).or(images.first().map(|i| i.dimensions())))?
        }
    };
    let context = args.context.clone().unwrap_or_else(|| default_context(task));
    let run_log = &ckpt.config.log;
    // As in training: the instruction survives the text encoder's limit, the context gives way.
    let prompt = unireal_pipeline::fit_prompt(&ckpt.config.model, &frozen, &context, &args.prompt);
    if prompt.truncated {
        eprintln!("warning: the prompt is longer than the text encoder takes; it reads: {:?}", prompt.text);
    }
    // Canvas and control images get one crop, assets are fitted whole on white: the
    // transform training applied (unireal_pipeline::image::SampleFit).
    let fit = SampleFit::new(bucket, roles.iter().copied().zip(images.iter().map(|i| i.dimensions())));
    // A target already at the output's size is taken as it is.
    let target = args
        .target
        .as_ref()
        .map(|p| {
            open_rgb(p).map(|t| {
                if t.dimensions() == (bucket.width, bucket.height) {
                    t
                } else {
                    fit.apply(&t, ImageRole::Output)
                }
            })
        })
        .transpose()?;
    let inputs: Vec<f32> = images.iter().zip(&roles).flat_map(|(img, r)| image_to_chw(&fit.apply(img, *r))).collect();
    let req = Request {
        prompts: vec![prompt.text],
        inputs,
        input_roles: roles.iter().map(|r| role_index(*r)).collect(),
        n_inputs: images.len(),
        n_outputs: args.outputs.max(1),
        bucket,
        steps: args.steps.unwrap_or(run_log.sample_steps),
        shift: ckpt.shift(bucket)?,
        guidance: Guidance {
            text: args.text_guidance.unwrap_or(run_log.guidance.text),
            image: args.image_guidance.unwrap_or(run_log.guidance.image),
        },
        seed: args.seed,
    };
    let weights = ckpt.weights(ema);
    eprintln!(
        "unireal-infer: {} ({}), task {}, {} input(s), {}x{}, {} steps",
        ckpt.dir.display(),
        weights.file_name().unwrap_or_default().to_string_lossy(),
        task.as_str(),
        images.len(),
        bucket.width,
        bucket.height,
        req.steps
    );
    let px = generate_pixels(&model, &frozen, &ckpt.config.model, &req, &device, |_, _| {})?;
    let plane = (3 * bucket.width * bucket.height) as usize;
    for k in 0..req.n_outputs {
        let path = if k == 0 {
            args.out.clone()
        } else {
            let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
            args.out.with_file_name(format!("{stem}-{}.png", k + 1))
        };
        let out = chw_to_image(&px[k * plane..(k + 1) * plane], bucket.width, bucket.height);
        save_png(&out, &path)?;
        match &target {
            Some(t) => println!(
                "{}",
                serde_json::json!({
                    "output": path,
                    "psnr_db": psnr(&out, t),
                    "mean_colour_psnr_db": psnr(&mean_colour(t), t),
                })
            ),
            None => println!("{}", path.display()),
        }
    }
    Ok(())
}
