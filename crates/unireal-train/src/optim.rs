//! The optimizer and its schedule: AdamW as configured, the learning rate at each step
//! (linear warm-up, then cosine decay or constant), and clipping by the gradients' global
//! norm (over all parameters together; Burn's `GradientClipping::Norm` clips each tensor by
//! its own norm, which is not what `train.grad_clip` means).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unireal_pipeline::UniReal;

use crate::config::{LoopConfig, LrSchedule};

/// The trainer's optimizer.
pub type Optim<B> = OptimizerAdaptor<AdamW, UniReal<B>, B>;

/// AdamW with the configured betas and weight decay. Clipping is not the optimizer's: see
/// [`clip_global_norm`].
pub fn optimizer<B: AutodiffBackend>(cfg: &LoopConfig) -> Optim<B> {
    AdamWConfig::new()
        .with_beta_1(cfg.betas[0] as f32)
        .with_beta_2(cfg.betas[1] as f32)
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, UniReal<B>>()
}

/// Every gradient of `model`'s parameters multiplied by `factor`.
pub fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    struct Scale<'a>(&'a mut GradientsParams, f64);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.remove::<B::InnerBackend, D>(p.id) {
                self.0.register::<B::InnerBackend, D>(p.id, g * self.1);
            }
        }
    }
    model.visit(&mut Scale(&mut grads, factor));
    grads
}

/// Clips the gradients by their global L2 norm: when it exceeds `max_norm` (> 0), all are
/// scaled by `max_norm / norm` together, keeping their direction. Returns the gradients and
/// the norm before clipping. `max_norm = 0` leaves them as they are.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let norm = grad_norm(model, &grads);
    if max_norm > 0.0 && norm > max_norm {
        (scale_gradients(model, grads, max_norm / norm), norm)
    } else {
        (grads, norm)
    }
}

/// Learning rate at optimizer step `step` (0-based).
pub fn learning_rate(cfg: &LoopConfig, step: usize) -> f64 {
    let warm = |w: usize| if w > 0 && step < w { (step + 1) as f64 / w as f64 } else { 1.0 };
    match cfg.schedule {
        LrSchedule::Constant { warmup } => cfg.lr * warm(warmup),
        LrSchedule::Cosine { warmup, min_ratio } => {
            if step < warmup {
                return cfg.lr * warm(warmup);
            }
            let span = (cfg.steps.saturating_sub(warmup)).max(1) as f64;
            let p = ((step - warmup) as f64 / span).min(1.0);
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            cfg.lr * (min_ratio + (1.0 - min_ratio) * cos)
        }
    }
}

/// The L2 norm over every gradient of `model`'s parameters together.
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a>(&'a GradientsParams, f64);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.get::<B::InnerBackend, D>(p.id) {
                self.1 += g.square().sum().into_scalar().elem::<f64>();
            }
        }
    }
    let mut n = Norm(grads, 0.0);
    model.visit(&mut n);
    n.1.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ndarray")]
    mod clipping {
        use super::super::*;
        use burn::backend::{Autodiff, NdArray};
        use burn::module::Module;

        type B = Autodiff<NdArray>;

        #[derive(Module, Debug)]
        struct Two<B: Backend> {
            a: Param<Tensor<B, 1>>,
            b: Param<Tensor<B, 2>>,
        }

        /// loss = 3·Σa + 4·Σb: every gradient of `a` is 3, of `b` 4.
        fn grads() -> (Two<B>, GradientsParams) {
            let device = Default::default();
            let m = Two::<B> {
                a: Param::from_tensor(Tensor::ones([4], &device)),
                b: Param::from_tensor(Tensor::ones([3, 3], &device)),
            };
            let loss = m.a.val().sum() * 3.0 + m.b.val().sum() * 4.0;
            let g = GradientsParams::from_grads(loss.backward(), &m);
            (m, g)
        }

        fn values(m: &Two<B>, g: &GradientsParams) -> (Vec<f32>, Vec<f32>) {
            let a = g.get::<NdArray, 1>(m.a.id).unwrap().into_data().to_vec().unwrap();
            let b = g.get::<NdArray, 2>(m.b.id).unwrap().into_data().to_vec().unwrap();
            (a, b)
        }

        #[test]
        fn the_global_norm_after_clipping_equals_the_limit_and_the_direction_is_kept() {
            let (m, g) = grads();
            let before = (4.0f64 * 9.0 + 9.0 * 16.0).sqrt();
            let (g, norm) = clip_global_norm(&m, g, 1.0);
            assert!((norm - before).abs() < 1e-4, "{norm} vs {before}");
            assert!((grad_norm(&m, &g) - 1.0).abs() < 1e-5, "{}", grad_norm(&m, &g));
            // One factor for all tensors: a and b keep their 3 : 4 ratio (per-tensor clipping
            // would give each tensor norm 1 and a global norm of √2).
            let (a, b) = values(&m, &g);
            assert!((b[0] / a[0] - 4.0 / 3.0).abs() < 1e-5, "{a:?} {b:?}");
            assert!(a.iter().all(|x| (x - a[0]).abs() < 1e-7));
        }

        #[test]
        fn gradients_under_the_limit_or_with_clipping_off_are_untouched() {
            let (m, g) = grads();
            let (g, _) = clip_global_norm(&m, g, 100.0);
            assert_eq!(values(&m, &g), (vec![3.0; 4], vec![4.0; 9]));
            let (g, norm) = clip_global_norm(&m, g, 0.0);
            assert!(norm > 12.0);
            assert_eq!(values(&m, &g), (vec![3.0; 4], vec![4.0; 9]));
        }
    }

    fn cfg(schedule: LrSchedule) -> LoopConfig {
        LoopConfig { steps: 110, lr: 1e-3, schedule, ..LoopConfig::default() }
    }

    #[test]
    fn warmup_is_linear_then_cosine_reaches_the_floor_at_the_last_step() {
        let c = cfg(LrSchedule::Cosine { warmup: 10, min_ratio: 0.1 });
        assert!((learning_rate(&c, 0) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&c, 4) - 5e-4).abs() < 1e-12);
        assert!((learning_rate(&c, 10) - 1e-3).abs() < 1e-12, "peak right after warm-up");
        // Halfway through the decay: the mean of peak and floor.
        assert!((learning_rate(&c, 60) - 0.55e-3).abs() < 1e-12, "{}", learning_rate(&c, 60));
        assert!((learning_rate(&c, 110) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&c, 500) - 1e-4).abs() < 1e-12, "past the end it stays at the floor");
        let steps: Vec<f64> = (10..=110).map(|s| learning_rate(&c, s)).collect();
        assert!(steps.windows(2).all(|w| w[1] <= w[0]), "cosine decay is monotone");
    }

    #[test]
    fn constant_schedule_warms_up_then_holds() {
        let c = cfg(LrSchedule::Constant { warmup: 4 });
        assert_eq!(learning_rate(&c, 0), 2.5e-4);
        assert_eq!(learning_rate(&c, 3), 1e-3);
        assert_eq!(learning_rate(&c, 100), 1e-3);
        let none = cfg(LrSchedule::Constant { warmup: 0 });
        assert_eq!(learning_rate(&none, 0), 1e-3);
    }
}
