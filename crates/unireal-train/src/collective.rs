//! Data-parallel communication: rank, world size, all-reduce and broadcast of f32 buffers.
//!
//! [`SingleProcess`] is the default; [`Mpi`] (feature `mpi`, rsmpi over the system's MPI)
//! is used when the binary is launched by `mpirun`/`srun`. Gradients go through
//! [`sync_gradients`]: packed in module-visit order (never by `ParamId`, which differs from
//! process to process) into buckets of `bucket_mb`, all-reduced and averaged.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// A failed transfer around a collective operation. (MPI itself aborts the job on a failed
/// operation: rsmpi's default error handler.)
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    #[error("moving {what} to the host: {message}")]
    ToHost { what: &'static str, message: String },
    /// The ranks would exchange buffers of different layouts (reported on every rank).
    #[error("the {world} ranks disagree on {what}: rank {rank} has {mine:016x}; every rank must train the same model")]
    Mismatch { what: &'static str, rank: usize, world: usize, mine: u64 },
}

type Result<T, E = CollectiveError> = std::result::Result<T, E>;

/// What data-parallel training needs from a communication library.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Element-wise sum over all ranks, in place; every rank gets the same result.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Rank `root`'s buffer copied into every rank's.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// A short name for logs (`single`, `mpi`).
    fn name(&self) -> &'static str;
    /// Ends every rank of the job at once (after this rank failed alone, so that the others
    /// do not wait for it in a collective). One process: returns.
    fn abort(&self, _code: i32) {}
    /// From now on, a collective that waits longer than `seconds` for the other ranks (one
    /// died, or hangs) ends this process with an error naming the operation (0: wait
    /// forever). One process: nothing to wait for.
    fn set_timeout(&self, _seconds: f64) {}
    /// Waits until every rank has come here, as long as it takes (outside the timeout): after
    /// work rank 0 does alone (validation, samples, a checkpoint, an evaluation), which may
    /// rightly take longer. One process: returns.
    fn wait_for_all(&self) -> Result<()> {
        Ok(())
    }
}

/// One process: rank 0 of 1; every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [f32], _root: usize) -> Result<()> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "single"
    }
}

#[cfg(feature = "mpi")]
pub use mpi_impl::Mpi;

#[cfg(feature = "mpi")]
mod mpi_impl {
    use mpi::collective::SystemOperation;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;

    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    /// MPI's world communicator (MPI is initialised on creation and finalised on drop).
    pub struct Mpi {
        _universe: mpi::environment::Universe,
        world: SimpleCommunicator,
        watch: Arc<Watch>,
        watchdog: OnceLock<()>,
    }

    /// The collective this rank is waiting in, and since when; the timeout in seconds.
    #[derive(Default)]
    struct Watch {
        waiting: Mutex<Option<(&'static str, Instant)>>,
        timeout_s: Mutex<f64>,
    }

    /// Marks a collective as waiting while it lives.
    struct Waiting<'a>(&'a Watch);

    impl<'a> Waiting<'a> {
        fn new(watch: &'a Watch, what: &'static str) -> Self {
            *watch.waiting.lock().unwrap_or_else(|e| e.into_inner()) = Some((what, Instant::now()));
            Waiting(watch)
        }
    }

    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            *self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    impl Mpi {
        /// Initialises MPI; None when it was initialised already.
        pub fn init() -> Option<Mpi> {
            let universe = mpi::initialize()?;
            let world = universe.world();
            Some(Mpi { _universe: universe, world, watch: Arc::default(), watchdog: OnceLock::new() })
        }

        /// Whether this process was started by an MPI launcher (mpirun, srun with PMI/PMIx).
        pub fn launched() -> bool {
            ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_PMIX_MAPPING_SERV"]
                .iter()
                .any(|v| std::env::var_os(v).is_some())
        }
    }

    impl super::Collective for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn world_size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) -> super::Result<()> {
            let send = buf.to_vec();
            let _w = Waiting::new(&self.watch, "an all-reduce");
            self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }
        fn broadcast(&self, buf: &mut [f32], root: usize) -> super::Result<()> {
            let _w = Waiting::new(&self.watch, "a broadcast");
            self.world.process_at_rank(root as i32).broadcast_into(buf);
            Ok(())
        }
        fn wait_for_all(&self) -> super::Result<()> {
            // Not marked as waiting: the watchdog does not count this one.
            let mut one = [0.0f32];
            self.world.all_reduce_into(&[0.0f32][..], &mut one[..], SystemOperation::sum());
            Ok(())
        }
        fn set_timeout(&self, seconds: f64) {
            *self.watch.timeout_s.lock().unwrap_or_else(|e| e.into_inner()) = seconds;
            if seconds <= 0.0 {
                return;
            }
            // One watchdog thread per process. It never calls MPI (initialised for one
            // thread): it ends the process, and the launcher ends the job (mpirun on a rank
            // that exits without finalising; srun through --kill-on-bad-exit, else each
            // rank's own watchdog).
            let (watch, rank) = (self.watch.clone(), self.world.rank());
            self.watchdog.get_or_init(|| {
                std::thread::Builder::new()
                    .name("unireal-mpi-watchdog".into())
                    .spawn(move || loop {
                        let timeout = *watch.timeout_s.lock().unwrap_or_else(|e| e.into_inner());
                        std::thread::sleep(Duration::from_secs_f64((timeout / 10.0).clamp(0.1, 5.0)));
                        let waiting = *watch.waiting.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some((what, since)) = waiting {
                            let waited = since.elapsed().as_secs_f64();
                            if timeout > 0.0 && waited > timeout {
                                eprintln!(
                                    "rank {rank}: error: {what} has waited {waited:.0} s for the other ranks \
                                     (train.collective_timeout_s = {timeout}): a rank died or hangs; ending this \
                                     process so that the job ends\n\nhint: the other ranks' logs name the one that \
                                     stopped; resume the run with --resume once it is fixed"
                                );
                                // `_exit`: no atexit handlers (MPI's, CUDA's) while the
                                // main thread is inside MPI.
                                extern "C" {
                                    fn _exit(status: std::ffi::c_int) -> !;
                                }
                                // SAFETY: ends the process; nothing runs after it.
                                unsafe { _exit(3) }
                            }
                        }
                    })
                    .expect("a thread for the MPI watchdog");
            });
        }
        fn name(&self) -> &'static str {
            "mpi"
        }
        fn abort(&self, code: i32) {
            self.world.abort(code)
        }
    }
}

/// Whether `ok` holds on every rank (one tiny all-reduce): a step that can fail on one rank
/// only (taking the run's lock) tells the others, so none waits for it in a collective.
pub fn all_ok(coll: &dyn Collective, ok: bool) -> Result<bool> {
    if coll.world_size() == 1 {
        return Ok(ok);
    }
    let mut failed = [if ok { 0.0f32 } else { 1.0 }];
    coll.all_reduce_sum(&mut failed)?;
    Ok(failed[0] == 0.0)
}

/// Checks that every rank holds the same `value` (e.g. the number of trained weights), so
/// that the buffers they exchange line up; otherwise every rank returns
/// [`CollectiveError::Mismatch`] (never a misaligned all-reduce or a hang). Two small
/// all-reduces: the value in 8-bit pieces (their sums stay exact in f32 up to 65 793
/// ranks), then whether any rank saw a difference.
pub fn check_agreement(coll: &dyn Collective, what: &'static str, value: u64) -> Result<()> {
    let world = coll.world_size();
    if world == 1 {
        return Ok(());
    }
    let pieces: Vec<f32> = (0..8).map(|k| ((value >> (8 * k)) & 0xff) as f32).collect();
    let mut sum = pieces.clone();
    coll.all_reduce_sum(&mut sum)?;
    // Every rank's piece equals the mean exactly when all ranks agree.
    let agrees = pieces.iter().zip(&sum).all(|(p, s)| *p as f64 * world as f64 == *s as f64);
    match all_ok(coll, agrees)? {
        true => Ok(()),
        false => Err(CollectiveError::Mismatch { what, rank: coll.rank(), world, mine: value }),
    }
}

/// Gradients all-reduced over the ranks and divided by the world size. The trained
/// parameters are visited in module order (the same on every rank) and packed with a
/// presence flag each: a parameter without a gradient on this rank (unused by its part of
/// the batch) contributes zeros, so every rank's pack has the same layout; after the sum a
/// parameter gets a gradient when any rank had one. The pack is reduced in buckets of
/// `bucket_elems` floats. Returns the new gradients and the seconds spent in communication.
pub fn sync_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: GradientsParams,
    coll: &dyn Collective,
    bucket_elems: usize,
) -> Result<(GradientsParams, f64)> {
    let world = coll.world_size();
    if world == 1 {
        return Ok((grads, 0.0));
    }
    struct Pack<'a> {
        grads: &'a GradientsParams,
        flat: Vec<f32>,
        err: Option<String>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Pack<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let val = p.val();
            if !val.is_require_grad() {
                return;
            }
            match self.grads.get::<B::InnerBackend, D>(p.id) {
                Some(g) => match g.into_data().convert::<f32>().to_vec::<f32>() {
                    Ok(v) => {
                        self.flat.push(1.0);
                        self.flat.extend_from_slice(&v);
                    }
                    Err(e) => self.err = Some(e.to_string()),
                },
                None => {
                    self.flat.push(0.0);
                    self.flat.resize(self.flat.len() + val.shape().num_elements(), 0.0);
                }
            }
        }
    }
    let mut pack = Pack { grads: &grads, flat: Vec::new(), err: None };
    model.visit(&mut pack);
    if let Some(e) = pack.err {
        return Err(CollectiveError::ToHost { what: "gradients", message: e });
    }
    let mut flat = pack.flat;
    let t0 = std::time::Instant::now();
    for chunk in flat.chunks_mut(bucket_elems.max(1)) {
        coll.all_reduce_sum(chunk)?;
    }
    let comm = t0.elapsed().as_secs_f64();
    let inv = 1.0 / world as f32;
    flat.iter_mut().for_each(|v| *v *= inv);

    struct Unpack<'a> {
        new: GradientsParams,
        flat: &'a [f32],
        at: usize,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Unpack<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let val = p.val();
            if !val.is_require_grad() {
                return;
            }
            let present = self.flat[self.at] > 0.0;
            let dims = val.dims();
            let n: usize = dims.iter().product();
            let values = &self.flat[self.at + 1..self.at + 1 + n];
            self.at += 1 + n;
            if present {
                let data = TensorData::new(values.to_vec(), dims);
                self.new.register::<B::InnerBackend, D>(p.id, Tensor::from_data(data, &val.device()));
            }
        }
    }
    let mut un = Unpack { new: GradientsParams::new(), flat: &flat, at: 0 };
    model.visit(&mut un);
    drop(grads);
    Ok((un.new, comm))
}

/// Every rank's trained weights (`trained`, a mask in module-visit order) replaced by rank
/// `root`'s; the others (a LoRA run's frozen base, read from the same file on every rank) stay.
pub fn broadcast_module<B: Backend, M: Module<B>>(
    model: M,
    coll: &dyn Collective,
    root: usize,
    trained: &[bool],
) -> Result<M> {
    if coll.world_size() == 1 {
        return Ok(model);
    }
    let mut flat = Vec::new();
    let params = crate::ema::flat_params(&model);
    for (t, _) in params.into_iter().zip(trained).filter(|(_, on)| **on) {
        flat.extend(
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| CollectiveError::ToHost { what: "weights", message: e.to_string() })?,
        );
    }
    coll.broadcast(&mut flat, root)?;
    struct Set<'a> {
        flat: &'a [f32],
        at: usize,
        trained: std::slice::Iter<'a, bool>,
    }
    impl<B: Backend> ModuleMapper<B> for Set<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if !self.trained.next().copied().unwrap_or(true) {
                return param;
            }
            let (id, t, mapper) = param.consume();
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let mut new =
                Tensor::<B, D>::from_data(TensorData::new(self.flat[self.at..self.at + n].to_vec(), dims), &t.device());
            self.at += n;
            if t.is_require_grad() {
                new = new.require_grad();
            }
            Param::from_mapped_value(id, new, mapper)
        }
    }
    Ok(model.map(&mut Set { flat: &flat, at: 0, trained: trained.iter() }))
}

/// A hash of every weight in visit order: equal on every rank after a synchronous step.
pub fn weights_hash<B: Backend, M: Module<B>>(model: &M) -> String {
    let mut h = blake3::Hasher::new();
    for t in crate::ema::flat_params(model) {
        if let Ok(v) = t.into_data().convert::<f32>().to_vec::<f32>() {
            for x in v {
                h.update(&x.to_le_bytes());
            }
        }
    }
    h.finalize().to_hex()[..16].to_string()
}
