//! Publishing OCR events to Service Bus, against the documented REST "Send Message" contract.
//!
//! No Service Bus emulator runs here. A loopback server plays the namespace: it checks the exact
//! request the documentation describes (`POST /{queue}/messages`, a `SharedAccessSignature`
//! whose HMAC it recomputes, `Content-Type`, `BrokerProperties` with `MessageId` and
//! `CorrelationId`, the JSON body) and answers with the documented statuses (201, 401, 403,
//! 404, 429/503 with `Retry-After`). Like the real queue with duplicate detection, it keeps one
//! message per `MessageId`.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;
use warranty::adapters::azure::servicebus::{PublishError, SasKey, ServiceBusAuth, ServiceBusPublisher};
use warranty::config::Secret;

fn sas_auth(endpoint: &str, key: &str, queue: &str) -> ServiceBusAuth {
    let cs = format!("Endpoint={endpoint};SharedAccessKeyName=send;SharedAccessKey={key}");
    let key = SasKey::parse(&Secret::new(cs)).unwrap();
    ServiceBusAuth::Sas { key, resource_uri: ServiceBusPublisher::resource_uri(endpoint, queue) }
}

fn publisher(endpoint: &str, key: &str) -> ServiceBusPublisher {
    ServiceBusPublisher::new(endpoint, "invoice-ocr", sas_auth(endpoint, key, "invoice-ocr"))
}

#[tokio::test]
async fn a_message_is_sent_as_documented_and_errors_are_classified() {
    let ns = service_bus(vec![(503, Some("7")), (429, None), (403, None)]).await;
    let p = publisher(&ns.endpoint, SB_KEY);
    match p.publish(&sample_event(), Some("trace-1")).await {
        Err(PublishError::Transient { retry_after, .. }) => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("503 is transient: {other:?}"),
    }
    assert!(matches!(
        p.publish(&sample_event(), Some("trace-1")).await,
        Err(PublishError::Transient { retry_after: None, .. })
    ));
    assert!(
        matches!(p.publish(&sample_event(), Some("trace-1")).await, Err(PublishError::Rejected(_))),
        "403 quota/size is not retried blindly"
    );
    p.publish(&sample_event(), Some("trace-1")).await.unwrap();
    let state = ns.snapshot();
    let (broker, body) = &state.accepted["0190a0b0-0000-7000-8000-000000000001:invoice:1"];
    assert_eq!(broker["CorrelationId"], "trace-1");
    assert_eq!(broker["ContentType"], "application/json");
    assert_eq!(body["invoiceLocation"], "0190a0b0-0000-7000-8000-000000000001.v1.pdf");
    assert!(state.refused.is_empty(), "{:?}", state.refused);

    // A wrong key is refused by the namespace (401): a configuration error, not a blip.
    let wrong = publisher(&ns.endpoint, "d3Jvbmc=");
    assert!(matches!(wrong.publish(&sample_event(), None).await, Err(PublishError::Rejected(_))));
    // A queue that does not exist (404).
    let missing =
        ServiceBusPublisher::new(&ns.endpoint, "no-such-queue", sas_auth(&ns.endpoint, SB_KEY, "no-such-queue"));
    assert!(matches!(missing.publish(&sample_event(), None).await, Err(PublishError::Rejected(_))));
}

backends!([embedded, blob]:registrations_reach_service_bus_once_even_when_it_is_busy);

async fn registrations_reach_service_bus_once_even_when_it_is_busy() {
    let ns = service_bus(vec![(503, Some("0")), (500, None)]).await;
    let cs = ns.connection_string();
    let app = spawn_with(move |s| {
        s.delivery.ocr_dispatcher = true;
        s.delivery.ocr_delivery = warranty::config::OcrDeliveryKind::Servicebus;
        s.delivery.servicebus_connection_string = Some(warranty::config::Secret::new(cs));
        s.delivery.ocr_retry_base_ms = 10;
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
    let state = ns.snapshot();
    assert_eq!(state.requests, 3, "two refusals, then accepted");
    assert_eq!(state.accepted.len(), 1);
    let (broker, body) = &state.accepted[&format!("{id}:invoice:1")];
    assert_eq!(broker["CorrelationId"], trace);
    assert_eq!(body["productId"], id.as_str());
    assert!(state.refused.is_empty(), "{:?}", state.refused);
}
