//! The text and roles a model is conditioned on, assembled one way for training, inference and
//! evaluation: context prompt + base prompt, role embedding indices, and the defaults
//! inference uses for a task (the roles and context its training samples had).

use unireal_core::{context_prompt, task_context, ImageRole, Sample, Style, Task};

/// The text the DiT is conditioned on: context prompt, then base prompt.
pub fn full_prompt(s: &Sample) -> String {
    full_prompt_parts(&s.context_prompt, &s.base_prompt)
}

/// Joins a context prompt and a base prompt as the trainer does.
pub fn full_prompt_parts(context: &str, base: &str) -> String {
    match (context.trim(), base.trim()) {
        ("", b) => b.to_string(),
        (c, "") => c.to_string(),
        (c, b) if c.ends_with(['.', '!', '?']) => format!("{c} {b}"),
        (c, b) => format!("{c}. {b}"),
    }
}

/// A prompt as the text encoder will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FittedPrompt {
    pub text: String,
    /// Something was left out: clauses of the context prompt or, when even the instruction
    /// alone is too long, the instruction's end (which the encoder cuts).
    pub truncated: bool,
}

/// Joins `context` and `base` ([`full_prompt_parts`]) so that the instruction survives the
/// text encoder's limit (`fits`): while the whole does not fit, the context prompt loses its
/// last comma-separated clause ("realistic style, dynamic scene." → "realistic style."), then
/// goes altogether; the base prompt is never shortened here (an instruction too long on its
/// own is cut at its end by the encoder, and counted as truncated too).
pub fn fit_prompt(context: &str, base: &str, fits: impl Fn(&str) -> bool) -> FittedPrompt {
    let full = full_prompt_parts(context, base);
    if fits(&full) {
        return FittedPrompt { text: full, truncated: false };
    }
    let clauses: Vec<&str> = context.trim().trim_end_matches(['.', '!', '?']).split(',').map(str::trim).collect();
    for keep in (1..clauses.len()).rev() {
        let shorter = format!("{}.", clauses[..keep].join(", "));
        let text = full_prompt_parts(&shorter, base);
        if fits(&text) {
            return FittedPrompt { text, truncated: true };
        }
    }
    FittedPrompt { text: full_prompt_parts("", base), truncated: true }
}

/// The image-role embedding index of a role.
pub fn role_index(r: ImageRole) -> i64 {
    use unireal_model::dit::*;
    match r {
        ImageRole::Asset => ROLE_ASSET,
        ImageRole::Canvas => ROLE_CANVAS,
        ImageRole::Control => ROLE_CONTROL,
        ImageRole::Output => ROLE_OUTPUT,
    }
}

/// The roles of `n` input images of `task` as the training samples have them
/// (docs/data-format.md): an asset then the canvas for insertion and try-on, all assets for
/// multi_object, a control map for control, else the canvas first and assets after it.
pub fn default_roles(task: Task, n: usize) -> Vec<ImageRole> {
    (0..n)
        .map(|i| match task {
            Task::Control => ImageRole::Control,
            Task::MultiObject => ImageRole::Asset,
            Task::Insertion | Task::TryOn if i == 0 => ImageRole::Asset,
            Task::Insertion | Task::TryOn if i == 1 => ImageRole::Canvas,
            _ if i == 0 => ImageRole::Canvas,
            _ => ImageRole::Asset,
        })
        .collect()
}

/// The context prompt of realistic samples of `task` ([`unireal_core::task_context`]).
pub fn default_context(task: Task) -> String {
    context_prompt(&task_context(task, Style::Realistic, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_join_with_one_separator() {
        assert_eq!(
            full_prompt_parts("realistic style.", "Turn IMG1 into RES1."),
            "realistic style. Turn IMG1 into RES1."
        );
        assert_eq!(full_prompt_parts("realistic style", "x"), "realistic style. x");
        assert_eq!(full_prompt_parts("", " x "), "x");
        assert_eq!(full_prompt_parts("c.", ""), "c.");
    }

    #[test]
    fn the_instruction_survives_the_limit_and_the_context_gives_way() {
        let ctx = "realistic style, dynamic scene, with reference object.";
        let base = "Turn IMG1 into RES1: move the red car to the left.";
        let fits = |n: usize| move |p: &str| p.len() < n;
        let all = fit_prompt(ctx, base, fits(1000));
        assert_eq!(all.text, format!("{ctx} {base}"));
        assert!(!all.truncated);
        // Room for one clause of the context.
        let one = fit_prompt(ctx, base, fits(base.len() + 20));
        assert_eq!(one.text, format!("realistic style. {base}"));
        assert!(one.truncated);
        let two = fit_prompt(ctx, base, fits(base.len() + 34));
        assert_eq!(two.text, format!("realistic style, dynamic scene. {base}"));
        // No room for any context: the instruction alone, whole.
        let none = fit_prompt(ctx, base, fits(base.len() + 3));
        assert_eq!((none.text.as_str(), none.truncated), (base, true));
        // Too long even alone: still the instruction (its end is what the encoder cuts).
        assert_eq!(fit_prompt(ctx, base, fits(10)).text, base);
        assert_eq!(fit_prompt("", base, fits(10)).text, base);
    }

    #[test]
    fn inference_defaults_match_the_trained_samples() {
        use ImageRole::*;
        assert_eq!(default_roles(Task::Insertion, 2), [Asset, Canvas]);
        assert_eq!(default_roles(Task::TryOn, 2), [Asset, Canvas], "garment, then the person");
        assert_eq!(default_roles(Task::MultiObject, 3), [Asset, Asset, Asset]);
        assert_eq!(default_roles(Task::Frame2Frame, 1), [Canvas]);
        assert_eq!(default_roles(Task::Control, 1), [Control]);
        assert_eq!(default_context(Task::MultiObject), "realistic style, dynamic scene, with reference object.");
        assert_eq!(default_context(Task::Insertion), "realistic style, static scene, with reference object.");
        assert_eq!(default_context(Task::Frame2Frame), "realistic style, dynamic scene.");
    }
}
