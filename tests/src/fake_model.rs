//! A fake model API on loopback that the real agent CLIs talk to in the tests (no network):
//! the Anthropic Messages API (Claude Code), the OpenAI Responses API (Codex), the Gemini API
//! (Gemini CLI) and OpenAI chat completions (aider), each in the wire format the CLI sends and
//! expects, streamed as server-sent events where the CLI asks for a stream.
//!
//! The answers are scripted by the text of the last user message:
//! - it contains `RUNCMD` and the request declares the CLI's shell tool (Claude `Bash`, Codex
//!   `exec_command`/`shell_command`/`shell`, Gemini `run_shell_command`): a call of that tool
//!   running [`PROBE_COMMAND`]; aider has no tools, so it gets the command in a bash block;
//! - the request carries a tool's result and no new prompt: the text [`PROBE_DONE`];
//! - it contains `SLOWREPLY`: after [`FakeModel::set_slow_delay`] (5 s unless set), the text
//!   [`SLOW_REPLY`];
//! - anything else: the text [`HELLO_REPLY`].
//!
//! Side requests (a request without the shell tool: titles, classifiers, next-speaker checks)
//! are answered at once with the same text, or with a small JSON object when the request asks
//! for JSON, so they never derail the session and never wait for `SLOWREPLY`.
//!
//! Every request is recorded (method, path, the last user text, whether it carries a tool
//! result, the tools it declares, when it came); a path the fake does not serve is recorded as
//! unserved and answered 404 with a JSON error, so a test can see what a new CLI release asks.
//! The server runs on a thread of its own with its own runtime; dropping the [`FakeModel`]
//! stops it and cuts open connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The shell command a `RUNCMD` tool call runs.
pub const PROBE_COMMAND: &str = "touch agentgate-probe.txt";
/// The file [`PROBE_COMMAND`] creates in the workspace.
pub const PROBE_FILE: &str = "agentgate-probe.txt";
/// The answer to a request that carries the tool's result.
pub const PROBE_DONE: &str = "Probe done.";
/// The answer to `SLOWREPLY`, after the delay.
pub const SLOW_REPLY: &str = "Slow reply finished.";
/// The answer to anything else.
pub const HELLO_REPLY: &str = "The fake model says hello.";

/// How long a wait on the fake's requests lasts before it fails the test.
pub const MODEL_PATIENCE: Duration = Duration::from_secs(60);

/// The largest request body read (Claude Code's first request, with its system prompt and
/// tools, is a few hundred KiB); a larger one is answered 413.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The most requests kept; older ones are dropped first (a long test cannot grow it forever).
const MAX_RECORDED: usize = 1_000;

/// Which API a request was spoken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    AnthropicMessages,
    AnthropicCountTokens,
    OpenAiResponses,
    OpenAiChat,
    GeminiGenerate,
    GeminiCountTokens,
    /// A path the fake does not serve (answered 404).
    Unserved,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct ModelRequest {
    pub method: String,
    /// The path with its query (`/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse`).
    pub path: String,
    pub api: Api,
    /// The text of the last user message (empty when the last message is not the user's).
    pub user_text: String,
    /// The last message carries a tool's result.
    pub tool_result: bool,
    /// The names of the tools the request declares.
    pub tools: Vec<String>,
    /// The request is a turn of the conversation (it declares the CLI's shell tool; all of
    /// aider's are), not a side request such as a title or a classifier.
    pub conversation: bool,
    /// The model the request names.
    pub model: String,
    /// What the fake answered (the text, or `tool call` for a tool call).
    pub answer: String,
    /// When it arrived.
    pub at: Instant,
    /// The request's JSON body (`null` when it had none or it was not JSON).
    pub body: Value,
}

struct Shared {
    requests: Mutex<Vec<ModelRequest>>,
    arrived: Condvar,
    slow_delay_ms: AtomicU64,
    tool_delay_ms: AtomicU64,
}

impl Shared {
    /// The recorded requests; a panic elsewhere (a failed test) does not hide them.
    fn lock(&self) -> MutexGuard<'_, Vec<ModelRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running fake model API; dropping it stops the server.
pub struct FakeModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(watch::Sender<bool>, std::thread::JoinHandle<()>)>,
}

impl FakeModel {
    /// Starts serving on 127.0.0.1 on a free port.
    pub fn start() -> FakeModel {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake model API");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            slow_delay_ms: AtomicU64::new(5_000),
            tool_delay_ms: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, thread_shared, stop_rx));
        });
        FakeModel {
            addr,
            shared,
            running: Some((stop_tx, thread)),
        }
    }

    /// `http://127.0.0.1:PORT`, with no path (each CLI adds its own).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How long a `RUNCMD`'s tool call waits before it is sent (none unless set): a dialog
    /// that shows up a while after the prompt was taken.
    pub fn set_tool_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.tool_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How long a `SLOWREPLY` waits before its answer.
    pub fn set_slow_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.slow_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.shared.lock().clone()
    }

    /// `METHOD path` of every request the fake did not serve.
    pub fn unserved(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.api == Api::Unserved)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Whether a request whose last user text contains `needle` has arrived.
    pub fn saw_user_text(&self, needle: &str) -> bool {
        self.requests().iter().any(|r| r.user_text.contains(needle))
    }

    /// Waits (at most [`MODEL_PATIENCE`]) for a request whose last user text contains
    /// `needle`; fails the test with what did arrive.
    pub fn wait_for_user_text(&self, needle: &str) -> ModelRequest {
        self.wait_for(&format!("a request with the user text {needle:?}"), |r| {
            r.user_text.contains(needle)
        })
    }

    /// Waits (at most [`MODEL_PATIENCE`]) for a turn of the conversation (not a side request)
    /// whose last user text contains `needle`: the CLI sent the prompt to its model.
    pub fn wait_for_prompt(&self, needle: &str) -> ModelRequest {
        self.wait_for(
            &format!("a conversation turn with the user text {needle:?}"),
            |r| r.conversation && r.user_text.contains(needle),
        )
    }

    /// Waits (at most [`MODEL_PATIENCE`]) for a request that carries a tool's result.
    pub fn wait_for_tool_result(&self) -> ModelRequest {
        self.wait_for("a request carrying a tool result", |r| r.tool_result)
    }

    /// Waits (at most [`MODEL_PATIENCE`]) for a request that `matches`; fails the test with
    /// `what` and a summary of the requests that did arrive.
    pub fn wait_for(&self, what: &str, matches: impl Fn(&ModelRequest) -> bool) -> ModelRequest {
        self.wait_within(what, MODEL_PATIENCE, matches)
    }

    pub fn wait_within(
        &self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&ModelRequest) -> bool,
    ) -> ModelRequest {
        let deadline = Instant::now() + limit;
        let mut requests = self.shared.lock();
        loop {
            if let Some(found) = requests.iter().find(|r| matches(r)) {
                return found.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = summary(&requests);
                // Unlocked before failing, so the lock is not poisoned for the test's cleanup.
                drop(requests);
                panic!("the fake model API did not see {what} within {limit:?}; it saw:\n{seen}");
            }
            requests = self
                .shared
                .arrived
                .wait_timeout(requests, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// One line per request, for failure messages.
    pub fn summary(&self) -> String {
        summary(&self.shared.lock())
    }
}

fn summary(requests: &[ModelRequest]) -> String {
    if requests.is_empty() {
        return "  (nothing)".into();
    }
    requests
        .iter()
        .map(|r| {
            // The prompt comes last (after reminders and context): show the end.
            let count = r.user_text.chars().count();
            let text: String = r.user_text.chars().skip(count.saturating_sub(80)).collect();
            format!(
                "  {} {} model={} tools={}{} tool_result={} user_text={text:?} -> {}",
                r.method,
                r.path,
                r.model,
                r.tools.len(),
                if r.conversation {
                    ""
                } else {
                    " (side request)"
                },
                r.tool_result,
                r.answer
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(req, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// What the script decides for one request.
enum Script {
    ToolCall,
    Text(&'static str, Duration),
}

fn script(prompt: &str, tool_result: bool, has_shell_tool: bool, slow_delay: Duration) -> Script {
    // A denied call comes back as a tool result next to the user's next prompt (Claude Code):
    // the prompt decides then.
    if tool_result && prompt.trim().is_empty() {
        Script::Text(PROBE_DONE, Duration::ZERO)
    } else if prompt.contains("RUNCMD") && has_shell_tool {
        Script::ToolCall
    } else if prompt.contains("SLOWREPLY") && has_shell_tool {
        Script::Text(SLOW_REPLY, slow_delay)
    } else if prompt.contains("SLOWREPLY") {
        // A side request about the slow prompt answers at once.
        Script::Text(SLOW_REPLY, Duration::ZERO)
    } else {
        Script::Text(HELLO_REPLY, Duration::ZERO)
    }
}

async fn answer(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let bare_path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or cut",
            );
        }
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let api = match (&method, bare_path.as_str()) {
        (&Method::POST, "/v1/messages") => Api::AnthropicMessages,
        (&Method::POST, "/v1/messages/count_tokens") => Api::AnthropicCountTokens,
        (&Method::POST, "/v1/responses") => Api::OpenAiResponses,
        (&Method::POST, "/v1/chat/completions") => Api::OpenAiChat,
        (&Method::POST, p) if p.starts_with("/v1beta/models/") && p.ends_with(":countTokens") => {
            Api::GeminiCountTokens
        }
        (&Method::POST, p)
            if p.starts_with("/v1beta/models/")
                && (p.ends_with(":streamGenerateContent") || p.ends_with(":generateContent")) =>
        {
            Api::GeminiGenerate
        }
        _ => Api::Unserved,
    };
    let parsed = match api {
        Api::AnthropicMessages | Api::AnthropicCountTokens => anthropic_request(&body),
        Api::OpenAiResponses => responses_request(&body),
        Api::OpenAiChat => chat_request(&body),
        Api::GeminiGenerate | Api::GeminiCountTokens => gemini_request(&body, &bare_path),
        Api::Unserved => Parsed::default(),
    };
    let slow_delay = Duration::from_millis(shared.slow_delay_ms.load(Ordering::Relaxed));
    let decided = script(
        &parsed.prompt,
        parsed.tool_result,
        parsed.shell_tool.is_some(),
        slow_delay,
    );
    let answer_text = match (&api, &decided) {
        (Api::Unserved, _) => "404".to_owned(),
        (Api::AnthropicCountTokens | Api::GeminiCountTokens, _) => "token count".to_owned(),
        (Api::GeminiGenerate, _) if parsed.wants_json => "a JSON object".to_owned(),
        (_, Script::ToolCall) if parsed.shell_tool.is_some() => {
            format!("tool call {PROBE_COMMAND:?}")
        }
        (_, Script::ToolCall) => HELLO_REPLY.to_owned(),
        (_, Script::Text(text, _)) => (*text).to_owned(),
    };
    record(
        shared,
        ModelRequest {
            method: method.to_string(),
            path: path.clone(),
            api,
            user_text: parsed.user_text.clone(),
            tool_result: parsed.tool_result,
            tools: parsed.tools.clone(),
            conversation: parsed.shell_tool.is_some(),
            model: parsed.model.clone(),
            answer: answer_text,
            at: Instant::now(),
            body: body.clone(),
        },
    );
    let delay = match decided {
        Script::Text(_, delay) => delay,
        Script::ToolCall if parsed.shell_tool.is_some() => {
            Duration::from_millis(shared.tool_delay_ms.load(Ordering::Relaxed))
        }
        Script::ToolCall => Duration::ZERO,
    };
    if !delay.is_zero() && !matches!(api, Api::AnthropicCountTokens | Api::GeminiCountTokens) {
        tokio::time::sleep(delay).await;
    }
    match api {
        Api::AnthropicMessages => anthropic_reply(&body, &parsed, &decided),
        Api::AnthropicCountTokens => json_reply(&json!({"input_tokens": 42})),
        Api::OpenAiResponses => responses_reply(&parsed, &decided),
        Api::OpenAiChat => chat_reply(&body, &parsed, &decided),
        Api::GeminiGenerate => gemini_reply(&body, &bare_path, &path, &parsed, &decided),
        Api::GeminiCountTokens => json_reply(&json!({"totalTokens": 42})),
        Api::Unserved => error(
            StatusCode::NOT_FOUND,
            &format!("the fake model API does not serve {method} {bare_path}"),
        ),
    }
}

fn record(shared: &Shared, request: ModelRequest) {
    let mut requests = shared.lock();
    if requests.len() >= MAX_RECORDED {
        requests.remove(0);
    }
    requests.push(request);
    shared.arrived.notify_all();
}

/// What the fake reads from a request, whatever its API.
#[derive(Default)]
struct Parsed {
    user_text: String,
    /// The last text part of the last user message: the prompt the script reads (a cancelled
    /// turn leaves its prompt before the next one in the same message, on Gemini CLI).
    prompt: String,
    tool_result: bool,
    tools: Vec<String>,
    /// The shell tool's name, when the request declares one.
    shell_tool: Option<String>,
    model: String,
    /// The request asks for a JSON answer (Gemini CLI's classifiers).
    wants_json: bool,
}

/// The last text part of a message's content.
fn last_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .rev()
            .find_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The text of a message's content: a string, or the `text` of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .or_else(|| p.as_str())
                    .map(str::to_owned)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn string_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn anthropic_request(body: &Value) -> Parsed {
    // Claude Code 2.1 puts `system` messages after the user's on a first turn: the user's is
    // the last one with that role.
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) != Some("system"))
        });
    let (user_text, prompt, tool_result) = match last {
        Some(m) if m.get("role").and_then(Value::as_str) == Some("user") => {
            let content = m.get("content").unwrap_or(&Value::Null);
            let tool_result = content.as_array().is_some_and(|parts| {
                parts
                    .iter()
                    .any(|p| p.get("type").and_then(Value::as_str) == Some("tool_result"))
            });
            (content_text(content), last_text(content), tool_result)
        }
        _ => (String::new(), String::new(), false),
    };
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().map(|t| string_field(t, "name")).collect())
        .unwrap_or_default();
    let shell_tool = tools.iter().find(|t| *t == "Bash").cloned();
    Parsed {
        user_text,
        prompt,
        tool_result,
        tools,
        shell_tool,
        model: string_field(body, "model"),
        wants_json: false,
    }
}

/// Codex's shell tools, most recent first.
const CODEX_SHELL_TOOLS: [&str; 3] = ["exec_command", "shell_command", "shell"];

fn responses_request(body: &Value) -> Parsed {
    let input = body
        .get("input")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tool_result = input.last().is_some_and(|item| {
        item.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("_call_output"))
    });
    let last_user = input
        .iter()
        .rev()
        .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|item| item.get("content"))
        .unwrap_or(&Value::Null);
    let user_text = content_text(last_user);
    // The user's message comes before the calls of its turn: after a tool's output there is
    // no new prompt.
    let prompt = if tool_result {
        String::new()
    } else {
        last_text(last_user)
    };
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().map(|t| string_field(t, "name")).collect())
        .unwrap_or_default();
    let shell_tool = CODEX_SHELL_TOOLS
        .iter()
        .find(|name| tools.iter().any(|t| t == *name))
        .map(|name| (*name).to_owned());
    Parsed {
        user_text,
        prompt,
        tool_result,
        tools,
        shell_tool,
        model: string_field(body, "model"),
        wants_json: false,
    }
}

fn chat_request(body: &Value) -> Parsed {
    // aider appends a system reminder after the user's message.
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) != Some("system"))
        });
    let user_text = match last {
        Some(m) if m.get("role").and_then(Value::as_str) == Some("user") => {
            content_text(m.get("content").unwrap_or(&Value::Null))
        }
        _ => String::new(),
    };
    Parsed {
        // aider runs a command it finds in a bash block of the answer: its "tool".
        shell_tool: Some("bash block".into()),
        prompt: user_text.clone(),
        user_text,
        model: string_field(body, "model"),
        ..Parsed::default()
    }
}

fn gemini_request(body: &Value, path: &str) -> Parsed {
    // countTokens wraps its request in `generateContentRequest` on some versions.
    let body = body.get("generateContentRequest").unwrap_or(body);
    let last = body
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last());
    let (user_text, prompt, tool_result) = match last {
        Some(m) if m.get("role").and_then(Value::as_str) != Some("model") => {
            let parts = m.get("parts").cloned().unwrap_or(Value::Null);
            let tool_result = parts
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()));
            (content_text(&parts), last_text(&parts), tool_result)
        }
        _ => (String::new(), String::new(), false),
    };
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
                .flatten()
                .map(|f| string_field(f, "name"))
                .collect()
        })
        .unwrap_or_default();
    let shell_tool = tools.iter().find(|t| *t == "run_shell_command").cloned();
    let config = body.get("generationConfig").unwrap_or(&Value::Null);
    let wants_json = config.get("responseMimeType").and_then(Value::as_str)
        == Some("application/json")
        || config.get("responseSchema").is_some()
        || config.get("responseJsonSchema").is_some();
    let model = path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default()
        .to_owned();
    Parsed {
        user_text,
        prompt,
        tool_result,
        tools,
        shell_tool,
        model,
        wants_json,
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:08x}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

fn json_reply(v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = json_reply(&json!({
        "type": "error",
        "error": {
            "type": if status == StatusCode::NOT_FOUND { "not_found_error" } else { "invalid_request_error" },
            "code": status.as_u16(),
            "message": message,
        },
    }));
    *r.status_mut() = status;
    r
}

/// Server-sent events, sent whole: each `(event name, data)` as `event:`/`data:` lines.
fn sse(events: &[(Option<&str>, Value)]) -> Response<Full<Bytes>> {
    let mut text = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            text.push_str(&format!("event: {name}\n"));
        }
        text.push_str(&format!("data: {data}\n\n"));
    }
    sse_text(text)
}

fn sse_text(text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

// ---- Anthropic Messages (Claude Code)

fn anthropic_reply(body: &Value, parsed: &Parsed, decided: &Script) -> Response<Full<Bytes>> {
    let model = string_field(body, "model");
    let id = next_id("msg_");
    let usage = json!({"input_tokens": 42, "output_tokens": 7,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    let (block, delta, stop_reason) = match (decided, &parsed.shell_tool) {
        (Script::ToolCall, Some(tool)) => {
            let input = json!({"command": PROBE_COMMAND, "description": "Create the probe file"});
            (
                json!({"type": "tool_use", "id": next_id("toolu_"), "name": tool, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                "tool_use",
            )
        }
        (Script::Text(text, _), _) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
            "end_turn",
        ),
        (Script::ToolCall, None) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": HELLO_REPLY}),
            "end_turn",
        ),
    };
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut whole = block.clone();
        if let Some(text) = delta.get("text") {
            whole["text"] = text.clone();
        } else if let Some(partial) = delta.get("partial_json").and_then(Value::as_str) {
            whole["input"] = serde_json::from_str(partial).unwrap_or(Value::Null);
        }
        return json_reply(&json!({"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [whole], "stop_reason": stop_reason,
            "stop_sequence": null, "usage": usage}));
    }
    sse(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": id, "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": usage}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        (Some("ping"), json!({"type": "ping"})),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason,
                "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ])
}

// ---- OpenAI Responses (Codex)

fn responses_reply(parsed: &Parsed, decided: &Script) -> Response<Full<Bytes>> {
    let response_id = next_id("resp_");
    let call_id = next_id("call_");
    let item = match (decided, parsed.shell_tool.as_deref()) {
        (Script::ToolCall, Some(tool)) => {
            let arguments = match tool {
                // Codex runs a command in its sandbox unless the model asks to leave it; the
                // read-only sandbox would refuse the probe, and asking is what shows the dialog.
                "exec_command" => json!({"cmd": PROBE_COMMAND,
                    "sandbox_permissions": "require_escalated",
                    "justification": "Create the probe file"}),
                "shell_command" => json!({"command": PROBE_COMMAND}),
                _ => json!({"command": ["bash", "-lc", PROBE_COMMAND]}),
            };
            json!({"type": "function_call", "id": next_id("fc_"), "call_id": call_id,
                "name": tool, "arguments": arguments.to_string(), "status": "completed"})
        }
        (Script::Text(text, _), _) => message_item(text),
        (Script::ToolCall, None) => message_item(HELLO_REPLY),
    };
    let mut events = vec![(
        Some("response.created"),
        json!({"type": "response.created", "response": {"id": response_id,
            "object": "response", "status": "in_progress", "output": []}}),
    )];
    if item["type"] == "message" {
        let text = item["content"][0]["text"].clone();
        let item_id = item["id"].clone();
        let mut started = item.clone();
        started["status"] = json!("in_progress");
        started["content"] = json!([]);
        events.push((
            Some("response.output_item.added"),
            json!({"type": "response.output_item.added", "output_index": 0, "item": started}),
        ));
        events.push((
            Some("response.output_text.delta"),
            json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                "content_index": 0, "delta": text}),
        ));
    }
    events.push((
        Some("response.output_item.done"),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    ));
    events.push((
        Some("response.completed"),
        json!({"type": "response.completed", "response": {"id": response_id,
            "object": "response", "status": "completed",
            "usage": {"input_tokens": 42, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 49}}}),
    ));
    sse(&events)
}

fn message_item(text: &str) -> Value {
    json!({"type": "message", "id": next_id("msg_"), "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

// ---- OpenAI chat completions (aider)

fn chat_reply(body: &Value, _parsed: &Parsed, decided: &Script) -> Response<Full<Bytes>> {
    let content = match decided {
        Script::ToolCall => format!("Run this:\n\n```bash\n{PROBE_COMMAND}\n```\n"),
        Script::Text(text, _) => (*text).to_owned(),
    };
    let id = next_id("chatcmpl-");
    let model = string_field(body, "model");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let usage = json!({"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49});
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_reply(
            &json!({"id": id, "object": "chat.completion", "created": created,
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": content}}], "usage": usage}),
        );
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut text = String::new();
    for data in [
        chunk(
            json!({"role": "assistant", "content": content}),
            Value::Null,
        ),
        chunk(json!({}), json!("stop")),
    ] {
        text.push_str(&format!("data: {data}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    sse_text(text)
}

// ---- Gemini (Gemini CLI)

fn gemini_reply(
    _body: &Value,
    bare_path: &str,
    path: &str,
    parsed: &Parsed,
    decided: &Script,
) -> Response<Full<Bytes>> {
    let part = match (decided, parsed.shell_tool.as_deref()) {
        (Script::ToolCall, Some(tool)) => json!({"functionCall": {"name": tool,
            "args": {"command": PROBE_COMMAND, "description": "Create the probe file"}}}),
        _ if parsed.wants_json => {
            // One object that satisfies each of the CLI's classifiers: the complexity router,
            // the model router and the next-speaker check.
            json!({"text": json!({"complexity_reasoning": "A short request.",
                "complexity_score": 10, "reasoning": "The fake model answers plainly.",
                "model_choice": "flash", "next_speaker": "user"}).to_string()})
        }
        (Script::Text(text, _), _) => json!({"text": text}),
        (Script::ToolCall, None) => json!({"text": HELLO_REPLY}),
    };
    let reply = json!({
        "candidates": [{"content": {"role": "model", "parts": [part]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 42, "candidatesTokenCount": 7,
            "totalTokenCount": 49},
        "modelVersion": parsed.model,
        "responseId": next_id("fake-"),
    });
    let streamed = bare_path.ends_with(":streamGenerateContent");
    if !streamed {
        return json_reply(&reply);
    }
    if path.contains("alt=sse") {
        sse(&[(None, reply)])
    } else {
        // Without `alt=sse` the stream is one JSON array.
        json_reply(&json!([reply]))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// One HTTP/1.1 exchange over a plain socket: the status line and headers, and the body.
    fn exchange(model: &FakeModel, method: &str, path: &str, body: &Value) -> (String, String) {
        let body = body.to_string();
        let mut socket = std::net::TcpStream::connect(model.addr()).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            socket,
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut answer = String::new();
        socket.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        (head.to_owned(), body.to_owned())
    }

    #[test]
    fn runcmd_with_the_bash_tool_streams_a_tool_call_and_its_result_gets_probe_done() {
        let model = FakeModel::start();
        let tools = json!([{"name": "Bash", "input_schema": {}}]);
        let (head, body) = exchange(
            &model,
            "POST",
            "/v1/messages?beta=true",
            &json!({"model": "m", "stream": true, "tools": tools,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "RUNCMD please"}]},
                             {"role": "system", "content": "a reminder"}]}),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        assert!(body.contains("event: content_block_start"), "{body}");
        assert!(body.contains(r#""name":"Bash""#), "{body}");
        assert!(body.contains("touch agentgate-probe.txt"), "{body}");
        let seen = model.wait_for_prompt("RUNCMD please");
        assert!(seen.conversation && !seen.tool_result);

        let (_, body) = exchange(
            &model,
            "POST",
            "/v1/messages",
            &json!({"model": "m", "tools": tools, "messages": [
                {"role": "user", "content": "RUNCMD please"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": ""}]}]}),
        );
        assert!(body.contains(PROBE_DONE), "{body}");
        assert!(model.wait_for_tool_result().tool_result);
    }

    #[test]
    fn runcmd_without_the_shell_tool_is_a_side_request_answered_with_text() {
        let model = FakeModel::start();
        let (_, body) = exchange(
            &model,
            "POST",
            "/v1/responses",
            &json!({"model": "m", "tools": [],
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "RUNCMD please"}]}]}),
        );
        assert!(!body.contains("function_call"), "{body}");
        assert!(body.contains(HELLO_REPLY), "{body}");
        let seen = model.wait_for_user_text("RUNCMD");
        assert!(!seen.conversation);
    }

    #[test]
    fn an_unserved_path_is_answered_404_and_recorded() {
        let model = FakeModel::start();
        let (head, _) = exchange(&model, "GET", "/v1/models", &Value::Null);
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert_eq!(model.unserved(), vec!["GET /v1/models".to_owned()]);
    }

    #[test]
    fn a_wait_that_runs_out_says_what_the_fake_saw() {
        let model = FakeModel::start();
        exchange(&model, "GET", "/nothing-here", &Value::Null);
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            model.wait_within("a prompt", Duration::from_millis(200), |r| r.conversation)
        }));
        let message = failed
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .expect("the wait failed with a message");
        assert!(message.contains("GET /nothing-here"), "{message}");
        // The recorded requests are still readable after the failure.
        assert_eq!(model.requests().len(), 1);
    }
}
