//! Typed configs from YAML, with `--set key.path=value` overrides.
//!
//! Every config struct derives `Deserialize` with `#[serde(deny_unknown_fields)]` and
//! `#[serde(default)]`, so a missing key takes its documented default and an unknown or
//! misspelt key is an error. Errors name the file, the dotted key and, for keys written in the
//! file, the line and column.

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a config could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML is malformed or a value does not fit the typed config.
    Invalid {
        /// The file, or `--set` when the overrides caused it.
        origin: String,
        /// The dotted key path (`pairs.ssim_max`), empty at the top level.
        key: String,
        /// 1-based line and column in the file, when known.
        line: Option<(usize, usize)>,
        message: String,
    },
    /// A `--set` argument that is not `key.path=value`.
    BadOverride {
        arg: String,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "cannot read config {}: {source}", path.display()),
            ConfigError::Invalid { origin, key, line, message } => {
                write!(f, "{origin}")?;
                if let Some((l, c)) = line {
                    write!(f, ":{l}:{c}")?;
                }
                if !key.is_empty() {
                    write!(f, ": key `{key}`")?;
                }
                write!(f, ": {message}")
            }
            ConfigError::BadOverride { arg, message } => write!(f, "bad --set `{arg}`: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Strips serde_yaml's own " at line L column C" suffix; we print the location ourselves.
fn clean_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn key_of(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

/// Parses YAML text into a typed config. `origin` names the text in errors (a file path).
pub fn parse_config_str<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    // An empty file is an empty mapping: every key takes its default.
    let text = if text.trim().is_empty() { "{}" } else { text };
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = key_of(e.path());
        let inner = e.inner();
        ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            line: inner.location().map(|l| (l.line(), l.column())),
            message: clean_message(inner),
        }
    })
}

/// Applies one `key.path=value` override to a YAML tree. The value is parsed as YAML
/// (`3`, `0.5`, `true`, `[1, 2]`, `{kind: builtin}`, or a plain string).
pub fn apply_override(root: &mut Value, arg: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| ConfigError::BadOverride { arg: arg.to_string(), message: message.to_string() };
    let (key, raw) = arg.split_once('=').ok_or_else(|| bad("expected key.path=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(bad("the key is empty or has an empty segment"));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_yaml::from_str(raw).map_err(|e| bad(&format!("value is not YAML: {}", clean_message(&e))))?
    };
    if !root.is_mapping() {
        *root = Value::Mapping(Mapping::new());
    }
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            _ => return Err(bad(&format!("`{}` is not a mapping", parts[..i].join(".")))),
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        if !map.contains_key(&k) || map.get(&k).is_some_and(|v| v.is_null()) {
            map.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&k).expect("inserted above");
    }
    Ok(())
}

/// Loads a typed config from a YAML file and applies `--set` overrides in order.
///
/// The file alone is checked first, so that its own mistakes are reported with line numbers;
/// then the overrides are applied and the result is checked again.
pub fn load_config<T: DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let origin = path.display().to_string();
    let parsed: T = parse_config_str(&text, &origin)?;
    if overrides.is_empty() {
        return Ok(parsed);
    }
    let mut tree: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(&text).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            key: String::new(),
            line: e.location().map(|l| (l.line(), l.column())),
            message: clean_message(&e),
        })?
    };
    for o in overrides {
        apply_override(&mut tree, o)?;
    }
    serde_path_to_error::deserialize(tree).map_err(|e| ConfigError::Invalid {
        origin: format!("{origin} (with --set {})", overrides.join(" ")),
        key: key_of(e.path()),
        line: None,
        message: clean_message(e.inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        threshold: f64,
        names: Vec<String>,
    }
    impl Default for Inner {
        fn default() -> Self {
            Inner { threshold: 27.0, names: vec![] }
        }
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Top {
        output: String,
        shots: Inner,
    }

    #[test]
    fn defaults_and_values() {
        let t: Top = parse_config_str("output: out\n", "x.yaml").unwrap();
        assert_eq!(t.output, "out");
        assert_eq!(t.shots.threshold, 27.0);
        let t: Top = parse_config_str("", "x.yaml").unwrap();
        assert_eq!(t, Top::default());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse_config_str::<Top>("output: out\nshots:\n  treshold: 3\n", "cfg.yaml").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("cfg.yaml:3:"), "{s}");
        assert!(s.contains("treshold"), "{s}");
        assert!(s.contains("threshold"), "expected the valid names: {s}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let err = parse_config_str::<Top>("shots:\n  threshold: high\n", "cfg.yaml").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("cfg.yaml:2:"), "{s}");
        assert!(s.contains("shots.threshold"), "{s}");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "output: out\n").unwrap();
        let t: Top = load_config(&p, &["shots.threshold=30".into(), "shots.names=[a, b]".into()]).unwrap();
        assert_eq!(t.shots.threshold, 30.0);
        assert_eq!(t.shots.names, vec!["a", "b"]);
        let err = load_config::<Top>(&p, &["shots.nope=1".into()]).unwrap_err().to_string();
        assert!(err.contains("--set") && err.contains("nope"), "{err}");
        let err = load_config::<Top>(&p, &["novalue".into()]).unwrap_err().to_string();
        assert!(err.contains("key.path=value"), "{err}");
        let err = load_config::<Top>(&dir.path().join("missing.yaml"), &[]).unwrap_err().to_string();
        assert!(err.contains("missing.yaml"), "{err}");
    }
}
