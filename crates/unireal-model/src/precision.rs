//! Mixed precision: parameters stay in f32 (the optimizer's master weights) and a forward pass
//! runs on a copy cast to a lower compute dtype. Under autodiff the casts are part of the
//! graph, so the backward pass casts each gradient back to its f32 parameter (Burn 0.21's
//! `float_cast` backward). The layers keep what loses precision in f32 whatever the compute
//! dtype: norms ([`crate::layers::layer_norm`], [`crate::layers::RmsNorm`]), RoPE
//! ([`crate::rope::Rope::apply`]), the softmax ([`crate::layers::sdpa`] under autodiff; the
//! scores come from a bf16 matmul) and the timestep embedding; callers compute the loss in
//! f32. The residual stream adds up in the compute dtype.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// `module` with every float parameter cast to `dtype` (a no-op for parameters already in
/// it). Parameter ids are kept; under autodiff the copies stay connected to the originals.
pub fn cast_params<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            if param.val().dtype() == DType::from(self.0) {
                return param;
            }
            let (id, t, mapper) = param.consume();
            Param::from_mapped_value(id, t.cast(self.0), mapper)
        }
    }
    module.map(&mut Cast(dtype))
}

/// `f` applied to `x` in f32, its result returned in `x`'s dtype: a part of the forward pass
/// kept in full precision whatever the compute dtype.
pub fn computed_in_f32<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    f(in_f32(x)).cast(dtype)
}

/// `x` in f32, for the parts of a forward pass kept in full precision.
pub fn in_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.cast(DType::F32)
}
