//! The optimizer and its schedule: AdamW as configured, the learning rate at each step
//! (linear warm-up, then cosine decay or constant), and the gradients' global norm.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unireal_pipeline::UniReal;

use crate::config::{LoopConfig, LrSchedule};

/// The trainer's optimizer.
pub type Optim<B> = OptimizerAdaptor<AdamW, UniReal<B>, B>;

/// AdamW with the configured betas, weight decay and clipping.
pub fn optimizer<B: AutodiffBackend>(cfg: &LoopConfig) -> Optim<B> {
    AdamWConfig::new()
        .with_beta_1(cfg.betas[0] as f32)
        .with_beta_2(cfg.betas[1] as f32)
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay as f32)
        .with_grad_clipping(
            (cfg.grad_clip > 0.0).then_some(burn::grad_clipping::GradientClippingConfig::Norm(cfg.grad_clip as f32)),
        )
        .init::<B, UniReal<B>>()
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
