//! `unireal-infer --checkpoint RUN/checkpoints/step-N --image a.png --prompt "…" --task frame2frame --out out.png`
//!
//! Runs any task: 0 images is text-to-image; each `--image` is an input frame (`IMG1`, `IMG2`,
//! …) with a role from `--role` or the task's default. Writes the output frame(s) as PNG.
//!
//! `--checkpoint` may also be a FLUX.1 `FluxPipeline` directory: text-to-image as diffusers'
//! `FluxPipeline` samples it (T5 + CLIP, Flux's schedule, `--distilled-guidance` for dev).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unireal_core::{Hinted, ImageRole, Task, WithHint};
use unireal_flow::Guidance;
use unireal_pipeline::checkpoint::{PreparedRequest, SamplerSettings};
use unireal_pipeline::flux::{is_pipeline_dir, read_latent_file, write_latent_file, FluxPipelineDir};
use unireal_pipeline::generate::decode_frames;
use unireal_pipeline::image::{chw_to_image, mean_colour, open_rgb, psnr, save_png};
use unireal_pipeline::prompt::{default_context, default_roles};
use unireal_pipeline::{generate_latents, Bucket, Checkpoint, PipelineError, Request, DEFAULT_DISTILLED_GUIDANCE};

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
    /// A checkpoint directory (RUN/checkpoints/step-N), a run directory (its latest
    /// checkpoint), or a FLUX.1 FluxPipeline directory (model_index.json, transformer/, vae/, …).
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
    /// FLUX.1-dev's distilled guidance (diffusers' `guidance_scale`); default 3.5. Ignored by
    /// models without a guidance embedding.
    #[arg(long)]
    distilled_guidance: Option<f64>,
    /// Start from this noise instead of --seed's: a safetensors file with a tensor `noise` of
    /// shape [1, C, H/f, W/f] (the VAE's C latent channels and factor f; [1, 16, H/8, W/8] for
    /// Flux), in the unpacked latent layout. One output.
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Also write the final latents (tensor `latents`, [outputs, C, H/f, W/f], the scaled
    /// latent space, before decoding) to this safetensors file.
    #[arg(long)]
    out_latents: Option<PathBuf>,
    /// A LoRA of the FLUX.1 transformer in diffusers' layout (what `FluxPipeline.save_lora_weights`
    /// writes, or a LoRA run's `lora.safetensors`), merged into the weights before sampling.
    /// With a FluxPipeline directory; a LoRA run's checkpoint applies its own adapters.
    #[arg(long)]
    lora: Option<PathBuf>,
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

/// The starting noise of `--init-noise`, for `outputs` frames of `bucket`.
fn init_noise(
    path: &std::path::Path,
    outputs: usize,
    channels: usize,
    factor: usize,
    bucket: Bucket,
) -> anyhow::Result<Vec<f32>> {
    if outputs != 1 {
        return Err(Hinted::new("--init-noise is one output's noise", "drop --outputs, or --init-noise").into());
    }
    let shape = [1, channels, bucket.height as usize / factor, bucket.width as usize / factor];
    Ok(read_latent_file(path, "noise", &shape)?)
}

/// Text-to-image from a FLUX.1 `FluxPipeline` directory, as diffusers samples it.
fn run_flux(args: &Args) -> anyhow::Result<()> {
    if !args.images.is_empty() {
        return Err(Hinted::new(
            "FLUX.1 generates from text alone: --image needs a UniReal checkpoint",
            "train from it first (model.init_from: the FluxPipeline directory), or drop --image",
        )
        .into());
    }
    let ignored = [
        ("--role", !args.roles.is_empty()),
        ("--context", args.context.is_some()),
        ("--image-guidance", args.image_guidance.is_some()),
        ("--no-ema", args.no_ema),
        ("--target", args.target.is_some()),
    ];
    if let Some((flag, _)) = ignored.iter().find(|(_, given)| *given) {
        return Err(Hinted::new(
            format!("{flag} does not apply to a FLUX.1 pipeline directory (text-to-image from the released weights)"),
            format!("drop {flag}"),
        )
        .into());
    }
    let flux = FluxPipelineDir::open(&args.checkpoint)?;
    let cfg = &flux.model;
    let align = cfg.pixel_align()?;
    let (w, h) = match &args.size {
        Some(s) => parse_size(s)?,
        None => (1024, 1024),
    };
    // diffusers rounds down to the VAE factor times the 2x2 packing.
    let snap = |x: u32| (x / align).max(1) * align;
    let bucket = Bucket { width: snap(w), height: snap(h) };
    let (channels, factor) = cfg.latent_shape()?;
    // Several images are a batch of one prompt, as diffusers' num_images_per_prompt: FLUX.1
    // generates one frame at RoPE frame 0.
    let images = args.outputs.max(1);
    // The noise file is checked before the weights load.
    let noise = args.init_noise.as_ref().map(|p| init_noise(p, images, channels, factor, bucket)).transpose()?;
    let device = Default::default();
    let mut model = cfg.init::<Backend>(&device)?;
    if let Some(path) = &args.lora {
        let report;
        (model, report) = unireal_pipeline::merge_lora(model, cfg, path)?;
        let (lo, hi) = report.ranks;
        let ranks = if lo == hi { format!("rank {lo}") } else { format!("ranks {lo}..{hi}") };
        eprintln!("lora: {} ({} modules, {ranks}) merged into the transformer", path.display(), report.modules);
    }
    let frozen = cfg.frozen::<Backend>(&device)?;
    let tokens = unireal_pipeline::tokens_per_frame(bucket, factor, model.dit.patch);
    let req = Request {
        prompts: vec![args.prompt.clone(); images],
        inputs: Vec::new(),
        input_roles: Vec::new(),
        n_inputs: 0,
        n_outputs: 1,
        bucket,
        steps: args.steps.unwrap_or(flux.default_steps),
        shift: flux.schedule.shift(tokens),
        // Flux has no classifier-free guidance; dev's guidance is distilled into guidance_in.
        guidance: Guidance { text: args.text_guidance.unwrap_or(1.0), image: 1.0 },
        distilled_guidance: args.distilled_guidance.unwrap_or(DEFAULT_DISTILLED_GUIDANCE),
        seed: args.seed,
        noise,
    };
    eprintln!(
        "unireal-infer: {} ({}), text-to-image, {}x{}, {} steps",
        args.checkpoint.display(),
        cfg.preset,
        bucket.width,
        bucket.height,
        req.steps
    );
    let z = generate_latents(&model, &frozen, cfg, &req, &device, |_, _| {})?;
    write_outputs(args, z, &frozen, bucket, None)
}

/// Writes `--out-latents` and the decoded PNGs; stdout gets each PNG's path, or with a
/// target one JSON line each.
fn write_outputs(
    args: &Args,
    z: burn::tensor::Tensor<Backend, 5>,
    frozen: &unireal_pipeline::Frozen<Backend>,
    bucket: Bucket,
    target: Option<&image::RgbImage>,
) -> anyhow::Result<()> {
    if let Some(path) = &args.out_latents {
        let [b, n, c, h, w] = z.dims();
        write_latent_file(path, "latents", z.clone().reshape([b * n, c, h, w]))?;
    }
    let px: Vec<f32> = decode_frames(&frozen.latent, z).into_data().convert::<f32>().into_vec()?;
    let plane = (3 * bucket.width * bucket.height) as usize;
    for k in 0..px.len() / plane {
        let path = if k == 0 {
            args.out.clone()
        } else {
            let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
            args.out.with_file_name(format!("{stem}-{}.png", k + 1))
        };
        let out = chw_to_image(&px[k * plane..(k + 1) * plane], bucket.width, bucket.height);
        save_png(&out, &path)?;
        match target {
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

fn run(args: Args) -> anyhow::Result<()> {
    if is_pipeline_dir(&args.checkpoint) {
        return run_flux(&args);
    }
    if args.lora.is_some() {
        return Err(Hinted::new(
            "--lora applies to a FLUX.1 pipeline directory",
            "a LoRA run's checkpoint merges its own adapters; drop --lora, or point --checkpoint at the FluxPipeline directory",
        )
        .into());
    }
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
    let inputs: Vec<(ImageRole, &image::RgbImage)> = roles.iter().copied().zip(images.iter()).collect();
    let bucket = match &args.size {
        Some(s) => {
            let (w, h) = parse_size(s)?;
            let align = ckpt.config.model.pixel_align()?;
            let snap = |x: u32| (x.div_ceil(align).max(1)) * align;
            Bucket { width: snap(w), height: snap(h) }
        }
        None => ckpt.bucket_for_inputs(&inputs)?,
    };
    let context = args.context.clone().unwrap_or_else(|| default_context(task));
    let (channels, factor) = ckpt.config.model.latent_shape()?;
    let settings = SamplerSettings {
        steps: args.steps,
        seed: args.seed,
        text_guidance: args.text_guidance,
        image_guidance: args.image_guidance,
        distilled_guidance: args.distilled_guidance,
        outputs: args.outputs,
        noise: args
            .init_noise
            .as_ref()
            .map(|p| init_noise(p, args.outputs.max(1), channels, factor, bucket))
            .transpose()?,
    };
    let PreparedRequest { request: req, fit, prompt } =
        ckpt.request(&frozen, &inputs, &args.prompt, &context, bucket, &settings)?;
    if prompt.truncated {
        eprintln!("warning: the prompt is longer than the text encoder takes; it reads: {:?}", prompt.text);
    }
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
    let z = generate_latents(&model, &frozen, &ckpt.config.model, &req, &device, |_, _| {})?;
    write_outputs(&args, z, &frozen, bucket, target.as_ref())
}
