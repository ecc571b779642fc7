//! A loopback Service Bus namespace with the Functions host behind it.
//!
//! No Service Bus emulator runs here. This server plays the namespace by its documented REST
//! contract: it checks the exact "Send Message" request (`POST /{queue}/messages`, a
//! `SharedAccessSignature` whose HMAC it recomputes, `Content-Type`, `BrokerProperties` with
//! `MessageId`, the JSON body) and answers with the documented statuses (201, 401, 404,
//! 429/503 with `Retry-After`, or whatever a test scripts). Like a queue with duplicate
//! detection, it keeps one message per `MessageId`; it honours `ScheduledEnqueueTimeUtc` (the
//! message becomes visible at that time). When asked to, it also plays the Functions host's
//! Service Bus trigger (see `host.rs` for the sources): each visible message is POSTed to the
//! app's `/ProcessInvoiceOcr` in the host's invocation shape, at most `max_concurrent_calls` at
//! once (host.json); a 2xx completes it; any other answer abandons it, which makes it visible
//! again at once with its delivery count raised; past `MaxDeliveryCount` (10, the queue's
//! setting in `servicebus.bicep`) it is dead-lettered.
//!
//! Like the production namespace (`disableLocalAuth: true`, servicebus.bicep), it can take only
//! Entra tokens ([`service_bus_for_identity`]): a `Bearer` token the loopback managed-identity
//! endpoint issued for `https://servicebus.azure.net`, and a SAS is refused with 401. Its
//! trigger's concurrency is then the app setting the Bicep computes
//! (`AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls`, which overrides
//! host.json: *functions-host-json*, "Override host.json values").
//!
//! Where it differs from Service Bus: one queue, in memory; no lock expiry or renewal (the
//! invocation holds the message until it answers); no sessions, TTL or transactions; scheduled
//! messages wait on this process's clock; tokens are checked against the identity endpoint's
//! record, not as signed JWTs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{Response, StatusCode};

pub const SB_KEY: &str = "bG9jYWwtdGVzdC1rZXk=";
const MAX_DELIVERY_COUNT: u32 = 10;

#[derive(Default, Clone)]
pub struct Namespace {
    /// Statuses to answer before accepting (each with an optional Retry-After).
    pub script: Vec<(u16, Option<&'static str>)>,
    /// Accepted messages by MessageId: (broker properties, body).
    pub accepted: BTreeMap<String, (Value, Value)>,
    /// Send requests received, accepted or not.
    pub requests: usize,
    pub refused: Vec<String>,
    /// Invocations of the app's trigger: (MessageId, delivery count, status answered).
    pub deliveries: Vec<(String, u32, u16)>,
    /// The app's port, once known, when messages are delivered to it.
    pub deliver_to: Option<u16>,
    /// Messages dead-lettered after `MaxDeliveryCount` failed deliveries: (MessageId, body).
    pub dead_letters: Vec<(String, Value)>,
    /// Messages completed (the trigger answered 2xx).
    pub completed: Vec<String>,
    /// Scheduled messages accepted: (MessageId, the enqueue time asked for).
    pub scheduled: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Invocations in flight now, and the most ever at once (the trigger's concurrency at work).
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Accepted while nobody was delivering: handed to the trigger by `start_delivering`.
    pending: Vec<(String, Value, Option<chrono::DateTime<chrono::Utc>>)>,
}

pub struct ServiceBus {
    pub endpoint: String,
    pub state: Arc<Mutex<Namespace>>,
    slots: Arc<tokio::sync::Semaphore>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ServiceBus {
    pub fn connection_string(&self) -> String {
        format!("Endpoint={}/;SharedAccessKeyName=send;SharedAccessKey={SB_KEY}", self.endpoint)
    }

    /// A copy of the namespace's state, to assert on without holding the lock.
    pub fn snapshot(&self) -> Namespace {
        self.state.lock().unwrap().clone()
    }

    /// Plays the Functions host's trigger from now on: delivers to the app on `port` every
    /// message accepted so far and every later one.
    pub fn start_delivering(&self, port: u16) {
        let pending = {
            let mut ns = self.state.lock().unwrap();
            ns.deliver_to = Some(port);
            std::mem::take(&mut ns.pending)
        };
        for (id, body, at) in pending {
            tokio::spawn(deliver(self.state.clone(), self.slots.clone(), id, body, at));
        }
    }

    /// Refuse the next sends with these statuses.
    pub fn script(&self, script: Vec<(u16, Option<&'static str>)>) {
        self.state.lock().unwrap().script = script;
    }

    /// Accepted message bodies, in MessageId order.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.values().map(|(_, b)| b.clone()).collect()
    }
}

/// How the namespace authenticates senders.
#[derive(Clone)]
pub enum BusAuth {
    /// Shared access signatures (local use: the emulator-free contract tests).
    Sas,
    /// Only tokens this identity endpoint issued for Service Bus (the production namespace).
    ManagedIdentity(super::IssuedTokens),
}

fn verify(auth: &BusAuth, header: &str) -> Result<(), String> {
    match auth {
        BusAuth::Sas => verify_sas(header),
        BusAuth::ManagedIdentity(issued) => {
            let token = header.strip_prefix("Bearer ").ok_or("local authentication is disabled")?;
            match issued.lock().unwrap().get(token) {
                Some((resource, _)) if resource == "https://servicebus.azure.net" => Ok(()),
                Some((resource, _)) => Err(format!("a token for {resource}")),
                None => Err("a token the identity did not issue".into()),
            }
        }
    }
}

pub fn verify_sas(auth: &str) -> Result<(), String> {
    let rest = auth.strip_prefix("SharedAccessSignature ").ok_or("not a SAS")?;
    let parts: BTreeMap<&str, &str> = rest.split('&').filter_map(|p| p.split_once('=')).collect();
    let (sr, sig, se, skn) =
        (parts.get("sr").ok_or("sr")?, parts.get("sig").ok_or("sig")?, parts.get("se").ok_or("se")?, parts.get("skn"));
    if skn != Some(&"send") {
        return Err("wrong key name".into());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SB_KEY.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let got: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("s={sig}")).unwrap()[0].1.clone();
    if got != expected {
        return Err("bad signature".into());
    }
    if se.parse::<i64>().map_err(|_| "se")? < chrono::Utc::now().timestamp() {
        return Err("expired".into());
    }
    Ok(())
}

/// The Functions host's concurrency for Service Bus triggers (host.json
/// `extensions.serviceBus.maxConcurrentCalls`), shared by every message of one namespace.
fn max_concurrent_calls() -> usize {
    let host: Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../function-app/host.json"))
            .expect("host.json"),
    )
    .expect("host.json is JSON");
    host["extensions"]["serviceBus"]["maxConcurrentCalls"].as_u64().unwrap_or(16) as usize
}

/// Delivers one message to the app's trigger as the Functions host does: waits until its
/// scheduled time, takes one of the concurrent-call slots, and redelivers while the app fails
/// the invocation, then dead-letters it.
async fn deliver(
    state: Arc<Mutex<Namespace>>,
    slots: Arc<tokio::sync::Semaphore>,
    id: String,
    body: Value,
    visible_at: Option<chrono::DateTime<chrono::Utc>>,
) {
    if let Some(at) = visible_at {
        // The message is invisible until its scheduled enqueue time (the broker's clock).
        let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
    let client = reqwest::Client::new();
    for count in 1..=MAX_DELIVERY_COUNT {
        let Some(port) = state.lock().unwrap().deliver_to else { return };
        let status = {
            let _slot = slots.acquire().await.expect("open");
            {
                let mut ns = state.lock().unwrap();
                ns.in_flight += 1;
                ns.max_in_flight = ns.max_in_flight.max(ns.in_flight);
            }
            let payload = super::host::service_bus_invocation("ProcessInvoiceOcr", &id, count, &body);
            let status =
                match super::host::invocation_request(&client, port, "ProcessInvoiceOcr", &payload).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
            state.lock().unwrap().in_flight -= 1;
            status
        };
        let mut ns = state.lock().unwrap();
        ns.deliveries.push((id.clone(), count, status));
        if (200..300).contains(&status) {
            ns.completed.push(id);
            return;
        }
        // Abandoned: visible again at once, delivery count + 1.
    }
    state.lock().unwrap().dead_letters.push((id, body));
}

/// `ScheduledEnqueueTimeUtc` as the REST API takes it: an RFC 1123 date.
fn scheduled_time(broker: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = broker.get("ScheduledEnqueueTimeUtc")?.as_str()?;
    chrono::DateTime::parse_from_rfc2822(&s.replace("GMT", "+0000")).ok().map(|t| t.with_timezone(&chrono::Utc))
}

pub async fn service_bus(script: Vec<(u16, Option<&'static str>)>) -> ServiceBus {
    service_bus_with(script, BusAuth::Sas, max_concurrent_calls()).await
}

/// The production namespace's shape: Entra tokens from `identity` only, and the trigger's
/// concurrency the app setting gives (`concurrency`).
pub async fn service_bus_for_identity(identity: &super::IdentityEndpoint, concurrency: usize) -> ServiceBus {
    service_bus_with(vec![], BusAuth::ManagedIdentity(identity.issued.clone()), concurrency).await
}

async fn service_bus_with(script: Vec<(u16, Option<&'static str>)>, auth: BusAuth, concurrency: usize) -> ServiceBus {
    let state = Arc::new(Mutex::new(Namespace { script, ..Default::default() }));
    let s = state.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let route_slots = slots.clone();
    let route = warp::post()
        .and(warp::path!(String / "messages"))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |queue: String, headers: warp::http::HeaderMap, body: Bytes| {
            let mut ns = s.lock().unwrap();
            ns.requests += 1;
            let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let reply = |status: u16, retry: Option<&str>| {
                let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
                if let Some(ra) = retry {
                    r = r.header("retry-after", ra);
                }
                r.body(Bytes::new()).unwrap()
            };
            if let Err(e) = verify(&auth, &h("authorization")) {
                ns.refused.push(e);
                return reply(401, None);
            }
            if queue != "invoice-ocr" {
                return reply(404, None);
            }
            if !ns.script.is_empty() {
                let (status, retry) = ns.script.remove(0);
                return reply(status, retry);
            }
            let broker: Value = serde_json::from_str(&h("brokerproperties")).unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = broker["MessageId"].as_str().unwrap_or_default().to_owned();
            // The event's own id, or `{id}~r{n}` for its n-th copy put back after a failure.
            let expected = match body["requeued"].as_u64() {
                Some(n) if n > 0 => format!("{}~r{n}", body["messageId"].as_str().unwrap_or_default()),
                _ => body["messageId"].as_str().unwrap_or_default().to_owned(),
            };
            if id.is_empty() || h("content-type") != "application/json" || id != expected {
                ns.refused.push(format!("malformed: {broker} {body}"));
                return reply(400, None);
            }
            let visible_at = scheduled_time(&broker);
            if broker.get("ScheduledEnqueueTimeUtc").is_some() && visible_at.is_none() {
                ns.refused.push(format!("bad ScheduledEnqueueTimeUtc: {broker}"));
                return reply(400, None);
            }
            if !ns.accepted.contains_key(&id) {
                ns.accepted.insert(id.clone(), (broker, body.clone()));
                if let Some(at) = visible_at {
                    ns.scheduled.push((id.clone(), at));
                }
                if ns.deliver_to.is_some() {
                    tokio::spawn(deliver(s.clone(), route_slots.clone(), id, body, visible_at));
                } else {
                    ns.pending.push((id, body, visible_at));
                }
            }
            reply(201, None)
        });
    let (port, tx) = super::serve_loopback(route).await;
    ServiceBus { endpoint: format!("http://127.0.0.1:{port}"), state, slots, _stop: tx }
}

/// An OCR event as a registration produces it, for publisher tests that need no product.
pub fn sample_event() -> warranty::domain::OcrRequested {
    serde_json::from_value(json!({
        "messageId": "0190a0b0-0000-7000-8000-000000000001:invoice:1",
        "productId": "0190a0b0-0000-7000-8000-000000000001",
        "userId": "alice",
        "invoiceLocation": "0190a0b0-0000-7000-8000-000000000001.v1.pdf",
        "invoiceContentType": "application/pdf",
        "invoiceSha256": "00",
        "invoiceVersion": 1,
        "requestedAt": "2026-11-24T10:00:00Z"
    }))
    .unwrap()
}
