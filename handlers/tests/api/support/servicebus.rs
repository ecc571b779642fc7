//! A loopback Service Bus namespace with the Functions host behind it.
//!
//! No Service Bus emulator runs here. This server plays the namespace by its documented REST
//! contract: it checks the exact "Send Message" request (`POST /{queue}/messages`, a
//! `SharedAccessSignature` whose HMAC it recomputes, `Content-Type`, `BrokerProperties` with
//! `MessageId`, the JSON body) and answers with the documented statuses (201, 401, 404,
//! 429/503 with `Retry-After`, or whatever a test scripts). Like a queue with duplicate
//! detection, it keeps one message per `MessageId`. When asked to, it also plays the Functions
//! host: each new message is POSTed to the app's `/ProcessInvoiceOcr` in the host's invocation
//! shape, and redelivered while the app answers non-2xx, up to the delivery count.

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
}

pub struct ServiceBus {
    pub endpoint: String,
    pub state: Arc<Mutex<Namespace>>,
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

    /// Refuse the next sends with these statuses.
    pub fn script(&self, script: Vec<(u16, Option<&'static str>)>) {
        self.state.lock().unwrap().script = script;
    }

    /// Accepted message bodies, in MessageId order.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.values().map(|(_, b)| b.clone()).collect()
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

/// Delivers one message to the app's trigger as the Functions host does, redelivering while
/// the app fails the invocation.
async fn deliver(state: Arc<Mutex<Namespace>>, port: u16, id: String, body: Value) {
    let client = reqwest::Client::new();
    for count in 1..=MAX_DELIVERY_COUNT {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let payload = json!({
            "Data": { "message": body.to_string() },
            "Metadata": {
                "MessageId": q(&id),
                "DeliveryCount": count.to_string(),
                "ContentType": q("application/json"),
                "sys": { "MethodName": "ProcessInvoiceOcr", "UtcNow": chrono::Utc::now().to_rfc3339() }
            }
        });
        let status = match client.post(format!("http://127.0.0.1:{port}/ProcessInvoiceOcr")).json(&payload).send().await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        state.lock().unwrap().deliveries.push((id.clone(), count, status));
        if (200..300).contains(&status) {
            return;
        }
        // The host's retry delay (the message's lock expiring), shortened for tests.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn service_bus(script: Vec<(u16, Option<&'static str>)>) -> ServiceBus {
    let state = Arc::new(Mutex::new(Namespace { script, ..Default::default() }));
    let s = state.clone();
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
            if let Err(e) = verify_sas(&h("authorization")) {
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
            if id.is_empty() || h("content-type") != "application/json" || body["messageId"] != broker["MessageId"] {
                ns.refused.push(format!("malformed: {broker} {body}"));
                return reply(400, None);
            }
            if !ns.accepted.contains_key(&id) {
                ns.accepted.insert(id.clone(), (broker, body.clone()));
                if let Some(port) = ns.deliver_to {
                    tokio::spawn(deliver(s.clone(), port, id, body));
                }
            }
            reply(201, None)
        });
    let (port, tx) = super::serve_loopback(route).await;
    ServiceBus { endpoint: format!("http://127.0.0.1:{port}"), state, _stop: tx }
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
