//! SSIM against scikit-image (fixture from scripts/reference/ssim.py).

use image::GrayImage;

#[test]
fn ssim_matches_scikit_image() {
    let text = include_str!("fixtures/ssim.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let (w, h) = (c["width"].as_u64().unwrap() as u32, c["height"].as_u64().unwrap() as u32);
        let img = |k: &str| {
            GrayImage::from_raw(w, h, c[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect())
                .unwrap()
        };
        let got = unireal_vision::ssim(&img("a"), &img("b"));
        let want = c["ssim"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{}: ours {got}, scikit-image {want}", c["name"]);
    }
}
