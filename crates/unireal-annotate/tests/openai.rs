//! The OpenAI-compatible captioner against a local HTTP server.

use std::sync::{Arc, Mutex};
use std::thread;

use unireal_annotate::{build_captioner, CaptionRequest, CaptionerConfig, OpenAiConfig, UNIREAL_TOOLKIT_PROMPT};
use unireal_vision::{ChangeMeasures, GlobalMotion, MotionEstimate};

fn measures() -> ChangeMeasures {
    ChangeMeasures {
        ssim: 0.6,
        black_a: 0.0,
        black_b: 0.0,
        motion_score: 0.1,
        motion: MotionEstimate {
            global: GlobalMotion { dx: 0.0, dy: 0.0, zoom: 1.0 },
            inlier_fraction: 1.0,
            textured_blocks: 10,
            compensated_diff: 0.1,
            region: None,
        },
        brightness_delta: 0.0,
        warmth_delta: 0.0,
        saturation_delta: 0.0,
    }
}

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `replies` (status, body) in order, recording each request body and auth header.
fn serve(replies: Vec<(u16, String)>) -> (String, Seen, thread::JoinHandle<()>) {
    let (base, seen, _, handle) = serve_with(replies.into_iter().map(|(s, b)| (s, b, None)).collect());
    (base, seen, handle)
}

/// [`serve`], each reply with an optional `Retry-After` header; also records when each
/// request arrived.
fn serve_with(
    replies: Vec<(u16, String, Option<&'static str>)>,
) -> (String, Seen, Arc<Mutex<Vec<std::time::Instant>>>, thread::JoinHandle<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let times = Arc::new(Mutex::new(Vec::new()));
    let times2 = times.clone();
    let handle = thread::spawn(move || {
        for (status, body, retry_after) in replies {
            let mut req = server.recv().unwrap();
            times2.lock().unwrap().push(std::time::Instant::now());
            assert_eq!(req.url(), "/v1/chat/completions");
            let auth = req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.to_string());
            let mut text = String::new();
            req.as_reader().read_to_string(&mut text).unwrap();
            seen2.lock().unwrap().push((text, auth));
            let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
            if let Some(v) = retry_after {
                resp = resp.with_header(tiny_http::Header::from_bytes("Retry-After", v).unwrap());
            }
            req.respond(resp).unwrap();
        }
    });
    (format!("http://{addr}/v1"), seen, times, handle)
}

/// A rate-limited endpoint that says when to come back is asked again no sooner; the error
/// of an endpoint that stays down is transient (the build retries the input next run).
#[test]
fn retry_after_is_honoured_and_endpoint_errors_are_transient() {
    let ok = serde_json::json!({"choices": [{"message": {"content": "Zoom in."}}]}).to_string();
    let (base, _, times, handle) = serve_with(vec![(429, "slow down".into(), Some("1")), (200, ok, None)]);
    let cfg = OpenAiConfig { base_url: base, retries: 2, timeout_s: 5.0, ..Default::default() };
    let cap = build_captioner(&CaptionerConfig::Openai(cfg)).unwrap();
    let m = measures();
    assert_eq!(cap.caption(&request(&m)).unwrap(), "Zoom in.");
    handle.join().unwrap();
    let t = times.lock().unwrap();
    let waited = t[1] - t[0];
    // The backoff alone would be 250 ms.
    assert!(waited >= std::time::Duration::from_millis(950), "asked again after {waited:?}");

    let (base, _, _, handle) = serve_with(vec![(503, "down".into(), Some("0")), (503, "down".into(), Some("0"))]);
    let cfg = OpenAiConfig { base_url: base, retries: 1, timeout_s: 5.0, ..Default::default() };
    let err = build_captioner(&CaptionerConfig::Openai(cfg)).unwrap().caption(&request(&m)).unwrap_err();
    handle.join().unwrap();
    assert!(err.is_transient() && err.to_string().contains("HTTP 503"), "{err}");
    let sidecar = build_captioner(&CaptionerConfig::Sidecar { fallback_builtin: false }).unwrap();
    assert!(!sidecar.caption(&request(&m)).unwrap_err().is_transient());
}

fn request<'a>(m: &'a ChangeMeasures) -> CaptionRequest<'a> {
    CaptionRequest {
        input: "clip.mp4",
        first_jpeg: b"\xff\xd8first",
        second_jpeg: b"\xff\xd8second",
        change: m,
        sidecar: None,
        seed: 1,
    }
}

#[test]
fn retries_a_server_error_then_returns_the_caption() {
    let ok = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": " Pan the camera to the left. "}}]}).to_string();
    let (base, seen, handle) = serve(vec![(500, "overloaded".into()), (200, ok)]);
    std::env::set_var("UNIREAL_TEST_KEY_A", "sk-test");
    let cfg = CaptionerConfig::Openai(OpenAiConfig {
        base_url: base,
        api_key_env: "UNIREAL_TEST_KEY_A".into(),
        retries: 2,
        timeout_s: 5.0,
        ..Default::default()
    });
    let cap = build_captioner(&cfg).unwrap();
    let m = measures();
    assert_eq!(cap.caption(&request(&m)).unwrap(), "Pan the camera to the left.");
    handle.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let body: serde_json::Value = serde_json::from_str(&seen[1].0).unwrap();
    let content = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(content[0]["text"], UNIREAL_TOOLKIT_PROMPT);
    let urls: Vec<&str> = content[1..].iter().map(|c| c["image_url"]["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.starts_with("data:image/jpeg;base64,")));
    assert_ne!(urls[0], urls[1]);
    assert_eq!(seen[1].1.as_deref(), Some("Bearer sk-test"));
}

#[test]
fn client_error_is_not_retried_and_is_reported() {
    let (base, seen, handle) = serve(vec![(400, "{\"error\": \"bad model\"}".into())]);
    let cfg = CaptionerConfig::Openai(OpenAiConfig {
        base_url: base,
        api_key_env: "UNIREAL_TEST_KEY_UNSET".into(),
        retries: 3,
        timeout_s: 5.0,
        ..Default::default()
    });
    let cap = build_captioner(&cfg).unwrap();
    let m = measures();
    let err = cap.caption(&request(&m)).unwrap_err().to_string();
    handle.join().unwrap();
    assert!(err.contains("HTTP 400") && err.contains("bad model"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap()[0].1, None, "no key configured, no header");
}

#[test]
fn unreachable_endpoint_fails_after_retries() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = CaptionerConfig::Openai(OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        retries: 1,
        timeout_s: 2.0,
        ..Default::default()
    });
    let cap = build_captioner(&cfg).unwrap();
    let m = measures();
    let err = cap.caption(&request(&m)).unwrap_err().to_string();
    assert!(err.contains("2 attempt"), "{err}");
}

#[test]
fn sidecar_uses_the_given_caption_or_falls_back() {
    let m = measures();
    let cap = build_captioner(&CaptionerConfig::Sidecar { fallback_builtin: false }).unwrap();
    let mut req = request(&m);
    req.sidecar = Some("Make the dog sit down.");
    assert_eq!(cap.caption(&req).unwrap(), "Make the dog sit down.");
    req.sidecar = None;
    assert!(cap.caption(&req).unwrap_err().to_string().contains("clip.mp4"));
    let cap = build_captioner(&CaptionerConfig::Sidecar { fallback_builtin: true }).unwrap();
    assert!(!cap.caption(&req).unwrap().is_empty());
}

#[test]
fn config_parses_from_yaml() {
    let c: CaptionerConfig = serde_yaml::from_str("kind: openai\nbase_url: http://x/v1\nmodel: m\n").unwrap();
    match c {
        CaptionerConfig::Openai(o) => {
            assert_eq!(o.model, "m");
            assert_eq!(o.retries, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(serde_yaml::from_str::<CaptionerConfig>("kind: openai\nmodle: m\n").is_err());
    assert!(serde_yaml::from_str::<CaptionerConfig>("kind: gpt\n").is_err());
}
