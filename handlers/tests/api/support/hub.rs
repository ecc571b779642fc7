//! A loopback Azure Notification Hub.
//!
//! No Notification Hubs emulator exists. This server plays one hub by its documented REST
//! contract (api-version 2015-01): it checks the SAS `Authorization` (recomputing its HMAC, and
//! that it is scoped to the hub's URL), the installation JSON of `PUT /{hub}/installations/{id}`
//! (id, platform, push channel, the user tag, a template with every placeholder), `DELETE` of
//! one, and the template send `POST /{hub}/messages/` (`Content-Type`,
//! `ServiceBusNotification-Format: template`, `ServiceBusNotification-Tags:
//! $InstallationId:{id}`, a body of string properties). Sends can be scripted to answer
//! 429/5xx (with `Retry-After`) or 410 before the hub accepts again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use warp::Filter;
use warp::http::{HeaderMap, Method, Response};

use super::{SB_KEY, verify_sas};

pub const HUB: &str = "warranty";

#[derive(Default, Clone)]
pub struct HubState {
    /// Installations by id: the JSON the app PUT.
    pub installations: BTreeMap<String, Value>,
    /// Template sends the hub accepted: (installation id, body).
    pub sent: Vec<(String, Value)>,
    /// Answers to give the next sends to an installation before accepting: (status,
    /// Retry-After), by installation id.
    pub send_script: BTreeMap<String, VecDeque<(u16, Option<&'static str>)>>,
    /// Requests that broke the contract, with why.
    pub refused: Vec<String>,
    /// Every send request, accepted or not.
    pub send_requests: usize,
    /// How long the hub takes to answer a send (benchmarks: a hub in another region).
    pub send_latency: Option<std::time::Duration>,
    /// Sends being answered right now, and the most there were at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
}

pub struct Hub {
    pub endpoint: String,
    pub state: Arc<Mutex<HubState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Hub {
    pub fn connection_string(&self) -> String {
        format!("Endpoint={}/;SharedAccessKeyName=send;SharedAccessKey={SB_KEY}", self.endpoint)
    }

    pub fn snapshot(&self) -> HubState {
        self.state.lock().unwrap().clone()
    }

    /// Answer the next sends to `installation` with these statuses.
    pub fn script_sends(&self, installation: &str, answers: &[(u16, Option<&'static str>)]) {
        self.state.lock().unwrap().send_script.insert(installation.to_owned(), answers.iter().copied().collect());
    }
}

fn answer(status: u16, retry_after: Option<&str>) -> Response<Bytes> {
    let mut b = Response::builder().status(status);
    if let Some(r) = retry_after {
        b = b.header("Retry-After", r);
    }
    b.body(Bytes::new()).unwrap()
}

fn check(base: &str, headers: &HeaderMap) -> Result<(), String> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization")?;
    verify_sas(auth)?;
    let expected_sr = serde_urlencoded::to_string([("x", format!("{base}/{HUB}").to_lowercase())]).unwrap();
    if !auth.contains(&format!("sr={}&", &expected_sr[2..])) {
        return Err(format!("the token is not scoped to the hub: {auth}"));
    }
    Ok(())
}

fn handle(
    state: &Arc<Mutex<HubState>>,
    base: &str,
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response<Bytes>, String> {
    check(base, headers)?;
    if query != "api-version=2015-01" {
        return Err(format!("query {query}"));
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::PUT, [HUB, "installations", id]) => {
            if !header("content-type").starts_with("application/json") {
                return Err("installation without JSON content type".into());
            }
            let inst: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let ok = inst["installationId"] == *id
                && matches!(inst["platform"].as_str(), Some("fcmv1" | "apns"))
                && inst["pushChannel"].as_str().is_some_and(|c| !c.is_empty())
                && inst["tags"]
                    .as_array()
                    .is_some_and(|t| t.len() == 1 && t[0].as_str().unwrap_or("").starts_with("user-"))
                && inst["templates"]["reminder"]["body"].as_str().is_some_and(|t| {
                    ["$(title)", "$(body)", "$(productId)", "$(reminderId)"].iter().all(|p| t.contains(p))
                });
            if !ok {
                return Err(format!("installation breaks the contract: {inst}"));
            }
            state.lock().unwrap().installations.insert(id.to_string(), inst);
            Ok(answer(200, None))
        }
        (Method::DELETE, [HUB, "installations", id]) => {
            state.lock().unwrap().installations.remove(*id);
            Ok(answer(204, None))
        }
        (Method::POST, [HUB, "messages", ""]) => {
            if header("content-type") != "application/json;charset=utf-8" {
                return Err(format!("send content type {}", header("content-type")));
            }
            if header("servicebusnotification-format") != "template" {
                return Err("send without template format".into());
            }
            let tags = header("servicebusnotification-tags");
            let Some(id) = tags.strip_prefix("$InstallationId:") else {
                return Err(format!("send tags {tags}"));
            };
            let msg: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            let strings = msg.as_object().is_some_and(|o| o.values().all(Value::is_string));
            if !strings || ["title", "body", "productId", "reminderId"].iter().any(|k| msg[k].is_null()) {
                return Err(format!("send body {msg}"));
            }
            let mut s = state.lock().unwrap();
            s.send_requests += 1;
            if let Some((status, retry)) = s.send_script.get_mut(id).and_then(VecDeque::pop_front) {
                return Ok(answer(status, retry));
            }
            s.sent.push((id.to_owned(), msg));
            Ok(answer(201, None))
        }
        (m, p) => Err(format!("unexpected {m} {p:?}")),
    }
}

/// Starts a loopback hub.
pub async fn notification_hub() -> Hub {
    let state = Arc::new(Mutex::new(HubState::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (st, base) = (state.clone(), endpoint.clone());
    let route = super::whole_request().then(
        move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
            let (st, base) = (st.clone(), base.clone());
            async move {
                let latency = st.lock().unwrap().send_latency;
                if let (Some(latency), &Method::POST) = (latency, &method) {
                    {
                        let mut s = st.lock().unwrap();
                        s.in_flight += 1;
                        s.max_in_flight = s.max_in_flight.max(s.in_flight);
                    }
                    tokio::time::sleep(latency).await;
                    st.lock().unwrap().in_flight -= 1;
                }
                match handle(&st, &base, method, path.as_str(), &query, &headers, &body) {
                    Ok(r) => r,
                    Err(why) => {
                        st.lock().unwrap().refused.push(why);
                        answer(400, None)
                    }
                }
            }
        },
    );
    let stop = super::serve_listener(listener, route);
    Hub { endpoint, state, _stop: stop }
}
