//! The contracts every UniReal crate shares: tasks, image roles, samples, the hierarchical
//! prompt vocabulary, stable sample ids, YAML config loading with `--set` overrides, and
//! atomic file writes. No burn, no ffmpeg, no arrow.

pub mod config;
pub mod fsutil;
pub mod hint;
pub mod prompt;
pub mod sample;

pub use config::{apply_override, load_config, parse_config_str, ConfigError};
pub use fsutil::{write_atomic, DirLock, LockError};
pub use hint::{Hinted, WithHint};
pub use prompt::{context_prompt, index_word, result_word, task_context, ContextTag, ControlContext, Style};
pub use sample::{holdout_key, sample_id, ImageRole, Sample, SampleImage, Split, Task, UnknownName};
