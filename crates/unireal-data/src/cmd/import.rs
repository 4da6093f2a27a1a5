use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments of the future importer.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(_a: Args) -> anyhow::Result<()> {
    Err(hinted(
        "`unireal-data import` is not built yet: expert datasets (InstructPix2Pix, UltraEdit, MagicBrush, VITON-HD, RefCOCO) cannot be imported in this version",
        "only video builds exist so far: `unireal-data build configs/video.yaml`",
    ))
}
