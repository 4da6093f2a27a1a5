use std::path::PathBuf;

use unireal_video::{detect_shots, ShotOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Video files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per file on stdout: {"path", "fps", "frames", "cuts_frame", "cuts_s"}.
    #[arg(long)]
    json: bool,
    /// Content-score threshold for a cut.
    #[arg(long, default_value_t = ShotOptions::default().threshold)]
    threshold: f64,
    /// Minimum frames between cuts.
    #[arg(long, default_value_t = ShotOptions::default().min_shot_frames)]
    min_shot_frames: u64,
    /// Decoder threads (0: FFmpeg chooses).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opts = ShotOptions { threshold: a.threshold, min_shot_frames: a.min_shot_frames, ..Default::default() };
    let mut failed = 0;
    for f in &a.files {
        match detect_shots(f, opts, a.threads) {
            Ok(r) if a.json => println!("{}", r.to_json(f)),
            Ok(r) => {
                let cuts: Vec<String> =
                    r.cuts_frame.iter().zip(&r.cuts_s).map(|(c, t)| format!("{c} ({t:.2}s)")).collect();
                println!(
                    "{}: {} frames at {:.3} fps, {} shot(s){}{}",
                    f.display(),
                    r.frames,
                    r.fps,
                    r.cuts_frame.len() + 1,
                    if cuts.is_empty() { "" } else { "; cuts at " },
                    cuts.join(", ")
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} file(s) could not be read", a.files.len());
    }
    Ok(())
}
