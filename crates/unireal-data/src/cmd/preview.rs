use super::hinted;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments of the future gallery.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(_a: Args) -> anyhow::Result<()> {
    Err(hinted(
        "`unireal-data preview` is not built yet: there is no gallery renderer in this version",
        "look at samples with `unireal-data inspect DIR`, or read the shards with pyarrow (docs/data-format.md)",
    ))
}
