//! Fixture helpers: tensors from the safetensors files written by scripts/reference/model.py.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

pub type B = burn::backend::Flex;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub struct Io {
    bytes: Vec<u8>,
}

impl Io {
    pub fn open(name: &str) -> Io {
        Io { bytes: std::fs::read(fixture(name)).unwrap() }
    }

    fn view(&self, key: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("fixture tensor {key}: {e}"));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    pub fn f32<const D: usize>(&self, key: &str, device: &burn::tensor::Device<B>) -> Tensor<B, D> {
        let (dt, shape, data) = self.view(key);
        assert_eq!(dt, Dtype::F32, "{key}");
        let v: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    pub fn i64<const D: usize>(&self, key: &str, device: &burn::tensor::Device<B>) -> Tensor<B, D, Int> {
        let (dt, shape, data) = self.view(key);
        assert_eq!(dt, Dtype::I64, "{key}");
        let v: Vec<i64> = data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    pub fn bool<const D: usize>(&self, key: &str, device: &burn::tensor::Device<B>) -> Tensor<B, D, Bool> {
        let (dt, shape, data) = self.view(key);
        assert_eq!(dt, Dtype::U8, "{key}");
        let v: Vec<bool> = data.iter().map(|&x| x != 0).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }
}

/// Largest absolute difference, with shapes checked.
pub fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).abs().max().into_scalar()
}
