//! Exponential moving average of the weights, kept as a module on the non-autodiff backend and
//! updated in module-visit order (never by `ParamId`). Only trained parameters move: a LoRA
//! run's frozen base is shared with the model, not averaged.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Every float parameter of a module, flattened, in visit order.
pub fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<Tensor<B, 1>> {
    struct Collect<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Collect<B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.val().reshape([-1]));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Whether each float parameter of `m` (visit order) is trained, i.e. requires grad.
pub fn trained_mask<B: AutodiffBackend, M: AutodiffModule<B>>(m: &M) -> Vec<bool> {
    struct Mask(Vec<bool>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Mask {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.val().is_require_grad());
        }
    }
    let mut mask = Mask(Vec::new());
    m.visit(&mut mask);
    mask.0
}

/// `ema ← d·ema + (1 − d)·current` for the parameters `trained` marks (visit order); the others
/// are left as they are.
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, current: &M, decay: f64, trained: &[bool]) -> M {
    struct Update<'a, B: Backend> {
        current: std::vec::IntoIter<Tensor<B, 1>>,
        trained: std::slice::Iter<'a, bool>,
        decay: f64,
    }
    impl<B: Backend> ModuleMapper<B> for Update<'_, B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let cur = self.current.next().expect("EMA and model have the same parameters");
            if !self.trained.next().copied().unwrap_or(true) {
                return param;
            }
            let (id, t, mapper) = param.consume();
            let new = t.clone() * self.decay + cur.reshape(t.dims()) * (1.0 - self.decay);
            Param::from_mapped_value(id, new, mapper)
        }
    }
    ema.map(&mut Update { current: flat_params(current).into_iter(), trained: trained.iter(), decay })
}
