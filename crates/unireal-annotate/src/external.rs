//! A long-lived external command speaking JSON lines over stdin/stdout: one request line in,
//! one response line out, matched by `id`. The protocol is in docs/segmenters.md.
//!
//! Processes are started on first use and pooled, so that a model loads once per worker, not
//! once per video. A process that crashes, times out, answers with a line that is not the
//! expected JSON, or reports an error for the request is an error for the request only: a
//! broken process is killed and the next request starts a fresh one.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{kind: command, …}`: how to start the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Program and arguments, e.g. `[python3, scripts/segmenters/example_adapter.py]`.
    pub command: Vec<String>,
    /// Longest wait for one response line.
    pub timeout_s: f64,
    /// Processes kept alive at most; for a segmenter also how many segment requests a build
    /// keeps in flight, shared by its workers (0: one per build worker, each waiting for its
    /// answers).
    pub max_processes: usize,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig { command: vec![], timeout_s: 120.0, max_processes: 0 }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start `{program}`: {message}")]
    Spawn { program: String, message: String },
    #[error("`{program}` exited ({status}) before answering{stderr}")]
    Crashed { program: String, status: String, stderr: String },
    #[error("`{program}` gave no answer within {timeout_s} s")]
    Timeout { program: String, timeout_s: f64 },
    #[error("`{program}` answered with a malformed line: {message}: {line:?}")]
    Malformed { program: String, message: String, line: String },
    #[error("`{program}` reported an error: {message}")]
    Remote { program: String, message: String },
    #[error("command config: {0}")]
    Config(String),
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pool of processes of one command.
pub struct CommandClient {
    cfg: CommandConfig,
    idle: Mutex<Vec<Proc>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl CommandClient {
    pub fn new(cfg: CommandConfig) -> Result<Self, CommandError> {
        if cfg.command.is_empty() || cfg.command[0].trim().is_empty() {
            return Err(CommandError::Config("command: give the program and its arguments as a list".into()));
        }
        if !(cfg.timeout_s > 0.0) {
            return Err(CommandError::Config("timeout_s: must be positive".into()));
        }
        Ok(CommandClient { cfg, idle: Mutex::new(Vec::new()), next_id: 1.into() })
    }

    pub fn program(&self) -> &str {
        &self.cfg.command[0]
    }

    /// `max_processes` as configured (0: one per build worker).
    pub fn max_processes(&self) -> usize {
        self.cfg.max_processes
    }

    fn spawn(&self) -> Result<Proc, CommandError> {
        let mut child = Command::new(&self.cfg.command[0])
            .args(&self.cfg.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CommandError::Spawn { program: self.program().into(), message: e.to_string() })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("unireal-command-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| CommandError::Spawn { program: self.program().into(), message: e.to_string() })?;
        // Keep the last lines of stderr for crash reports.
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr.clone();
        std::thread::Builder::new()
            .name("unireal-command-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == 8 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
            .map_err(|e| CommandError::Spawn { program: self.program().into(), message: e.to_string() })?;
        Ok(Proc { child, stdin, lines, stderr })
    }

    fn crashed(&self, p: &mut Proc) -> CommandError {
        // Give the process a moment to exit so that its status and last stderr lines show.
        let mut status = None;
        for _ in 0..20 {
            if let Ok(Some(s)) = p.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let tail = p.stderr.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join(" | ");
        CommandError::Crashed {
            program: self.program().into(),
            status: status.map(|s| s.to_string()).unwrap_or_else(|| "closed its output".into()),
            stderr: if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") },
        }
    }

    /// Sends one request (an object; `id` is set here) and returns the response object.
    pub fn call(&self, mut request: Value) -> Result<Value, CommandError> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        request["id"] = id.into();
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let was_pooled = pooled.is_some();
        let mut p = match pooled {
            Some(p) => p,
            None => self.spawn()?,
        };
        let mut result = self.exchange(&mut p, &request, id);
        if was_pooled && matches!(result, Err(CommandError::Crashed { .. })) {
            // A pooled process died while idle: the request never reached a live process,
            // so it goes once more to a fresh one.
            p.kill();
            p = self.spawn()?;
            result = self.exchange(&mut p, &request, id);
        }
        match result {
            Ok(v) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if self.cfg.max_processes == 0 || idle.len() < self.cfg.max_processes {
                    idle.push(p);
                } else {
                    drop(idle);
                    p.kill();
                }
                if let Some(msg) = v.get("error").filter(|e| !e.is_null()) {
                    let message = msg.as_str().map(String::from).unwrap_or_else(|| msg.to_string());
                    return Err(CommandError::Remote { program: self.program().into(), message });
                }
                Ok(v)
            }
            Err(e) => {
                p.kill();
                Err(e)
            }
        }
    }

    fn exchange(&self, p: &mut Proc, request: &Value, id: u64) -> Result<Value, CommandError> {
        let mut line = request.to_string();
        line.push('\n');
        if p.stdin.write_all(line.as_bytes()).and_then(|()| p.stdin.flush()).is_err() {
            return Err(self.crashed(p));
        }
        let answer = match p.lines.recv_timeout(Duration::from_secs_f64(self.cfg.timeout_s)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                return Err(CommandError::Timeout { program: self.program().into(), timeout_s: self.cfg.timeout_s })
            }
            Err(RecvTimeoutError::Disconnected) => return Err(self.crashed(p)),
        };
        check_answer(&answer, id).map_err(|message| CommandError::Malformed {
            program: self.program().into(),
            message,
            line: answer.chars().take(200).collect(),
        })
    }
}

/// One answer line of the protocol: a JSON object carrying the request's `id`, or why not.
pub fn check_answer(line: &str, id: u64) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if v.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(format!("expected \"id\": {id}"));
    }
    Ok(v)
}

impl Drop for CommandClient {
    fn drop(&mut self) {
        for p in self.idle.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            p.kill();
        }
    }
}
