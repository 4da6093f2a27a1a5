//! Mutation fuzzing on stable Rust for the readers of everything that comes from outside: shard
//! files, manifests, configs and `--set` values, input lists, the segmenter's answers, importer
//! rows, checkpoint directories.
//!
//! A [`Fuzz`] takes real inputs as seeds (a shard the writer wrote, a shipped config, a fixture),
//! mutates them (truncation, bit flips, deleted, repeated and inserted bytes, tokens of the
//! format spliced in) and hands each case to a check. The check reads the case and says whether
//! the reader accepted it or refused it with a typed error; it returns `Err` for a wrong answer
//! (an error that does not name the file, say). A panic anywhere in the reader is caught and
//! fails the test, with the case written to a file and the seed to rerun it.
//!
//! Deterministic: the seed is derived from the fuzz's name unless `UNIREAL_FUZZ_SEED` is set,
//! and `UNIREAL_FUZZ_CASES` scales every fuzz's number of cases (e.g. 100000 for a long run).
//! Each run prints its name, seed and the number of cases tried, accepted and refused.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// A small deterministic generator (splitmix64): enough for choosing mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that change the meaning of text formats (JSON, YAML, CSV) when they appear.
const INTERESTING: &[u8] = b"\0\xff\x7f\x80\"'\n\r\t,:{}[]-9 #&*!|>";

/// One mutation of `data`; `dict` holds tokens of the format to splice in.
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]]) {
    let len = data.len();
    match rng.below(if dict.is_empty() { 6 } else { 8 }) {
        0 => data.truncate(rng.below(len + 1)),
        1 if len > 0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(INTERESTING);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(16.min(len - at));
            data.drain(at..at + n);
        }
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(64.min(len - at));
            let copy = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, copy);
        }
        6 => {
            let at = rng.below(len + 1);
            data.splice(at..at, rng.pick(dict).iter().copied());
        }
        7 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(8.min(len - at));
            data.splice(at..at + n, rng.pick(dict).iter().copied());
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

/// How a fuzz's seed inputs are structured: text formats also get mutations of their parsed
/// tree (a value replaced by one of another type or an extreme one, a key removed or renamed, an
/// array element removed or repeated), which reach the checks behind the syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Bytes,
    Json,
    Yaml,
}

fn odd_value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(16) {
        0 => json!(null),
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e308),
        7 => json!(-0.5),
        8 => json!(""),
        9 => json!("x"),
        10 => json!("../../x"),
        11 => json!("y".repeat(300)),
        12 => json!([]),
        13 => json!({}),
        14 => json!(1.5),
        _ => json!(["a", 1]),
    }
}

/// One mutation of a parsed tree, at a random node.
fn mutate_tree(rng: &mut Rng, v: &mut serde_json::Value) {
    use serde_json::Value;
    // Walk down to a random node (stopping early at random).
    let mut node = v;
    loop {
        let children = match &*node {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        if children == 0 || rng.below(4) == 0 {
            break;
        }
        let i = rng.below(children);
        node = match node {
            Value::Array(a) => &mut a[i],
            Value::Object(o) => o.values_mut().nth(i).expect("in range"),
            _ => unreachable!(),
        };
    }
    match node {
        Value::Object(o) if !o.is_empty() && rng.below(2) == 0 => {
            let key = o.keys().nth(rng.below(o.len())).expect("in range").clone();
            let value = o.remove(&key).expect("present");
            if rng.below(2) == 0 {
                o.insert(format!("{key}_x"), value);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(2) == 0 => {
            let i = rng.below(a.len());
            if rng.below(2) == 0 {
                a.remove(i);
            } else {
                let copy = a[i].clone();
                a.insert(i, copy);
            }
        }
        _ => *node = odd_value(rng),
    }
}

fn mutate_structured(rng: &mut Rng, data: &[u8], format: Format) -> Option<Vec<u8>> {
    let mut tree: serde_json::Value = match format {
        Format::Bytes => return None,
        Format::Json => serde_json::from_slice(data).ok()?,
        Format::Yaml => serde_yaml::from_slice::<serde_json::Value>(data).ok()?,
    };
    for _ in 0..1 + rng.below(3) {
        mutate_tree(rng, &mut tree);
    }
    match format {
        Format::Json => serde_json::to_vec_pretty(&tree).ok(),
        _ => serde_yaml::to_string(&tree).ok().map(String::into_bytes),
    }
}

/// What a check found a case to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The reader took it (a mutation that kept it valid, or one it tolerates).
    Accepted,
    /// The reader refused it with a typed error (that the check looked at).
    Refused,
}

/// A named fuzz run: see the module documentation.
pub struct Fuzz {
    name: String,
    seed: u64,
    cases: usize,
    format: Format,
}

fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

impl Fuzz {
    /// `cases` is the default number of cases, bounded for the test command; `UNIREAL_FUZZ_CASES`
    /// replaces it.
    pub fn new(name: &str, cases: usize) -> Self {
        let env = |key: &str| std::env::var(key).ok().and_then(|v| v.trim().parse::<u64>().ok());
        Fuzz {
            name: name.into(),
            seed: env("UNIREAL_FUZZ_SEED").unwrap_or_else(|| name_seed(name)),
            cases: env("UNIREAL_FUZZ_CASES").map(|n| n as usize).unwrap_or(cases),
            format: Format::Bytes,
        }
    }

    /// Also mutates the seeds' parsed trees (half of the cases).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Runs the cases: each one is a seed input with 1 to 4 mutations. The unmutated seeds are
    /// tried first and must be accepted (a check that refuses them is wrong). Panics (failing the test) on a panic in `check` or an
    /// `Err` from it, naming the case and where its bytes were written.
    pub fn run(&self, seeds: &[Vec<u8>], dict: &[&[u8]], mut check: impl FnMut(&[u8]) -> Result<Verdict, String>) {
        assert!(!seeds.is_empty(), "fuzz {}: no seed inputs", self.name);
        let mut rng = Rng::new(self.seed);
        let (mut accepted, mut refused) = (0usize, 0usize);
        for (k, seed) in seeds.iter().enumerate() {
            match self.try_case(&mut check, seed) {
                Ok(Verdict::Accepted) => {}
                // A check that refuses valid input would pass every case vacuously.
                Ok(Verdict::Refused) => {
                    self.fail(usize::MAX - k, seed, &format!("unmutated seed input {k} was refused"))
                }
                Err(e) => self.fail(usize::MAX - k, seed, &format!("unmutated seed input {k}: {e}")),
            }
        }
        for case in 0..self.cases {
            let seed = rng.pick(seeds);
            let structured = if rng.below(2) == 0 { mutate_structured(&mut rng, seed, self.format) } else { None };
            let data = structured.unwrap_or_else(|| {
                let mut data = seed.clone();
                for _ in 0..1 + rng.below(4) {
                    mutate_once(&mut rng, &mut data, dict);
                }
                data
            });
            match self.try_case(&mut check, &data) {
                Ok(Verdict::Accepted) => accepted += 1,
                Ok(Verdict::Refused) => refused += 1,
                Err(e) => self.fail(case, &data, &e),
            }
        }
        // Straight to the process's stderr, past the test harness's capture: the test
        // command's log shows every fuzz's count.
        let line = format!(
            "fuzz {}: {} cases (seed {}): {accepted} accepted, {refused} refused with an error, no panic\n",
            self.name, self.cases, self.seed
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }

    fn try_case(
        &self,
        check: &mut impl FnMut(&[u8]) -> Result<Verdict, String>,
        data: &[u8],
    ) -> Result<Verdict, String> {
        match catch_unwind(AssertUnwindSafe(|| check(data))) {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a non-string panic".into());
                Err(format!("panicked: {msg}"))
            }
        }
    }

    fn fail(&self, case: usize, data: &[u8], why: &str) -> ! {
        let path = std::env::temp_dir().join(format!("unireal-fuzz-{}-{case}.bin", self.name));
        let saved = match std::fs::write(&path, data) {
            Ok(()) => format!("the case's bytes are in {}", path.display()),
            Err(e) => format!("(could not save the case to {}: {e})", path.display()),
        };
        panic!(
            "fuzz {}: case {case} (seed {}, {} cases): {why}\n{saved}\nrerun: UNIREAL_FUZZ_SEED={} cargo test …",
            self.name, self.seed, self.cases, self.seed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let seed = b"{\"a\": [1, 2, 3], \"b\": \"text\"}".to_vec();
        let run = || {
            let mut rng = Rng::new(7);
            (0..200)
                .map(|_| {
                    let mut d = seed.clone();
                    mutate_once(&mut rng, &mut d, &[b"null"]);
                    d
                })
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().filter(|d| **d != seed).count() > 150);
        assert!(a.iter().any(|d| d.len() < seed.len()) && a.iter().any(|d| d.len() > seed.len()));
    }

    #[test]
    fn a_panicking_reader_fails_the_run() {
        let r = catch_unwind(|| {
            Fuzz::new("testkit-self", 50).run(&[b"12345".to_vec()], &[], |d| {
                assert!(d.len() > 3, "short");
                Ok(Verdict::Accepted)
            })
        });
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("panicked: short") && msg.contains("rerun"), "{msg}");
    }
}
