//! An OpenAI-compatible chat-completions endpoint as captioner: both frames go as JPEG data
//! URLs with the UniReal toolkit's prompt.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{CaptionError, CaptionRequest, Captioner, DescribeRequest};

/// The prompt of the UniReal authors' data toolkit.
pub const UNIREAL_TOOLKIT_PROMPT: &str =
    "Give a sentence of instruction to make the first image like the second image.";

/// The prompt for describing one frame.
pub const DESCRIBE_PROMPT: &str = "Describe this image in one sentence.";

/// `captioner: {kind: openai, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL up to `/v1` (the request goes to `{base_url}/chat/completions`).
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key; unset or empty sends none.
    pub api_key_env: String,
    pub prompt: String,
    /// The prompt for one frame (captions of control samples).
    pub describe_prompt: String,
    pub timeout_s: f64,
    /// Further attempts after a transport error, 429 or 5xx.
    pub retries: u32,
    /// Requests in flight at once across all workers.
    pub concurrency: usize,
    pub max_tokens: u32,
    pub temperature: f64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "http://localhost:8000/v1".into(),
            model: "Qwen/Qwen2-VL-7B-Instruct".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            prompt: UNIREAL_TOOLKIT_PROMPT.into(),
            describe_prompt: DESCRIBE_PROMPT.into(),
            timeout_s: 60.0,
            retries: 3,
            concurrency: 4,
            max_tokens: 96,
            temperature: 0.2,
        }
    }
}

/// A counting semaphore.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut n = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *n == 0 {
            n = self.cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

pub struct OpenAiCaptioner {
    cfg: OpenAiConfig,
    url: String,
    key: Option<String>,
    agent: ureq::Agent,
    slots: Slots,
}

impl OpenAiCaptioner {
    pub fn new(cfg: OpenAiConfig) -> Result<Self, CaptionError> {
        if cfg.base_url.trim().is_empty() {
            return Err(CaptionError::Config("captioner.base_url is empty".into()));
        }
        if !(1..=1024).contains(&cfg.concurrency) {
            // (each is a thread of the build's request pool)
            return Err(CaptionError::Config("captioner.concurrency must lie in 1..=1024".into()));
        }
        if !(cfg.timeout_s > 0.0) {
            return Err(CaptionError::Config("captioner.timeout_s must be positive".into()));
        }
        let key = std::env::var(&cfg.api_key_env).ok().filter(|k| !k.is_empty());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(cfg.timeout_s)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let slots = Slots { free: Mutex::new(cfg.concurrency), cv: Condvar::new() };
        Ok(OpenAiCaptioner { cfg, url, key, agent, slots })
    }

    fn body(&self, prompt: &str, jpegs: &[&[u8]]) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut content = vec![json!({"type": "text", "text": prompt})];
        for jpeg in jpegs {
            let url = format!("data:image/jpeg;base64,{}", b64.encode(jpeg));
            content.push(json!({"type": "image_url", "image_url": {"url": url}}));
        }
        json!({
            "model": self.cfg.model,
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
            "messages": [{"role": "user", "content": content}],
        })
    }

    /// Sends a request with retries on transport errors, 429 and 5xx: after an exponential
    /// backoff, or as long as the server's `Retry-After` asks (seconds, at most
    /// [`MAX_RETRY_AFTER`]).
    fn complete(&self, body: &serde_json::Value) -> Result<String, CaptionError> {
        let _slot = self.slots.acquire();
        let mut last = String::new();
        let mut asked = None;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                let backoff = Duration::from_millis(250u64 << (attempt - 1).min(6));
                std::thread::sleep(asked.map_or(backoff, |a: Duration| a.max(backoff)));
            }
            match self.attempt(body) {
                Ok(c) => return Ok(c),
                Err(Failed { retry, message, retry_after }) => {
                    last = message;
                    asked = retry_after;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(CaptionError::Endpoint {
            url: self.url.clone(),
            message: format!("{last} (after {} attempt(s))", self.cfg.retries + 1),
        })
    }

    fn attempt(&self, body: &serde_json::Value) -> Result<String, Failed> {
        let mut r = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(k) = &self.key {
            r = r.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = r.send_json(body).map_err(|e| Failed::retry(e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())));
        let text = resp.body_mut().read_to_string().map_err(|e| Failed::retry(e.to_string()))?;
        if status != 200 {
            let retry = status == 429 || status >= 500;
            let snippet: String = text.chars().take(200).collect();
            return Err(Failed { retry, message: format!("HTTP {status}: {snippet}"), retry_after });
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Failed::fatal(format!("response is not JSON: {e}")))?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| Failed::fatal("response has no choices[0].message.content".into()))?;
        let content = content.trim().trim_matches('"').trim();
        if content.is_empty() {
            return Err(Failed::retry("empty caption".into()));
        }
        Ok(content.to_string())
    }
}

/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// One failed attempt: whether to try again, why, and when the server asked to be retried.
struct Failed {
    retry: bool,
    message: String,
    retry_after: Option<Duration>,
}

impl Failed {
    fn retry(message: String) -> Self {
        Failed { retry: true, message, retry_after: None }
    }

    fn fatal(message: String) -> Self {
        Failed { retry: false, message, retry_after: None }
    }
}

impl Captioner for OpenAiCaptioner {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    fn caption(&self, req: &CaptionRequest<'_>) -> Result<String, CaptionError> {
        self.complete(&self.body(&self.cfg.prompt, &[req.first_jpeg, req.second_jpeg]))
    }

    fn describe(&self, req: &DescribeRequest<'_>) -> Result<String, CaptionError> {
        self.complete(&self.body(&self.cfg.describe_prompt, &[req.jpeg]))
    }
}
