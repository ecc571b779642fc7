//! Publishing OCR events to Service Bus, against the documented REST "Send Message" contract.
//!
//! No Service Bus emulator runs here. A loopback server plays the namespace: it checks the exact
//! request the documentation describes (`POST /{queue}/messages`, a `SharedAccessSignature`
//! whose HMAC it recomputes, `Content-Type`, `BrokerProperties` with `MessageId` and
//! `CorrelationId`, the JSON body) and answers with the documented statuses (201, 401, 403,
//! 404, 429/503 with `Retry-After`). Like the real queue with duplicate detection, it keeps one
//! message per `MessageId`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use warp::Filter;
use warp::http::{Response, StatusCode};
use warranty::adapters::servicebus::{PublishError, SasKey, ServiceBusPublisher};

const KEY: &str = "bG9jYWwtdGVzdC1rZXk=";

#[derive(Default, Clone)]
struct Namespace {
    /// Statuses to answer before accepting (each with an optional Retry-After).
    script: Vec<(u16, Option<&'static str>)>,
    /// Accepted messages by MessageId: (broker properties, body).
    accepted: BTreeMap<String, (Value, Value)>,
    requests: usize,
    refused: Vec<String>,
}

impl Namespace {
    /// A copy to assert on without holding the lock.
    fn clone_summary(&self) -> Self {
        self.clone()
    }
}

struct Fake {
    endpoint: String,
    state: Arc<Mutex<Namespace>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn verify_sas(auth: &str) -> Result<(), String> {
    let rest = auth.strip_prefix("SharedAccessSignature ").ok_or("not a SAS")?;
    let parts: BTreeMap<&str, &str> = rest.split('&').filter_map(|p| p.split_once('=')).collect();
    let (sr, sig, se, skn) =
        (parts.get("sr").ok_or("sr")?, parts.get("sig").ok_or("sig")?, parts.get("se").ok_or("se")?, parts.get("skn"));
    if skn != Some(&"send") {
        return Err("wrong key name".into());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
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

async fn fake(script: Vec<(u16, Option<&'static str>)>) -> Fake {
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
            ns.accepted.entry(id).or_insert((broker, body));
            reply(201, None)
        });
    let (port, tx) = serve_loopback(route).await;
    Fake { endpoint: format!("http://127.0.0.1:{port}"), state, _stop: tx }
}

fn connection_string(endpoint: &str) -> String {
    format!("Endpoint={endpoint}/;SharedAccessKeyName=send;SharedAccessKey={KEY}")
}

fn publisher(endpoint: &str, key: &str) -> ServiceBusPublisher {
    let sas = SasKey { endpoint: endpoint.into(), key_name: "send".into(), key: key.into() };
    ServiceBusPublisher::new(
        endpoint,
        "invoice-ocr",
        sas.auth_source(ServiceBusPublisher::resource_uri(endpoint, "invoice-ocr")),
    )
}

fn event() -> warranty::domain::OcrRequested {
    serde_json::from_value(serde_json::json!({
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

#[tokio::test]
async fn a_message_is_sent_as_documented_and_errors_are_classified() {
    let ns = fake(vec![(503, Some("7")), (429, None), (403, None)]).await;
    let p = publisher(&ns.endpoint, KEY);
    match p.publish(&event(), Some("trace-1")).await {
        Err(PublishError::Transient { retry_after, .. }) => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("503 is transient: {other:?}"),
    }
    assert!(matches!(
        p.publish(&event(), Some("trace-1")).await,
        Err(PublishError::Transient { retry_after: None, .. })
    ));
    assert!(
        matches!(p.publish(&event(), Some("trace-1")).await, Err(PublishError::Rejected(_))),
        "403 quota/size is not retried blindly"
    );
    p.publish(&event(), Some("trace-1")).await.unwrap();
    let state = ns.state.lock().unwrap().clone_summary();
    let (broker, body) = &state.accepted["0190a0b0-0000-7000-8000-000000000001:invoice:1"];
    assert_eq!(broker["CorrelationId"], "trace-1");
    assert_eq!(broker["ContentType"], "application/json");
    assert_eq!(body["invoiceLocation"], "0190a0b0-0000-7000-8000-000000000001.v1.pdf");
    assert!(state.refused.is_empty(), "{:?}", state.refused);

    // A wrong key is refused by the namespace (401): a configuration error, not a blip.
    let wrong = publisher(&ns.endpoint, "d3Jvbmc=");
    assert!(matches!(wrong.publish(&event(), None).await, Err(PublishError::Rejected(_))));
    // A queue that does not exist (404).
    let sas = SasKey { endpoint: ns.endpoint.clone(), key_name: "send".into(), key: KEY.into() };
    let missing = ServiceBusPublisher::new(
        &ns.endpoint,
        "no-such-queue",
        sas.auth_source(ServiceBusPublisher::resource_uri(&ns.endpoint, "no-such-queue")),
    );
    assert!(matches!(missing.publish(&event(), None).await, Err(PublishError::Rejected(_))));
}

both_backends!(registrations_reach_service_bus_once_even_when_it_is_busy);

async fn registrations_reach_service_bus_once_even_when_it_is_busy() {
    let ns = fake(vec![(503, Some("0")), (500, None)]).await;
    let cs = connection_string(&ns.endpoint);
    let app = spawn_with(move |s| {
        s.ocr_dispatcher = true;
        s.ocr_delivery = "servicebus".into();
        s.servicebus_connection_string = Some(cs);
        s.ocr_retry_base_ms = 10;
    })
    .await;
    let (ct, body) =
        Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")).finish();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = app
        .client
        .post(format!("{}/api/products", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", ct)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    eventually("the event reached Service Bus", || !ns.state.lock().unwrap().accepted.is_empty()).await;
    eventually("the outbox row is completed", || app.count("ocr_queue") == 0).await;
    let state = ns.state.lock().unwrap().clone_summary();
    assert_eq!(state.requests, 3, "two refusals, then accepted");
    assert_eq!(state.accepted.len(), 1);
    let (broker, body) = &state.accepted[&format!("{id}:invoice:1")];
    assert_eq!(broker["CorrelationId"], trace);
    assert_eq!(body["productId"], id.as_str());
    assert!(state.refused.is_empty(), "{:?}", state.refused);
}
