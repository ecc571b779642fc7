//! A stand-in for the Azure Functions host in front of the handler, written from the host's
//! source (Azure/azure-functions-host at 89dc438d, `src/WebJobs.Script/`; paths below are under
//! it). The host cannot run here; this plays what the handler sees of it:
//!
//! - **Start-up** (`Workers/Http/HttpWorkerProcess.cs:58-62`): the handler is started with
//!   `FUNCTIONS_CUSTOMHANDLER_PORT`, `FUNCTIONS_CUSTOMHANDLER_WORKER_ID` and
//!   `FUNCTIONS_APP_ROOT_PATH` on a port the host picked (`HttpWorkerOptionsSetup.cs:112`). The
//!   host polls `GET http://127.0.0.1:{port}/` every 25 ms (`Workers/WorkerConstants.cs:11`) until
//!   any HTTP answer (`Workers/Http/DefaultHttpWorkerService.cs:271-284`), for
//!   `InitializationTimeout` (30 s, `HttpWorkerOptions.cs:20`); a timeout is an error event and a
//!   restart, and the third error stops the host (`HttpFunctionInvocationDispatcher.cs:55,147-155`).
//! - **Routes** from `function-app/*/function.json`: `{routePrefix}/{route}`
//!   (`WebHost/WebScriptHostHttpRoutesManager.cs:37`), matched without regard to case (ASP.NET
//!   Core routing), methods from `methods`; `authLevel: function` needs the key in
//!   `x-functions-key` or `?code=` (`WebHost/Security/Authentication/Keys/AuthenticationLevelHandler.cs:23-24`).
//! - **Forwarding** (`enableForwardingHttpRequest`, one httpTrigger in and one http out,
//!   `Extensions/FunctionMetadataExtensions.cs:27-35`): the original path and query are sent
//!   to the handler (`DefaultHttpWorkerService.cs:173`); every request header is copied
//!   (`Extensions/HttpRequestExtensions.cs:162-165`); the body only when `Content-Length` > 0
//!   (`DefaultHttpWorkerService.cs:170`), so a chunked request reaches .NET's HttpClient with
//!   `Transfer-Encoding: chunked` and no content, which it refuses: a 500; `X-Azure-Functions-HostVersion` and
//!   `X-Azure-Functions-InvocationId` are added (163-165); the handler's whole response is read
//!   before the client gets any of it (`SendAsync` with the default `ResponseContentRead`, 128),
//!   and status, headers and body are passed back as they are.
//! - **Other triggers**: `POST /{FunctionName}` with `{"Data":{binding: value},"Metadata":{…}}`
//!   (`MessageExtensions/HttpScriptInvocationContextExtensions.cs:17-19`), scalars serialised
//!   with `JsonConvert.SerializeObject` so a string arrives with its quotes
//!   (`Workers/MessageExtensions/ScriptInvocationContextExtensions.cs:56-81`); a non-2xx answer fails the invocation
//!   (`DefaultHttpWorkerService.cs:194`), which for Service Bus abandons the message (see
//!   `servicebus.rs`). Timers carry `TimerInfo` (`Schedule`, `ScheduleStatus`, `IsPastDue`).
//!   The invocation body is an `ObjectContent` (`HttpScriptInvocationContextExtensions.cs:18-19`),
//!   whose length is never computed, so it arrives **chunked**. A Service Bus message body is a
//!   string to the host (the SDK's default trigger type, `JobHostMetadataProvider.cs:241-255`) and
//!   a string is serialised once more (`ScriptInvocationContextExtensions.cs:56-81`): `Data.message`
//!   holds JSON **encoded twice**. The top-level properties of a JSON body are merged into the
//!   binding data, case-insensitively, over the trigger's own (`Utility.ApplyBindingData`,
//!   `Utility.cs:392-437`; the SDK's `Binder` dictionary is `OrdinalIgnoreCase`), objects as they
//!   are and everything else as a string, so they reach `Metadata` too (`MessageId` then holds the
//!   body's `messageId`).
//! - **functionTimeout**: an invocation past it restarts the one handler process
//!   (`WebHost/WebScriptHostExceptionHandler.cs:55-57`, `HttpFunctionInvocationDispatcher.cs:209-213`),
//!   failing every invocation in flight there; that restart is not an error.
//! - **The worker's life** (`Workers/ProcessManagement/WorkerProcess.cs:156-196`): an exit with
//!   code 0 publishes nothing and is **not restarted** (invocations then fail); any other exit is
//!   an error event and a restart. Errors count whether or not the worker had started: the bucket
//!   is cleared only by 30 minutes without one (`HttpFunctionInvocationDispatcher.cs:159-173`,
//!   `WorkerConstants.cs:59`), and the **third** stops the host (`ErrorEventsThreshold = 3`,
//!   lines 55, 145-156). The port is chosen once (`HttpWorkerOptionsSetup.cs:112`) and every
//!   restart gets the **same** one.
//! - **The front end** ends an HTTP request at **230 s** whatever `functionTimeout` says
//!   (learn.microsoft.com, *functions-scale*, "Timeout"): the client gets a 500, the invocation
//!   runs on.
//!
//! Where it differs from the host: it buffers the request body before forwarding (the host
//! streams it); repeated query keys are passed as sent (the host joins them with commas); no
//! HTTP/2, no `Host` rewriting, no extension bundles, no scale controller, one instance; it
//! notices a worker's exit by polling every 25 ms (the host gets the process's exit event); an
//! in-process worker (the Azure backend, whose Cosmos DB emulator lives in the test process)
//! cannot be restarted, so restarts are exercised with the binary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode};

/// The function key the harness accepts (`x-functions-key` or `?code=`).
pub const FUNCTION_KEY: &str = "harness-function-key";

fn function_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../function-app")
}

/// host.json, as the host reads it.
pub fn host_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(function_app().join("host.json")).expect("host.json"))
        .expect("host.json is JSON")
}

/// `hh:mm:ss` as host.json writes a TimeSpan.
pub fn timespan(s: &str) -> Duration {
    let parts: Vec<u64> = s.split(':').map(|p| p.parse().expect("a TimeSpan")).collect();
    let [h, m, sec] = parts.as_slice() else { panic!("not hh:mm:ss: {s}") };
    Duration::from_secs(h * 3600 + m * 60 + sec)
}

/// One function of the app.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// httpTrigger: route segments, methods (upper case), whether a key is needed.
    pub http: Option<(Vec<String>, Vec<String>, bool)>,
}

/// Every function under `function-app/`, with its route under the prefix.
pub fn functions() -> Vec<Function> {
    let prefix = host_json()["extensions"]["http"]["routePrefix"].as_str().unwrap_or("api").to_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(function_app()).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("function.json")) else { continue };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let def: Value = serde_json::from_str(&text).expect("function.json is JSON");
        let bindings = def["bindings"].as_array().expect("bindings");
        let trigger = bindings
            .iter()
            .find(|b| b["direction"] == "in" && b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .expect("a trigger");
        let http = (trigger["type"] == "httpTrigger").then(|| {
            let route = trigger["route"].as_str().map(str::to_owned).unwrap_or_else(|| name.clone());
            let segments = std::iter::once(prefix.clone())
                .chain(route.split('/').map(str::to_owned))
                .filter(|s| !s.is_empty())
                .collect();
            let methods = trigger["methods"]
                .as_array()
                .map(|m| m.iter().map(|v| v.as_str().unwrap().to_ascii_uppercase()).collect())
                .unwrap_or_default();
            (segments, methods, trigger["authLevel"].as_str().unwrap_or("function") != "anonymous")
        });
        out.push(Function { name, http });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether `path` (split on '/') matches a route template, as ASP.NET Core routing does:
/// literal segments without regard to case, `{name}` one non-empty segment, a literal suffix
/// after a parameter (`{feedToken}.ics`), and one trailing slash ignored (`PathTokenizer`).
pub fn template_matches(template: &[String], path: &[&str]) -> bool {
    let path = match path.split_last() {
        Some((last, rest)) if last.is_empty() && !rest.is_empty() => rest,
        _ => path,
    };
    template.len() == path.len()
        && template.iter().zip(path).all(|(t, p)| match (t.find('{'), t.find('}')) {
            (Some(0), Some(end)) => {
                let suffix = &t[end + 1..];
                p.len() > suffix.len() && p[p.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            _ => t.eq_ignore_ascii_case(p),
        })
}

/// The invocation payload of a Service Bus trigger (binding `message`), as the host builds it:
/// the body as a string, scalars in Metadata JSON-serialised (`"DeliveryCount":"1"`,
/// `"MessageId":"\"…\""`), `UserProperties` an object, `sys` the method and time.
pub fn service_bus_invocation(function: &str, message_id: &str, delivery_count: u32, body: &Value) -> Value {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut metadata = json!({
        "MessageId": q(message_id),
        "DeliveryCount": delivery_count.to_string(),
        "ContentType": q("application/json"),
        "EnqueuedTimeUtc": q(&now),
        "UserProperties": {},
        "sys": { "MethodName": function, "UtcNow": now, "RandGuid": uuid::Uuid::new_v4().to_string() }
    });
    merge_body_into_metadata(metadata.as_object_mut().unwrap(), body);
    json!({
        // The body string, serialised once more: JSON inside a JSON string inside a JSON string.
        "Data": { "message": serde_json::to_string(&body.to_string()).unwrap() },
        "Metadata": metadata,
    })
}

/// `Utility.ApplyBindingData`: each top-level property of a JSON object body that is not an
/// array goes into the binding data under its own name, replacing a trigger property of the same
/// name without regard to case (the existing key keeps its spelling); an object stays an object,
/// anything else becomes its string form, which the metadata conversion then JSON-quotes.
fn merge_body_into_metadata(metadata: &mut serde_json::Map<String, Value>, body: &Value) {
    let Some(props) = body.as_object() else { return };
    for (name, value) in props {
        let converted = match value {
            Value::Array(_) => continue,
            Value::Object(_) => value.clone(),
            Value::String(s) => Value::String(serde_json::to_string(s).unwrap()),
            Value::Bool(b) => Value::String(serde_json::to_string(if *b { "True" } else { "False" }).unwrap()),
            Value::Null => Value::String(serde_json::to_string("").unwrap()),
            Value::Number(n) => Value::String(serde_json::to_string(&n.to_string()).unwrap()),
        };
        let key = metadata.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| name.clone());
        metadata.insert(key, converted);
    }
}

/// An invocation as the host sends it: `POST /{function}` with an `ObjectContent` body, whose
/// length is never computed, so it goes chunked.
pub fn invocation_request(
    client: &reqwest::Client,
    port: u16,
    function: &str,
    payload: &Value,
) -> reqwest::RequestBuilder {
    let bytes = Bytes::from(serde_json::to_vec(payload).unwrap());
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]));
    client
        .post(format!("http://127.0.0.1:{port}/{function}"))
        .header("content-type", "application/json; charset=utf-8")
        .body(chunked)
}

/// The invocation payload of a timer trigger (binding `timer`).
pub fn timer_invocation(function: &str, past_due: bool) -> Value {
    let now = chrono::Utc::now();
    json!({
        "Data": { "timer": {
            "Schedule": { "AdjustForDST": true },
            "ScheduleStatus": {
                "Last": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "Next": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "LastUpdated": now.to_rfc3339()
            },
            "IsPastDue": past_due
        } },
        "Metadata": { "sys": { "MethodName": function, "UtcNow": now.to_rfc3339(), "RandGuid": uuid::Uuid::new_v4().to_string() } }
    })
}

/// How the handler runs behind the harness.
pub enum Worker {
    /// The real binary, started and restarted by the harness with the host's environment plus
    /// these settings.
    Binary { env: Vec<(String, String)>, child: Option<std::process::Child> },
    /// A handler already running in this process (the Azure backend: its Cosmos DB emulator
    /// is in-process). Never restarted.
    InProcess,
}

/// What the harness saw.
#[derive(Debug, Default, Clone)]
pub struct HostLog {
    /// Worker starts, with the time from spawning to the first answer on `/`.
    pub starts: Vec<Duration>,
    /// Restarts, with their reason.
    pub restarts: Vec<String>,
    /// Error events (failed starts, exits with a code other than 0), in order.
    pub errors: Vec<String>,
    /// Exits with code 0 (not restarted).
    pub clean_exits: usize,
    /// Whether the host gave up (the third error event).
    pub stopped: bool,
}

/// `ErrorEventsThreshold`: the error event that stops the host.
const ERROR_EVENTS_THRESHOLD: usize = 3;
/// `WorkerRestartErrorIntervalThresholdInMinutes`: a gap this long clears the bucket.
const ERROR_BUCKET_GAP: Duration = Duration::from_secs(30 * 60);
/// The front end's limit on an HTTP request.
pub const FRONT_END_LIMIT: Duration = Duration::from_secs(230);

/// What the front door and the trigger invocations share.
pub struct Inner {
    worker: Worker,
    /// Chosen once; every restart of the worker gets it again.
    port: u16,
    /// host.json's `functionTimeout` (a test may shorten it).
    function_timeout: Duration,
    /// The front end's 230 s (a test may shorten it).
    front_end_limit: Duration,
    /// `HttpWorkerOptions.InitializationTimeout`.
    init_timeout: Duration,
    /// The error bucket: when each error event happened.
    error_times: Vec<Instant>,
    /// Raised at every start and kill, so a watcher knows its process is no longer the worker.
    generation: u64,
    pub log: HostLog,
}

pub struct FunctionsHost {
    /// The host's own address (what clients, the gateway and the smoke test call).
    pub base: String,
    pub inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const BIN: &str = env!("CARGO_BIN_EXE_warranty");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.log.stopped = true;
            kill_worker(&mut inner);
        }
    }
}

impl FunctionsHost {
    /// The host in front of a handler already listening on `port` in this process.
    pub async fn in_front_of(port: u16) -> Self {
        Self::start(Worker::InProcess, port).await
    }

    /// The host starting the real binary with these settings (environment variables).
    pub async fn with_binary(env: &[(&str, String)]) -> Self {
        let (host, started) = Self::try_with_binary(env).await;
        started.expect("the handler starts");
        host
    }

    /// As [`Self::with_binary`], with the outcome of the start (three tries) beside the host.
    pub async fn try_with_binary(env: &[(&str, String)]) -> (Self, Result<(), String>) {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let host = Self::start(Worker::Binary { env, child: None }, free_port()).await;
        let started = host.start_worker().await;
        (host, started)
    }

    async fn start(worker: Worker, port: u16) -> Self {
        let function_timeout = timespan(host_json()["functionTimeout"].as_str().unwrap_or("00:30:00"));
        let init_timeout = Duration::from_secs(30);
        let inner = Arc::new(Mutex::new(Inner {
            worker,
            port,
            function_timeout,
            front_end_limit: FRONT_END_LIMIT,
            init_timeout,
            error_times: Vec::new(),
            generation: 0,
            log: HostLog::default(),
        }));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let front = FrontDoor { inner: inner.clone(), functions: Arc::new(functions()), client: client.clone() };
        let route = super::whole_request().then(
            move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
                let front = front.clone();
                async move { front.forward(method, path.as_str().to_owned(), query, headers, body).await }
            },
        );
        let stop = super::serve_listener(listener, route);
        Self { base, inner, client, _stop: stop }
    }

    /// The handler's own port (the same across restarts, as the host's).
    pub fn worker_port(&self) -> u16 {
        self.inner.lock().unwrap().port
    }

    pub fn log(&self) -> HostLog {
        self.inner.lock().unwrap().log.clone()
    }

    /// The binary's process id (unchanged unless restarted).
    pub fn worker_pid(&self) -> Option<u32> {
        match &self.inner.lock().unwrap().worker {
            Worker::Binary { child: Some(c), .. } => Some(c.id()),
            _ => None,
        }
    }

    /// Starts the binary on the host's port and polls `/` as the host does; every failed start
    /// is an error event, and the third stops the host.
    pub async fn start_worker(&self) -> Result<(), String> {
        start_worker(&self.inner).await
    }

    /// Every invocation, HTTP or not, runs at most `limit` from now on.
    pub fn set_function_timeout(&self, limit: Duration) {
        self.inner.lock().unwrap().function_timeout = limit;
    }

    /// The front end ends HTTP requests after `limit` from now on (230 s by default).
    pub fn set_front_end_limit(&self, limit: Duration) {
        self.inner.lock().unwrap().front_end_limit = limit;
    }

    /// Waits until the watcher has seen the worker's exit (or the host stop), as the host's
    /// process-exit event would tell it.
    pub async fn worker_exit_seen(&self, exits_before: usize) {
        super::eventually("the worker's exit is seen", || {
            let log = &self.inner.lock().unwrap().log;
            log.errors.len() + log.clean_exits > exits_before || log.stopped
        })
        .await;
    }

    /// Invokes a non-HTTP function as the host does; returns the status and the body.
    pub async fn invoke(&self, function: &str, payload: &Value) -> (u16, Value) {
        let (port, limit) = {
            let g = self.inner.lock().unwrap();
            (g.port, g.function_timeout)
        };
        let resp = invocation_request(&self.client, port, function, payload).timeout(limit).send().await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) if e.is_timeout() => {
                restart(&self.inner, format!("{function} passed functionTimeout")).await;
                (500, Value::Null)
            }
            Err(_) => (502, Value::Null),
        }
    }

    /// A timer function's tick.
    pub async fn tick(&self, function: &str) -> (u16, Value) {
        self.invoke(function, &timer_invocation(function, false)).await
    }

    /// The HTTP client the harness uses (no redirects followed), for requests to its address.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Boxed with its type spelled out: a watcher restarts the worker through it, and it starts
/// watchers.
fn start_worker(
    inner: &Arc<Mutex<Inner>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
    Box::pin(start_worker_inner(inner))
}

async fn start_worker_inner(inner: &Arc<Mutex<Inner>>) -> Result<(), String> {
    let init_timeout = inner.lock().unwrap().init_timeout;
    loop {
        let spawned = Instant::now();
        let (port, generation) = {
            let mut g = inner.lock().unwrap();
            if g.log.stopped {
                return Err("the host has stopped".into());
            }
            g.generation += 1;
            let (port, generation) = (g.port, g.generation);
            let Worker::Binary { env, child } = &mut g.worker else { return Ok(()) };
            let mut cmd = std::process::Command::new(BIN);
            cmd.arg("serve")
                .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
                .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", uuid::Uuid::new_v4().to_string())
                .env("FUNCTIONS_APP_ROOT_PATH", function_app())
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            *child = Some(cmd.spawn().map_err(|e| e.to_string())?);
            (port, generation)
        };
        // Any HTTP answer on `/` means ready; a refused connection means not yet. A process that
        // exits is a failed start at once (the host's process-exit event).
        let client = reqwest::Client::new();
        let why = loop {
            if client.get(format!("http://127.0.0.1:{port}/")).send().await.is_ok() {
                inner.lock().unwrap().log.starts.push(spawned.elapsed());
                tokio::spawn(watch(inner.clone(), generation));
                return Ok(());
            }
            if spawned.elapsed() > init_timeout {
                break format!("no answer on / within {init_timeout:?}");
            }
            let exited = match &mut inner.lock().unwrap().worker {
                Worker::Binary { child: Some(c), .. } => c.try_wait().ok().flatten(),
                _ => None,
            };
            if let Some(status) = exited {
                break format!("the handler exited ({status})");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        kill_worker(&mut inner.lock().unwrap());
        if error_event(inner, format!("start: {why}")) {
            return Err("Exceeded http worker restart retry count. Shutting down Functions Host".into());
        }
    }
}

/// Kills the worker process, if any (its watcher stops: the generation moves on).
fn kill_worker(g: &mut Inner) {
    g.generation += 1;
    if let Worker::Binary { child: Some(c), .. } = &mut g.worker {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Records an error event in the bucket (cleared by a 30-minute gap) and a restart; true when it
/// was the third, and the host stops.
fn error_event(inner: &Arc<Mutex<Inner>>, why: String) -> bool {
    let mut g = inner.lock().unwrap();
    let now = Instant::now();
    if g.error_times.last().is_some_and(|last| now.duration_since(*last) > ERROR_BUCKET_GAP) {
        g.error_times.clear();
    }
    g.error_times.push(now);
    g.log.errors.push(why.clone());
    if g.error_times.len() >= ERROR_EVENTS_THRESHOLD {
        g.log.stopped = true;
        return true;
    }
    g.log.restarts.push(why);
    false
}

/// Watches a started worker for its exit, as the host's process-exit event does: code 0 is
/// noted and not restarted; any other exit is an error event and a restart.
async fn watch(inner: Arc<Mutex<Inner>>, generation: u64) {
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let status = {
            let mut g = inner.lock().unwrap();
            if g.generation != generation {
                return;
            }
            match &mut g.worker {
                Worker::Binary { child: Some(c), .. } => c.try_wait().ok().flatten(),
                _ => return,
            }
        };
        let Some(status) = status else { continue };
        if status.code() == Some(0) {
            let mut g = inner.lock().unwrap();
            g.log.clean_exits += 1;
            g.generation += 1;
            return;
        }
        if !error_event(&inner, format!("the worker exited ({status})")) {
            let _ = start_worker(&inner).await;
        }
        return;
    }
}

/// Kills the handler (every invocation in flight there fails) and starts it again on the same
/// port; not an error event (`RestartWorkerWithInvocationIdAsync`).
async fn restart(inner: &Arc<Mutex<Inner>>, why: String) {
    {
        let mut g = inner.lock().unwrap();
        g.log.restarts.push(why);
        if matches!(g.worker, Worker::InProcess) {
            panic!("an in-process handler cannot be restarted (see the module doc)");
        }
        kill_worker(&mut g);
    }
    let _ = start_worker(inner).await;
}

#[derive(Clone)]
struct FrontDoor {
    inner: Arc<Mutex<Inner>>,
    functions: Arc<Vec<Function>>,
    client: reqwest::Client,
}

impl FrontDoor {
    /// One HTTP request to the app: routed, authorised, forwarded, answered.
    async fn forward(
        &self,
        method: Method,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        let plain = |status: StatusCode| Response::builder().status(status).body(Bytes::new()).unwrap();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // The host's own 404 (no function's route) has an empty body.
        let candidates: Vec<&Function> = self
            .functions
            .iter()
            .filter(|f| f.http.as_ref().is_some_and(|(t, _, _)| template_matches(t, &segments)))
            .collect();
        let Some(function) = candidates.iter().find(|f| {
            let (_, methods, _) = f.http.as_ref().unwrap();
            methods.is_empty() || methods.iter().any(|m| m == method.as_str())
        }) else {
            return plain(StatusCode::NOT_FOUND);
        };
        let (_, _, needs_key) = function.http.as_ref().unwrap();
        let query_key = serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
            .unwrap_or_default()
            .into_iter()
            .any(|(k, v)| k == "code" && v == FUNCTION_KEY);
        let header_key = headers.get("x-functions-key").is_some_and(|v| v == FUNCTION_KEY);
        if *needs_key && !(header_key || query_key) {
            return plain(StatusCode::UNAUTHORIZED);
        }
        let chunked = headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked && !headers.contains_key("content-length") {
            // The body is not copied (no Content-Length) but the `Transfer-Encoding: chunked`
            // header is, and .NET's HttpClient refuses to send a chunked request without
            // content ("'Transfer-Encoding: chunked' header can not be used when content object
            // is not specified"): the invocation fails and the client gets a bare 500. The
            // gateway policy answers 411 before this.
            return plain(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let (port, limit, front_end) = {
            let g = self.inner.lock().unwrap();
            (g.port, g.function_timeout, g.front_end_limit)
        };
        let url = if query.is_empty() {
            format!("http://127.0.0.1:{port}{path}")
        } else {
            format!("http://127.0.0.1:{port}{path}?{query}")
        };
        let mut req = self.client.request(method, url);
        let has_length = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        for (name, value) in &headers {
            // Content headers travel with a body only; hop-by-hop framing is the client's own.
            let n = name.as_str();
            if matches!(n, "host" | "content-length" | "connection") || (n.starts_with("content-") && !has_length) {
                continue;
            }
            req = req.header(name, value);
        }
        req = req
            .header("x-azure-functions-hostversion", "4.1036.2")
            .header("x-azure-functions-invocationid", uuid::Uuid::new_v4().to_string());
        if has_length {
            req = req.body(body);
        }
        let answer = async {
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            // Read whole before answering, as the host does.
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, bytes))
        };
        let answer = tokio::spawn(answer);
        let outcome = tokio::time::timeout(limit.min(front_end), answer).await;
        if outcome.is_err() && front_end < limit {
            // The front end gives up first; the invocation runs on in the host.
            return plain(StatusCode::INTERNAL_SERVER_ERROR);
        }
        match outcome.map(|joined| joined.expect("the forwarding task")) {
            Ok(Ok((status, headers, bytes))) => {
                let mut out = Response::builder().status(status.as_u16());
                for (name, value) in &headers {
                    if !matches!(name.as_str(), "transfer-encoding" | "connection" | "content-length") {
                        out = out.header(name.as_str(), value.as_bytes());
                    }
                }
                out.body(bytes).unwrap()
            }
            Ok(Err(_)) => plain(StatusCode::INTERNAL_SERVER_ERROR),
            Err(_) => {
                restart(&self.inner, format!("{} passed functionTimeout", function.name)).await;
                plain(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}
