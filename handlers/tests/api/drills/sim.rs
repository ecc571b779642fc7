//! A simulated Azure + GitHub control plane for the release drills.
//!
//! No Azure subscription, registry or GitHub repository is reachable here, so one loopback
//! server plays all of them by their documented REST contracts, with state:
//! - **ARM** `Microsoft.Web/sites` (+ `/slots/staging`): `GET` the site (`defaultHostName`,
//!   `state`), `GET`/`PATCH` `config/web` (`linuxFxVersion = DOCKER|<image>`), `POST
//!   host/default/listkeys`, `applySlotConfig`, `resetSlotConfig`, and `slotsswap` as a
//!   long-running operation (`202` + `Location` + `Retry-After`, polled until `200`); the
//!   Application Insights component (`properties.AppId`, `ConnectionString`) and its
//!   `Annotations`. Every call needs `Authorization: Bearer` and an `api-version`.
//! - **ACR**: `/oauth2/exchange` (Entra token → refresh token), `/oauth2/token` (→ repository
//!   scoped access token), `/v2/{repo}/manifests/{tag}` (`Docker-Content-Digest`, `404
//!   MANIFEST_UNKNOWN`), `/v2/{repo}/blobs/{config}` (labels with the revision).
//! - **Application Insights** query API `/v1/apps/{appId}/query` (tables/columns/rows), computed
//!   from which image served production when (the `datetime(...)` the query starts at), and
//!   ingestion `/v2.1/track`.
//! - **GitHub** deployments, deployment statuses (a `success` marks older ones `inactive`, as
//!   GitHub's `auto_inactive` does) and issues.
//!
//! The app behind each slot is the real `warranty` binary on a loopback port, started with
//! the image's revision (`WARRANTY_DEV_REVISION`), so health checks and smoke tests are real
//! requests. An image that "does not start" is the binary with a setting it refuses at start.
//! A swap exchanges the slots' running apps; a slot's `defaultHostName` names the port of the
//! app it currently runs (Azure keeps the host name and re-routes; the effect for a client
//! that re-reads it is the same).
//!
//! Time is a [`SimClock`]: the procedures' waits advance it instantly, and each control-plane
//! call advances it by a latency in the range Azure documents or shows (config change with
//! restart 40 s, swap 90 s, other ARM calls 2 s, queries 3 s, GitHub 0.5 s).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode};

pub const SUB: &str = "00000000-0000-0000-0000-00000000000a";
pub const RG: &str = "rg-warranty-prod";
pub const APP: &str = "warranty-prod";
pub const REGISTRY: &str = "warrantyacr.azurecr.io";
pub const REPOSITORY: &str = "warranty";
pub const GITHUB_REPO: &str = "contoso/warranty";
pub const AI_APP_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const FUNCTION_KEY: &str = "sim-function-key";

pub fn ai_component() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Insights/components/warranty-prod-ai")
}

fn site_path() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{APP}")
}

/// Virtual time: real elapsed time plus every simulated wait and latency.
pub struct SimClock {
    base: DateTime<Utc>,
    started: Instant,
    offset: Mutex<Duration>,
}

impl SimClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: "2026-11-27T14:00:00Z".parse().unwrap(),
            started: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
    pub fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().unwrap();
        self.base + chrono::Duration::from_std(self.started.elapsed() + offset).unwrap()
    }
}

#[async_trait]
impl warranty::ops::release::Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        SimClock::now(self)
    }
    async fn sleep(&self, d: Duration) {
        self.advance(d);
        tokio::task::yield_now().await;
    }
}

/// How an image behaves once running.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Starts and answers `/api/health`.
    pub starts: bool,
    /// Production traffic it serves: requests per second, share failed (5xx), p95 latency.
    pub rps: f64,
    pub failure_rate: f64,
    pub p95_ms: f64,
}

pub const GOOD: Behaviour = Behaviour { starts: true, rps: 20.0, failure_rate: 0.002, p95_ms: 140.0 };
/// Healthy at start, but slow under production traffic.
pub const SLOW: Behaviour = Behaviour { starts: true, rps: 20.0, failure_rate: 0.01, p95_ms: 1450.0 };
pub const BROKEN_START: Behaviour = Behaviour { starts: false, rps: 0.0, failure_rate: 0.0, p95_ms: 0.0 };

#[derive(Debug, Clone)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub revision: String,
    pub behaviour: Behaviour,
}

struct RunningApp {
    port: u16,
    _child: tokio::process::Child,
    _data: tempfile::TempDir,
}

#[derive(Default)]
struct SlotState {
    image: Option<String>,
    app: Option<RunningApp>,
}

/// One change to a slot, as the control plane saw it.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub at: DateTime<Utc>,
    /// The caller's token (each drill run uses its own).
    pub caller: String,
    pub what: String,
}

#[derive(Default)]
pub struct World {
    pub images: Vec<Image>,
    production: SlotState,
    staging: SlotState,
    /// Which image served production from when.
    pub timeline: Vec<(DateTime<Utc>, Option<String>)>,
    /// Every production request breaches (a dependency outage: not the release's fault).
    pub outage: bool,
    swaps: BTreeMap<String, DateTime<Utc>>,
    pub preview_applied: bool,
    pub mutations: Vec<Mutation>,
    pub deployments: Vec<Value>,
    pub statuses: BTreeMap<u64, Vec<Value>>,
    pub issues: Vec<Value>,
    pub annotations: Vec<Value>,
    pub events: Vec<Value>,
    pub queries: Vec<String>,
    /// Answer the next call whose path contains the key with this status.
    pub fail_next: Vec<(String, u16)>,
}

pub struct ControlPlaneSim {
    pub url: String,
    pub clock: Arc<SimClock>,
    pub world: Arc<Mutex<World>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn digest_of(repository: &str, tag: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(format!("{repository}:{tag}").as_bytes())))
}

pub fn revision_of(tag: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(tag.as_bytes()))[..40].to_owned()
}

pub fn image_ref(digest: &str) -> String {
    format!("{REGISTRY}/{REPOSITORY}@{digest}")
}

impl ControlPlaneSim {
    pub async fn start(clock: Arc<SimClock>) -> Self {
        let world = Arc::new(Mutex::new(World::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared =
            Arc::new(Shared { world: world.clone(), clock: clock.clone(), me: format!("http://127.0.0.1:{port}") });
        let filter = crate::support::whole_request().then(
            move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(&shared, method, path.as_str(), &query, &headers, &body).await }
            },
        );
        let stop = crate::support::serve_listener(listener, filter);
        Self { url: format!("http://127.0.0.1:{port}"), clock, world, _stop: stop }
    }

    /// Pushes an image to the registry; returns its digest.
    pub fn push(&self, repository: &str, tag: &str, behaviour: Behaviour) -> String {
        let digest = digest_of(repository, tag);
        self.world.lock().unwrap().images.push(Image {
            repository: repository.into(),
            tag: tag.into(),
            digest: digest.clone(),
            revision: revision_of(tag),
            behaviour,
        });
        digest
    }

    /// Puts an image on a slot directly (the state before the drill), its app started.
    pub async fn seed_slot(&self, production: bool, digest: &str) {
        let image = image_ref(digest);
        let app = start_app(&self.world, &image).await;
        let mut w = self.world.lock().unwrap();
        let slot = if production { &mut w.production } else { &mut w.staging };
        slot.image = Some(image.clone());
        slot.app = app;
        if production {
            let at = self.clock.now() - chrono::Duration::hours(2);
            w.timeline.push((at, Some(image)));
        }
    }

    /// A past production deployment with its statuses (`(state, minutes after creation)`).
    pub fn seed_deployment(&self, tag: &str, hours_ago: i64, states: &[(&str, i64)]) -> u64 {
        let mut w = self.world.lock().unwrap();
        let id = 100 + w.deployments.len() as u64;
        let created = self.clock.now() - chrono::Duration::hours(hours_ago);
        w.deployments.push(json!({
            "id": id, "sha": revision_of(tag), "ref": revision_of(tag), "environment": "production",
            "created_at": created, "description": format!("warranty {tag}"),
            "payload": { "imageTag": tag, "digest": digest_of(REPOSITORY, tag) },
        }));
        let statuses = states
            .iter()
            .map(|(s, m)| json!({"state": s, "created_at": created + chrono::Duration::minutes(*m)}))
            .collect();
        w.statuses.insert(id, statuses);
        id
    }

    pub fn slot_image(&self, production: bool) -> Option<String> {
        let w = self.world.lock().unwrap();
        if production { w.production.image.clone() } else { w.staging.image.clone() }
    }

    /// `/api/health` of the app serving a slot now, over real HTTP.
    pub async fn slot_health(&self, production: bool) -> Option<Value> {
        let port = {
            let w = self.world.lock().unwrap();
            let slot = if production { &w.production } else { &w.staging };
            slot.app.as_ref()?.port
        };
        let resp = reqwest::get(format!("http://127.0.0.1:{port}/api/health")).await.ok()?;
        resp.json().await.ok()
    }

    /// The states a deployment went through, oldest first.
    pub fn states(&self, id: u64) -> Vec<String> {
        let w = self.world.lock().unwrap();
        w.statuses.get(&id).into_iter().flatten().map(|s| s["state"].as_str().unwrap().to_owned()).collect()
    }

    pub fn deployment_by_tag(&self, tag: &str) -> Vec<u64> {
        let w = self.world.lock().unwrap();
        w.deployments.iter().filter(|d| d["payload"]["imageTag"] == tag).map(|d| d["id"].as_u64().unwrap()).collect()
    }

    pub fn mutations(&self) -> Vec<Mutation> {
        self.world.lock().unwrap().mutations.clone()
    }
}

/// Starts the image's app: the real binary with the image's revision, or one that refuses to
/// start. Waits (really) until it is ready or has exited.
async fn start_app(world: &Arc<Mutex<World>>, image: &str) -> Option<RunningApp> {
    let found = {
        let w = world.lock().unwrap();
        w.images.iter().find(|i| image.ends_with(&i.digest)).cloned()
    };
    let image = found?;
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warranty"));
    cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", data.path())
        .env("WARRANTY_DEV_JWT_SECRET", "drill-secret")
        .env("WARRANTY_DEV_REVISION", &image.revision)
        .env_remove("WARRANTY_JWKS_URL")
        .env_remove("WARRANTY_JWKS_FILE")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if !image.behaviour.starts {
        // A release whose configuration the binary refuses at start: it exits at once.
        cmd.env("WARRANTY_DEFAULT_MONTHS", "0");
    }
    let mut child = cmd.arg("serve").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Until its stores are connected, as a slot's warm-up waits (the handler answers `/`
        // from the moment it listens, "starting" until then).
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/")).await
            && r.text().await.is_ok_and(|t| t.contains("handler ready"))
        {
            break;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(RunningApp { port, _child: child, _data: data })
}

fn reply(status: u16, body: Value) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(if body.is_null() { String::new() } else { body.to_string() }));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn arm_error(status: u16, code: &str, message: &str) -> Response<Bytes> {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::to_owned)
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// Requests, failures and p95 of production from `since` to now, from the timeline.
fn telemetry(w: &World, since: DateTime<Utc>, now: DateTime<Utc>) -> (f64, f64, Option<f64>) {
    let mut total = 0.0;
    let mut failed = 0.0;
    let mut segments = Vec::new();
    for (i, (from, image)) in w.timeline.iter().enumerate() {
        let to = w.timeline.get(i + 1).map_or(now, |(t, _)| *t);
        let (a, b) = ((*from).max(since), to.min(now));
        if b <= a {
            continue;
        }
        let secs = (b - a).num_milliseconds() as f64 / 1000.0;
        let behaviour = image
            .as_ref()
            .and_then(|img| w.images.iter().find(|i| img.ends_with(&i.digest)))
            .map(|i| i.behaviour)
            .unwrap_or(BROKEN_START);
        let (rate, p95) = if w.outage { (0.3, 2400.0) } else { (behaviour.failure_rate, behaviour.p95_ms) };
        let n = (behaviour.rps * secs).floor();
        total += n;
        failed += (n * rate).round();
        segments.push((n, p95));
    }
    // The p95 of the mix: the slowest segment that carries at least a tenth of the requests.
    let p95 = segments.iter().filter(|(n, _)| *n >= total * 0.1 && *n > 0.0).map(|(_, p)| *p).reduce(f64::max);
    (total, failed, p95)
}

struct Shared {
    world: Arc<Mutex<World>>,
    clock: Arc<SimClock>,
    me: String,
}

async fn handle(
    shared: &Shared,
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Bytes> {
    let (world, clock, me) = (&shared.world, &shared.clock, shared.me.as_str());
    {
        let mut w = world.lock().unwrap();
        if let Some(i) = w.fail_next.iter().position(|(k, _)| path.contains(k.as_str())) {
            let (_, status) = w.fail_next.remove(i);
            let mut r = arm_error(status, "Scripted", "scripted failure");
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            return r;
        }
    }
    let token = bearer(headers);
    // ACR's token endpoints take a form, not a bearer token.
    if path == "/oauth2/exchange" {
        let f = form(body);
        if f.get("grant_type").map(String::as_str) != Some("access_token")
            || f.get("service").map(String::as_str) != Some(REGISTRY)
            || !f.get("access_token").is_some_and(|t| t.starts_with("sim-token"))
        {
            return reply(401, json!({"errors": [{"code": "UNAUTHORIZED"}]}));
        }
        return reply(200, json!({"refresh_token": "sim-acr-refresh"}));
    }
    if path == "/oauth2/token" {
        let f = form(body);
        let scope = f.get("scope").cloned().unwrap_or_default();
        if f.get("refresh_token").map(String::as_str) != Some("sim-acr-refresh") || !scope.ends_with(":pull") {
            return reply(401, json!({"errors": [{"code": "UNAUTHORIZED"}]}));
        }
        let repo = scope.trim_start_matches("repository:").trim_end_matches(":pull");
        return reply(200, json!({"access_token": format!("sim-acr-access:{repo}")}));
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        return registry(world, rest, token.as_deref());
    }
    if path.starts_with("/repos/") {
        if token.as_deref() != Some("gh-token") {
            return reply(401, json!({"message": "Bad credentials"}));
        }
        clock.advance(Duration::from_millis(500));
        return github(world, clock, &method, path, query, body);
    }
    if path == "/v2.1/track" {
        if !token.as_deref().is_some_and(|t| t.starts_with("sim-token")) {
            return reply(401, json!({}));
        }
        let events: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        world.lock().unwrap().events.extend(events.as_array().cloned().unwrap_or_default());
        return reply(200, json!({"itemsReceived": 1, "itemsAccepted": 1}));
    }
    if let Some(rest) = path.strip_prefix("/v1/apps/") {
        if !token.as_deref().is_some_and(|t| t.starts_with("sim-token")) || rest != format!("{AI_APP_ID}/query") {
            return reply(401, json!({"error": {"code": "InvalidAuthenticationToken"}}));
        }
        clock.advance(Duration::from_secs(3));
        let q: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let kql = q["query"].as_str().unwrap_or_default().to_owned();
        let since = kql
            .split_once("datetime(")
            .and_then(|(_, r)| r.split_once(')'))
            .and_then(|(t, _)| t.parse::<DateTime<Utc>>().ok());
        let Some(since) = since else {
            return reply(400, json!({"error": {"code": "BadArgumentError", "message": "no start time"}}));
        };
        let mut w = world.lock().unwrap();
        w.queries.push(kql);
        let (total, failed, p95) = telemetry(&w, since, clock.now());
        let rows = if total == 0.0 { json!([]) } else { json!([[total as u64, failed as u64, p95]]) };
        return reply(
            200,
            json!({"tables": [{"name": "PrimaryResult", "columns": [
                {"name": "total", "type": "long"}, {"name": "failed", "type": "long"}, {"name": "p95", "type": "real"}],
                "rows": rows}]}),
        );
    }
    // Everything else is Azure Resource Manager.
    if !token.as_deref().is_some_and(|t| t.starts_with("sim-token")) {
        return arm_error(401, "AuthenticationFailed", "no bearer token");
    }
    if !query.contains("api-version=") {
        return arm_error(400, "MissingApiVersionParameter", "api-version is required");
    }
    let caller = token.unwrap_or_default();
    clock.advance(Duration::from_secs(2));
    arm(world, clock, me, &method, path, body, &caller).await
}

fn registry(world: &Arc<Mutex<World>>, rest: &str, token: Option<&str>) -> Response<Bytes> {
    let w = world.lock().unwrap();
    let (repo, kind, reference) = match rest.split_once("/manifests/") {
        Some((repo, tag)) => (repo, "manifest", tag),
        None => match rest.split_once("/blobs/") {
            Some((repo, d)) => (repo, "blob", d),
            None => return reply(404, json!({"errors": [{"code": "NAME_UNKNOWN"}]})),
        },
    };
    if token != Some(format!("sim-acr-access:{repo}").as_str()) {
        return reply(
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "scope does not cover this repository"}]}),
        );
    }
    if kind == "manifest" {
        let Some(image) =
            w.images.iter().find(|i| i.repository == repo && (i.tag == reference || i.digest == reference))
        else {
            return reply(
                404,
                json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest tagged by \"{reference}\" is not found"}]}),
            );
        };
        let mut r = reply(
            200,
            json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:cfg{}", &image.digest[7..]), "size": 1},
                "layers": []
            }),
        );
        r.headers_mut().insert("docker-content-digest", image.digest.parse().unwrap());
        r.headers_mut().insert("content-type", "application/vnd.oci.image.manifest.v1+json".parse().unwrap());
        return r;
    }
    match w.images.iter().find(|i| i.repository == repo && reference == format!("sha256:cfg{}", &i.digest[7..])) {
        Some(image) => reply(
            200,
            json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {
                "org.opencontainers.image.revision": image.revision,
                "org.opencontainers.image.version": image.tag,
            }}}),
        ),
        None => reply(404, json!({"errors": [{"code": "BLOB_UNKNOWN"}]})),
    }
}

fn github(
    world: &Arc<Mutex<World>>,
    clock: &SimClock,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<Bytes> {
    let Some(rest) = path.strip_prefix(&format!("/repos/{GITHUB_REPO}")) else {
        return reply(404, json!({"message": "Not Found"}));
    };
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut w = world.lock().unwrap();
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["deployments"]) => {
            let env = form(query.as_bytes()).get("environment").cloned();
            let mut list: Vec<Value> = w
                .deployments
                .iter()
                .filter(|d| env.as_deref().is_none_or(|e| d["environment"] == e))
                .cloned()
                .collect();
            list.sort_by_key(|d| std::cmp::Reverse(d["id"].as_u64()));
            reply(200, Value::Array(list))
        }
        ("POST", ["deployments"]) => {
            if !body["ref"].is_string() || body["environment"] != "production" {
                return reply(422, json!({"message": "Validation Failed"}));
            }
            let id = 100 + w.deployments.len() as u64;
            let mut d = body.clone();
            d["id"] = json!(id);
            d["sha"] = body["ref"].clone();
            d["created_at"] = json!(clock.now());
            w.deployments.push(d.clone());
            w.statuses.insert(id, Vec::new());
            reply(201, d)
        }
        ("GET", ["deployments", id, "statuses"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let mut list = w.statuses.get(&id).cloned().unwrap_or_default();
            list.reverse(); // newest first, as GitHub lists them
            reply(200, Value::Array(list))
        }
        ("POST", ["deployments", id, "statuses"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let state = body["state"].as_str().unwrap_or_default().to_owned();
            let valid = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"];
            if !valid.contains(&state.as_str()) || !w.statuses.contains_key(&id) {
                return reply(422, json!({"message": "Validation Failed"}));
            }
            let now = clock.now();
            if state == "success" {
                // auto_inactive: earlier successful deployments to the environment become inactive.
                let earlier: Vec<u64> = w
                    .statuses
                    .iter()
                    .filter(|(other, s)| **other != id && s.last().is_some_and(|l| l["state"] == "success"))
                    .map(|(other, _)| *other)
                    .collect();
                for other in earlier {
                    w.statuses.get_mut(&other).unwrap().push(json!({"state": "inactive", "created_at": now}));
                }
            }
            let status = json!({"state": state, "created_at": now, "description": body["description"], "log_url": body["log_url"]});
            w.statuses.get_mut(&id).unwrap().push(status.clone());
            reply(201, status)
        }
        ("POST", ["issues"]) => {
            if !body["title"].is_string() {
                return reply(422, json!({"message": "Validation Failed"}));
            }
            let number = 500 + w.issues.len() as u64;
            let mut issue = body.clone();
            issue["number"] = json!(number);
            w.issues.push(issue.clone());
            reply(201, issue)
        }
        _ => reply(404, json!({"message": "Not Found"})),
    }
}

async fn arm(
    world: &Arc<Mutex<World>>,
    clock: &Arc<SimClock>,
    me: &str,
    method: &Method,
    path: &str,
    body: &[u8],
    caller: &str,
) -> Response<Bytes> {
    let component = ai_component();
    if path == component && method == Method::GET {
        return reply(
            200,
            json!({"id": component, "properties": {
                "AppId": AI_APP_ID,
                "ConnectionString": format!("InstrumentationKey=00000000-1111-2222-3333-444444444444;IngestionEndpoint={}/;LiveEndpoint=https://live.invalid/",
                    me),
            }}),
        );
    }
    if path == format!("{component}/Annotations") && method == Method::PUT {
        let a: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let ok = a
            .as_array()
            .is_some_and(|l| l.iter().all(|x| x["AnnotationName"].is_string() && x["EventTime"].is_string()));
        if !ok {
            return arm_error(400, "BadRequest", "annotation needs AnnotationName and EventTime");
        }
        world.lock().unwrap().annotations.extend(a.as_array().cloned().unwrap_or_default());
        return reply(200, a);
    }
    if let Some(op) = path.strip_prefix(&format!("{}/operations/", site_path())) {
        let w = world.lock().unwrap();
        return match w.swaps.get(op) {
            Some(done) if clock.now() >= *done => reply(200, json!({"status": "Succeeded"})),
            Some(_) => {
                let mut r = reply(202, json!({"status": "InProgress"}));
                r.headers_mut().insert("retry-after", "15".parse().unwrap());
                r
            }
            None => arm_error(404, "NotFound", "no such operation"),
        };
    }
    let Some(rest) = path.strip_prefix(&site_path()) else {
        return arm_error(404, "ResourceNotFound", "no such resource");
    };
    let (staging, suffix) = match rest.strip_prefix("/slots/staging") {
        Some(s) => (true, s),
        None => (false, rest),
    };
    let port_of = |w: &World, staging: bool| {
        let slot = if staging { &w.staging } else { &w.production };
        // A stopped or missing app: a port nothing listens on.
        slot.app.as_ref().map_or(9, |a| a.port)
    };
    match (method.as_str(), suffix) {
        ("GET", "") => {
            let w = world.lock().unwrap();
            reply(
                200,
                json!({"name": APP, "properties": {"state": "Running", "defaultHostName": format!("127.0.0.1:{}", port_of(&w, staging))}}),
            )
        }
        ("GET", "/config/web") => {
            let w = world.lock().unwrap();
            let slot = if staging { &w.staging } else { &w.production };
            reply(
                200,
                json!({"properties": {"linuxFxVersion": slot.image.as_ref().map(|i| format!("DOCKER|{i}")).unwrap_or_default()}}),
            )
        }
        ("PATCH", "/config/web") => {
            let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(image) = b["properties"]["linuxFxVersion"].as_str().and_then(|v| v.strip_prefix("DOCKER|")) else {
                return arm_error(400, "BadRequest", "linuxFxVersion must be DOCKER|<image>");
            };
            let image = image.to_owned();
            // The slot restarts on the new image (pull + start).
            clock.advance(Duration::from_secs(40));
            let app = start_app(world, &image).await;
            let mut w = world.lock().unwrap();
            let now = clock.now();
            w.mutations.push(Mutation {
                at: now,
                caller: caller.into(),
                what: format!("{} → {image}", if staging { "staging" } else { "production" }),
            });
            if !staging {
                w.timeline.push((now, Some(image.clone())));
            }
            let slot = if staging { &mut w.staging } else { &mut w.production };
            slot.image = Some(image);
            slot.app = app;
            reply(200, b)
        }
        ("POST", "/host/default/listkeys") => {
            reply(200, json!({"functionKeys": {"default": FUNCTION_KEY}, "masterKey": "sim-master"}))
        }
        ("POST", "/applySlotConfig") if staging => {
            let mut w = world.lock().unwrap();
            w.preview_applied = true;
            w.mutations.push(Mutation { at: clock.now(), caller: caller.into(), what: "swap preview".into() });
            reply(200, Value::Null)
        }
        ("POST", "/resetSlotConfig") if staging => {
            let mut w = world.lock().unwrap();
            w.preview_applied = false;
            w.mutations.push(Mutation { at: clock.now(), caller: caller.into(), what: "swap preview reset".into() });
            reply(200, Value::Null)
        }
        ("POST", "/slotsswap") if staging => {
            let b: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if b["targetSlot"] != "production" {
                return arm_error(400, "BadRequest", "targetSlot must be production");
            }
            let mut w = world.lock().unwrap();
            if w.staging.image.is_none() {
                return arm_error(409, "Conflict", "the staging slot has no content to swap");
            }
            // The swap takes effect when its operation completes (warm-up, then routing).
            let done = clock.now() + chrono::Duration::seconds(90);
            let world_ref = &mut *w;
            std::mem::swap(&mut world_ref.production, &mut world_ref.staging);
            world_ref.preview_applied = false;
            let image = world_ref.production.image.clone();
            world_ref.timeline.push((done, image.clone()));
            world_ref.mutations.push(Mutation {
                at: clock.now(),
                caller: caller.into(),
                what: format!("swap: production → {}", image.unwrap_or_default()),
            });
            let op = format!("swap-{}", world_ref.swaps.len() + 1);
            world_ref.swaps.insert(op.clone(), done);
            let mut r = reply(202, Value::Null);
            let location = format!("{me}{}/operations/{op}?api-version=2024-04-01", site_path());
            r.headers_mut().insert("location", location.parse().unwrap());
            r.headers_mut().insert("retry-after", "30".parse().unwrap());
            r
        }
        _ => arm_error(404, "NotFound", &format!("{method} {path}")),
    }
}
