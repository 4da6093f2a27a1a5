//! Exponential moving average of the weights, kept as a module on the non-autodiff backend and
//! updated in module-visit order (never by `ParamId`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

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

/// `ema ← d·ema + (1 − d)·current`, parameter by parameter in visit order.
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, current: &M, decay: f64) -> M {
    struct Update<B: Backend> {
        current: std::vec::IntoIter<Tensor<B, 1>>,
        decay: f64,
    }
    impl<B: Backend> ModuleMapper<B> for Update<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = param.consume();
            let dims = t.dims();
            let cur = self.current.next().expect("EMA and model have the same parameters").reshape(dims);
            let new = t * self.decay + cur * (1.0 - self.decay);
            Param::from_mapped_value(id, new, mapper)
        }
    }
    ema.map(&mut Update { current: flat_params(current).into_iter(), decay })
}
