//! A pool of request threads for a remote annotator (a captioning endpoint, a segmenter
//! program), shared by every build worker: a video's requests go to the pool as they come,
//! decoding goes on, and the video takes the answers when it needs them. So an endpoint sees
//! as many requests in flight as the pool has threads, even with one worker, instead of one per
//! worker at a time. With one thread or fewer there is no pool: requests are answered at once
//! on the caller's thread.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};

/// What a pool thread sends back: the answer, or the annotator's panic (raised again in the
/// video's thread, where the driver records the input as panicked).
pub(crate) type Reply<A> = std::thread::Result<A>;

/// The request threads (see the module documentation); `Q` a request, owned so that it can
/// wait in the queue, `A` its answer.
pub(crate) struct Pool<Q, A> {
    tx: Sender<(Q, Sender<Reply<A>>)>,
}

impl<Q: Send, A: Send> Pool<Q, A> {
    /// Runs `f` with a pool of `threads` threads answering requests by `run`, or with none
    /// when `threads` <= 1. The threads end with `f`. Once `stop` is set, requests still
    /// queued are answered `interrupted()` without being run, so that a stopped build does not
    /// wait for them.
    pub fn with<R>(
        name: &str,
        threads: usize,
        stop: &AtomicBool,
        run: &(dyn Fn(&Q) -> A + Sync),
        interrupted: fn() -> A,
        f: impl FnOnce(Option<&Pool<Q, A>>) -> R,
    ) -> R {
        if threads <= 1 {
            return f(None);
        }
        let (tx, rx) = crossbeam_channel::unbounded::<(Q, Sender<Reply<A>>)>();
        std::thread::scope(|s| {
            for k in 0..threads {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("unireal-{name}-{k}"))
                    .spawn_scoped(s, move || {
                        for (q, reply) in rx {
                            let answer = match stop.load(Ordering::Relaxed) {
                                true => Ok(interrupted()),
                                false => catch_unwind(AssertUnwindSafe(|| run(&q))),
                            };
                            let _ = reply.send(answer);
                        }
                    })
                    .expect("a request thread");
            }
            let pool = Pool { tx };
            let r = f(Some(&pool));
            drop(pool);
            r
        })
    }

    /// Sends `q` to the pool when there is one; answers it at once by `run` otherwise.
    pub fn ask(pool: Option<&Self>, q: Q, run: impl FnOnce(&Q) -> A) -> Pending<A> {
        match pool {
            None => Pending::Now(run(&q)),
            Some(p) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                match p.tx.send((q, tx)) {
                    Ok(()) => Pending::Later(rx),
                    // The pool outlives every video; a closed one can only mean a bug.
                    Err(e) => Pending::Now(run(&e.into_inner().0)),
                }
            }
        }
    }
}

/// An answer: given at once, or coming from the pool.
pub(crate) enum Pending<A> {
    Now(A),
    Later(Receiver<Reply<A>>),
}

impl<A> Pending<A> {
    /// The answer, waiting for the pool if need be.
    pub fn wait(self) -> A {
        match self {
            Pending::Now(a) => a,
            Pending::Later(rx) => match rx.recv() {
                Ok(Ok(a)) => a,
                Ok(Err(panic)) => resume_unwind(panic),
                Err(_) => unreachable!("a pool thread ends only when the pool is dropped"),
            },
        }
    }

    /// Whether the answer is there (`wait` would not block).
    pub fn ready(&self) -> bool {
        match self {
            Pending::Now(_) => true,
            Pending::Later(rx) => !rx.is_empty(),
        }
    }
}
