//! The build's caption requests. An in-process captioner (built-in, sidecar) answers at once.
//! A remote one (`captioner: openai` with `concurrency` > 1) is asked by a pool of
//! `concurrency` request threads shared by every worker (crate::pool): a video's requests go
//! to the pool as its pairs are found, decoding goes on, and the answers are collected when
//! the video ends.
//!
//! The samples are the same either way, except after a failed request: answered at once, a
//! failed pair makes room for the next candidate pair of its first frame; from the pool, the
//! failure is known only at the video's end and the pair is left out (counted as before).
//! Within a video, control samples from the pool come after the other object samples.

use std::sync::atomic::AtomicBool;

use crossbeam_channel::Receiver;
use unireal_annotate::{CaptionError, CaptionRequest, Captioner, DescribeRequest};
use unireal_core::Sample;
use unireal_vision::ChangeMeasures;

use crate::pool::{Pending, Pool, Reply};

/// A request, owned, so that it can wait in the pool's queue.
pub(crate) enum Ask {
    Caption {
        input: String,
        first: Vec<u8>,
        second: Vec<u8>,
        change: ChangeMeasures,
        sidecar: Option<String>,
        seed: u64,
    },
    Describe {
        input: String,
        jpeg: Vec<u8>,
        mean_rgb: [f64; 3],
        objects: Vec<String>,
        sidecar: Option<String>,
        seed: u64,
    },
}

impl Ask {
    fn run(&self, captioner: &dyn Captioner) -> Result<String, CaptionError> {
        match self {
            Ask::Caption { input, first, second, change, sidecar, seed } => captioner.caption(&CaptionRequest {
                input,
                first_jpeg: first,
                second_jpeg: second,
                change,
                sidecar: sidecar.as_deref(),
                seed: *seed,
            }),
            Ask::Describe { input, jpeg, mean_rgb, objects, sidecar, seed } => captioner.describe(&DescribeRequest {
                input,
                jpeg,
                mean_rgb: *mean_rgb,
                objects,
                sidecar: sidecar.as_deref(),
                seed: *seed,
            }),
        }
    }
}

/// A caption, or why there is none.
pub(crate) type Caption = Result<String, CaptionError>;

/// The caption request threads (crate::pool).
pub(crate) type CaptionPool = Pool<Ask, Caption>;

/// Runs `f` with a pool of `threads` request threads asking `captioner`, or with none (answers
/// at once) when `threads` <= 1; see [`Pool::with`].
pub(crate) fn with_caption_pool<R>(
    captioner: &dyn Captioner,
    threads: usize,
    stop: &AtomicBool,
    f: impl FnOnce(Option<&CaptionPool>) -> R,
) -> R {
    Pool::with("caption", threads, stop, &|ask: &Ask| ask.run(captioner), || Err(CaptionError::Interrupted), f)
}

/// A caption: given at once, or coming from the pool.
pub(crate) type Answer = Pending<Caption>;

/// Asks `captioner`, through the pool when there is one.
pub(crate) fn ask(captioner: &dyn Captioner, pool: Option<&CaptionPool>, q: Ask) -> Answer {
    Pool::ask(pool, q, |q| q.run(captioner))
}

/// Samples waiting for their caption: the answer completes the base prompt.
#[derive(Default)]
pub(crate) struct Deferred(Vec<(Sample, Receiver<Reply<Caption>>)>);

impl Deferred {
    /// Keeps `sample` (its base prompt ends where the caption goes) until `answer` comes;
    /// returns the sample at once when the answer is there.
    pub fn push(&mut self, mut sample: Sample, answer: Answer) -> Option<Result<Sample, CaptionError>> {
        match answer {
            Answer::Now(r) => Some(r.map(|c| {
                sample.base_prompt.push_str(&c);
                sample
            })),
            Answer::Later(rx) => {
                self.0.push((sample, rx));
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Moves `other`'s samples after these.
    pub fn append(&mut self, other: &mut Deferred) {
        self.0.append(&mut other.0);
    }

    /// Waits for every answer, in the order the samples came: each sample with its caption,
    /// or the error that leaves it out.
    pub fn resolve(&mut self) -> Vec<Result<Sample, CaptionError>> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(mut sample, rx)| {
                Answer::Later(rx).wait().map(|c| {
                    sample.base_prompt.push_str(&c);
                    sample
                })
            })
            .collect()
    }
}
