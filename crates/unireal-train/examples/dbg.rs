use std::sync::Arc;
use burn::backend::NdArray;
use burn::prelude::*;
use unireal_core::Split;
use unireal_train::data::*;
use unireal_train::generate::encode_frames;
use unireal_train::model::encode_text;
use unireal_flow::*;
type B = NdArray;
fn main() {
    std::env::set_current_dir("/work/main").unwrap();
    let ck = std::path::Path::new("runs/demo/checkpoints/step-00000200");
    let cfg: unireal_train::TrainConfig = unireal_core::load_config(&ck.join("config.yaml"), &[]).unwrap();
    let d = Default::default();
    let mut model = cfg.model.init::<B>(&d).unwrap();
    unireal_model::load_safetensors(&mut model, &ck.join("model.safetensors"), &[], unireal_model::LoadOptions{strict:true}).unwrap();
    let frozen = cfg.model.frozen::<B>(&d).unwrap();
    let index = Arc::new(Index::build(&cfg.data, Split::Train, 4).unwrap());
    let entries = Sampler::new(index.clone(), 0, 4, 0, 1).next_batch();
    let batch = decode_batch(&entries, &index.buckets).unwrap();
    let (b, h, w) = (batch.len(), batch.bucket.height as usize, batch.bucket.width as usize);
    let x_in = encode_frames(&frozen.latent, Tensor::<B,5>::from_data(TensorData::new(batch.inputs.clone(), [b,1,3,h,w]), &d));
    let x0 = encode_frames(&frozen.latent, Tensor::<B,5>::from_data(TensorData::new(batch.outputs.clone(), [b,1,3,h,w]), &d));
    let (text, pad) = encode_text(&model, &frozen, &cfg.model, &batch.prompts, &d, &d, |t| t).unwrap();
    let roles = Tensor::<B,2,Int>::from_data(TensorData::new(batch.input_roles.clone(), [b,1]), &d);
    let eps = seeded_noise::<B,5>(x0.dims(), 3, &d);
    println!("var x0 {}", x0.clone().powi_scalar(2).mean().into_scalar());
    println!("mse(x_in, x0) {}", (x_in.clone()-x0.clone()).powi_scalar(2).mean().into_scalar());
    for t in [0.05f64, 0.3, 0.6, 0.9, 1.0] {
        let tt = Tensor::<B,1>::full([b], t, &d);
        let xt = interpolate(x0.clone(), eps.clone(), tt.clone());
        let v = model.dit.forward(unireal_model::DiTInput{inputs: Some(x_in.clone()), input_roles: Some(roles.clone()), outputs: xt.clone(), t: tt.clone(), text: text.clone(), text_pad: Some(pad.clone())});
        let loss = (v.clone() - (eps.clone()-x0.clone())).powi_scalar(2).mean().into_scalar();
        let x0h = predict_x0(xt, v.clone(), tt);
        if t == 1.0 { let px = unireal_train::generate::decode_frames(&frozen.latent, x0h.clone()); let v: Vec<f32> = px.into_data().to_vec().unwrap(); unireal_train::generate::save_png(&unireal_train::generate::chw_to_image(&v[..3*h*w], w as u32, h as u32), std::path::Path::new("/tmp/x0h.png")).unwrap(); }
        println!("t {t}: loss {loss:.4}  |v|² {:.4}  mse(x0hat,x0) {:.4}", v.powi_scalar(2).mean().into_scalar(), (x0h - x0.clone()).powi_scalar(2).mean().into_scalar());
    }

    let vm = unireal_flow::dit::DitVelocity { model: &model.dit, cond: unireal_flow::dit::DitConditioning { inputs: Some(x_in.clone()), input_roles: Some(roles.clone()), text: text.clone(), text_pad: Some(pad.clone()), null_text: text.clone(), null_text_pad: Some(pad.clone()) } };
    for steps in [1usize, 4, 28] {
        let out = sample_euler(&vm, eps.clone(), &schedule(steps, 1.0), Guidance { text: 1.0, image: 1.0 }, true, |_, _| {});
        println!("sample {steps} steps: mse(out,x0) {:.4} |out|² {:.4}", (out.clone() - x0.clone()).powi_scalar(2).mean().into_scalar(), out.clone().powi_scalar(2).mean().into_scalar());
        let px = unireal_train::generate::decode_frames(&frozen.latent, out); let v: Vec<f32> = px.into_data().to_vec().unwrap(); unireal_train::generate::save_png(&unireal_train::generate::chw_to_image(&v[..3*h*w], w as u32, h as u32), std::path::Path::new(&format!("/tmp/s{steps}.png"))).unwrap();
    }
}
