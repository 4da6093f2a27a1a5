//! The build's caption requests. An in-process captioner (built-in, sidecar) answers at once.
//! A remote one (`captioner: openai` with `concurrency` > 1) is asked by a pool of
//! `concurrency` request threads shared by every worker: a video's requests go to the pool as
//! its pairs are found, decoding goes on, and the answers are collected when the video ends.
//! So a GPU endpoint sees `concurrency` requests in flight even with one worker, instead of
//! one per worker at a time.
//!
//! The samples are the same either way, except after a failed request: answered at once, a
//! failed pair makes room for the next candidate pair of its first frame; from the pool, the
//! failure is known only at the video's end and the pair is left out (counted as before).
//! Within a video, control samples from the pool come after the other object samples.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use unireal_annotate::{CaptionError, CaptionRequest, Captioner, DescribeRequest};
use unireal_core::Sample;
use unireal_vision::ChangeMeasures;

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

/// What a pool thread sends back: the answer, or the captioner's panic (raised again in the
/// video's thread, where the driver records the input as panicked).
type Reply = std::thread::Result<Result<String, CaptionError>>;

/// The pool of request threads (see the module documentation).
pub(crate) struct CaptionPool {
    tx: Sender<(Ask, Sender<Reply>)>,
}

impl CaptionPool {
    /// Runs `f` with a pool of `threads` request threads asking `captioner`, or with none
    /// (answers at once) when `threads` <= 1. The threads end with `f`. Once `stop` is set,
    /// requests still queued are answered [`CaptionError::Interrupted`] without being sent, so
    /// that a stopped build does not wait for them.
    pub fn with<R>(
        captioner: &dyn Captioner,
        threads: usize,
        stop: &AtomicBool,
        f: impl FnOnce(Option<&CaptionPool>) -> R,
    ) -> R {
        if threads <= 1 {
            return f(None);
        }
        let (tx, rx) = crossbeam_channel::unbounded::<(Ask, Sender<Reply>)>();
        std::thread::scope(|s| {
            for k in 0..threads {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("unireal-caption-{k}"))
                    .spawn_scoped(s, move || {
                        for (ask, reply) in rx {
                            let answer = match stop.load(Ordering::Relaxed) {
                                true => Ok(Err(CaptionError::Interrupted)),
                                false => catch_unwind(AssertUnwindSafe(|| ask.run(captioner))),
                            };
                            let _ = reply.send(answer);
                        }
                    })
                    .expect("a caption request thread");
            }
            let pool = CaptionPool { tx };
            let r = f(Some(&pool));
            drop(pool);
            r
        })
    }
}

/// An answer: given at once, or coming from the pool.
pub(crate) enum Answer {
    Now(Result<String, CaptionError>),
    Later(Receiver<Reply>),
}

impl Answer {
    /// Asks `captioner`, through the pool when there is one.
    pub fn ask(captioner: &dyn Captioner, pool: Option<&CaptionPool>, ask: Ask) -> Answer {
        match pool {
            None => Answer::Now(ask.run(captioner)),
            Some(p) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                match p.tx.send((ask, tx)) {
                    Ok(()) => Answer::Later(rx),
                    // The pool outlives every video; a closed one can only mean a bug.
                    Err(e) => Answer::Now(e.into_inner().0.run(captioner)),
                }
            }
        }
    }

    /// The answer, waiting for the pool if need be.
    pub fn wait(self) -> Result<String, CaptionError> {
        match self {
            Answer::Now(r) => r,
            Answer::Later(rx) => match rx.recv() {
                Ok(Ok(r)) => r,
                Ok(Err(panic)) => resume_unwind(panic),
                Err(_) => unreachable!("a pool thread ends only when the pool is dropped"),
            },
        }
    }
}

/// Samples waiting for their caption: the answer completes the base prompt.
#[derive(Default)]
pub(crate) struct Deferred(Vec<(Sample, Receiver<Reply>)>);

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
