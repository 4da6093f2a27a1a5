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

/// RGB→HSV (the shot detector's colour space) and RGB→gray against OpenCV, bit for bit
/// (fixture from scripts/reference/color.py).
#[test]
fn colour_conversions_match_opencv() {
    let v: serde_json::Value = serde_json::from_str(include_str!("fixtures/color.json")).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.len() > 4000);
    let (mut rgb, mut want_gray) = (Vec::new(), Vec::new());
    for row in rows {
        let c: Vec<u8> = row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
        let got = unireal_vision::color::rgb_to_hsv8(c[0], c[1], c[2]);
        assert_eq!(got, (c[3], c[4], c[5]), "HSV of RGB {:?}: ours {got:?}, OpenCV {:?}", &c[..3], &c[3..6]);
        rgb.extend_from_slice(&c[..3]);
        want_gray.push(c[6]);
    }
    let img = image::RgbImage::from_raw(rows.len() as u32, 1, rgb).unwrap();
    let gray = unireal_vision::to_gray(&img);
    for (i, (g, w)) in gray.as_raw().iter().zip(&want_gray).enumerate() {
        assert_eq!(g, w, "gray of RGB {:?}", &img.as_raw()[3 * i..3 * i + 3]);
    }
    // The planar frame agrees with the per-pixel function.
    let hsv = unireal_vision::HsvFrame::from_rgb(&img);
    assert_eq!(hsv.content_delta(&hsv), 0.0);
}
