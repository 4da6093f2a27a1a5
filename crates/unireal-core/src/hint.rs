//! Errors for people: an error with a `hint:` line saying what the user can do, and the one
//! way every binary prints an error (uv's style: the error and its causes, then a blank line
//! and the hint).

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

/// An error with a hint for the user. Binaries attach it where the user can act; [`report`]
/// finds it anywhere in an error's chain.
#[derive(Debug)]
pub struct Hinted {
    error: Box<dyn Error + Send + Sync + 'static>,
    hint: String,
}

impl Hinted {
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>, hint: impl Into<String>) -> Hinted {
        Hinted { error: error.into(), hint: hint.into() }
    }

    pub fn hint(&self) -> &str {
        &self.hint
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl Error for Hinted {
    // The wrapped error is shown as this one's message, so the chain continues below it.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

/// `result.hint("…")`: attaches a hint to the error of a `Result`.
pub trait WithHint<T> {
    fn hint(self, hint: impl Into<String>) -> Result<T, Hinted>;
    /// The hint is built only on error.
    fn with_hint<H: Into<String>>(self, hint: impl FnOnce() -> H) -> Result<T, Hinted>;
}

impl<T, E: Into<Box<dyn Error + Send + Sync + 'static>>> WithHint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> Result<T, Hinted> {
        self.map_err(|e| Hinted::new(e, hint))
    }
    fn with_hint<H: Into<String>>(self, hint: impl FnOnce() -> H) -> Result<T, Hinted> {
        self.map_err(|e| Hinted::new(e, hint()))
    }
}

/// The text a binary prints for `error`: `error: …`, one `  caused by: …` line per cause
/// whose message adds something, then a blank line and `hint: …` when a [`Hinted`] is in the
/// chain (the outermost one wins).
pub fn report(error: &(dyn Error + 'static)) -> String {
    let mut out = format!("error: {error}");
    let mut hint = None;
    let mut shown = error.to_string();
    let mut cur: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = cur {
        if hint.is_none() {
            hint = e.downcast_ref::<Hinted>().map(|h| h.hint.clone());
        }
        let msg = e.to_string();
        // thiserror's `#[error(transparent)]` and `"{path}: {source}"` repeat their cause.
        if !shown.contains(&msg) {
            out.push_str(&format!("\n  caused by: {msg}"));
            shown.push_str(&msg);
        }
        cur = e.source();
    }
    if let Some(h) = hint {
        out.push_str(&format!("\n\nhint: {h}"));
    }
    out
}

/// Ends a binary's `main`: prints [`report`] to stderr on error and returns the exit code.
pub fn exit<E: AsRef<dyn Error + 'static>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}")]
    struct Read {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn report_shows_causes_then_a_blank_line_and_the_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e: Result<(), _> = Err(Read { path: "/x/manifest.json".into(), source: io });
        let h = e.hint("build shards first").unwrap_err();
        let text = report(&h);
        assert_eq!(text, "error: reading /x/manifest.json\n  caused by: no such file\n\nhint: build shards first");
    }

    #[test]
    fn a_hint_deeper_in_the_chain_is_found_and_no_hint_prints_none() {
        #[derive(Debug, thiserror::Error)]
        #[error("training failed")]
        struct Outer(#[source] Hinted);
        let inner = Hinted::new("checkpoint is corrupt", "delete it and --resume");
        let text = report(&Outer(inner));
        assert!(
            text.starts_with("error: training failed\n  caused by: checkpoint is corrupt\n\nhint: delete it"),
            "{text}"
        );
        let plain = std::io::Error::other("disk full");
        assert_eq!(report(&plain), "error: disk full");
    }
}
