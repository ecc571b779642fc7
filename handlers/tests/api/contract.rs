//! The binary, the Functions host configuration and the OpenAPI document must agree.
//!
//! The Functions host cannot run here; its documented contract stands in: with
//! `enableForwardingHttpRequest`, a function with exactly one `httpTrigger` in and one `http`
//! out is forwarded unchanged to `/{routePrefix}/{route}` on the handler's port.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::Value;
use warranty::inbound::http::ROUTES;
use warranty::inbound::http::error::ALL_CODES;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (METHOD, /path) for every API route the binary serves (not the host's readiness probe on
/// `/`, which no client calls).
fn served() -> BTreeSet<(String, String)> {
    ROUTES.iter().filter(|(_, _, f)| f.is_some()).map(|(m, p, _)| (m.to_string(), p.to_string())).collect()
}

/// The document's paths are relative to its server's base (`…/api`): the path the handler serves
/// is that base's path followed by the document's.
pub fn served_path(doc: &Value, documented: &str) -> String {
    let server = doc["servers"][0]["url"].as_str().expect("a server");
    let base = server.split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
    format!("{}{documented}", base.trim_end_matches('/'))
}

/// Registers one product and returns the path with `{id}` filled in.
async fn concrete(app: &TestApp, path: &str) -> String {
    if path == "/api/me/erasure" {
        // An erasure in progress (its marker), so the status answers 200.
        let user = warranty::domain::UserId("alice".into());
        warranty::application::privacy::begin_erasure(&app.services, &user).await.unwrap();
        return path.to_owned();
    }
    if path.contains("{installationId}") {
        return path.replace("{installationId}", "contract-phone");
    }
    if path.starts_with("/api/notifications/{id}") {
        // A reminder of alice's: a coverage ending in three days, then a sweep.
        let product = Box::pin(concrete(app, "/api/products/{id}")).await;
        let ends = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive().to_string();
        let body = serde_json::json!({"kind": "extended", "startsOn": "2024-01-01", "endsOn": ends});
        let resp = app.post_json("alice", &format!("{product}/coverages"), &body).await;
        assert_eq!(resp.status(), 201);
        warranty::application::reminders::sweep(&app.services, chrono::Utc::now()).await.unwrap();
        let feed: Value = app.get("alice", "/api/notifications").await.json().await.unwrap();
        let id = feed["items"][0]["id"].as_str().expect("a reminder").to_owned();
        return path.replace("{id}", &id);
    }
    if path.contains("{feedToken}") {
        // alice's current feed (made here).
        let resp = app
            .client
            .post(format!("{}/api/me/calendar-feed", app.base))
            .bearer_auth(token("alice"))
            .send()
            .await
            .unwrap();
        let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
        let feed = url.rsplit('/').next().unwrap().trim_end_matches(".ics").to_owned();
        return path.replace("{feedToken}", &feed);
    }
    if path.contains("{token}") {
        // A genuine verification link of a fresh product, signed with the app's key.
        let product = Box::pin(concrete(app, "{id}")).await;
        let key = std::fs::read_to_string(app.dir.path().join("verification-key")).unwrap();
        let expires = chrono::Utc::now() + chrono::Duration::days(1);
        let token = warranty::card::token::issue(key.trim().as_bytes(), product.parse().unwrap(), 0, expires);
        return path.replace("{token}", &token);
    }
    if !path.contains("{id}") {
        return path.to_owned();
    }
    if path.starts_with("/api/intakes/") {
        // An intake of alice's.
        let (ct, body) =
            Form::new().file("invoice", "invoice.pdf", "application/pdf", &fixture("invoice.pdf")).finish();
        let url = format!("{}/api/intakes", app.base);
        let resp = app.client.post(url).bearer_auth(token("alice")).header("content-type", ct).body(body);
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        return path.replace("{id}", &id);
    }
    // A fresh product per call: each path gets its own (a DELETE does not take it from the next).
    let serial = uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase();
    let resp = app
        .post_form("alice", Form::registration("Acme", "Contract 1", &serial, "2024-01-01", &fixture("invoice.pdf")))
        .await;
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let path = path.replace("{id}", &id);
    if !path.contains("{coverageId}") {
        return path;
    }
    // A coverage of its own (the product is then at revision 2), with a proof document.
    let form = Form::new().text("kind", "retailer").text("months", "24").file(
        "proof",
        "receipt.png",
        "image/png",
        &fixture("invoice.png"),
    );
    let resp = post_form_to(&app.client, &format!("{}/api/products/{id}/coverages", app.base), "alice", form).await;
    let cid = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    path.replace("{coverageId}", &cid)
}

async fn call(app: &TestApp, method: &str, path: &str) -> reqwest::Response {
    let url = format!("{}{path}", app.base);
    let req = match method {
        "GET" => app.client.get(url),
        "PUT" if path.ends_with("/notification-settings") => {
            app.client.put(url).json(&serde_json::json!({"timeZone": "Europe/Berlin"}))
        }
        "PUT" if path.contains("/me/devices/") => {
            app.client.put(url).json(&serde_json::json!({"platform": "fcmv1", "pushChannel": "contract-token"}))
        }
        // A device to remove.
        "DELETE" if path.contains("/me/devices/") => {
            let body = serde_json::json!({"platform": "apns", "pushChannel": "c0ffee"});
            app.client.put(&url).bearer_auth(token("alice")).json(&body).send().await.unwrap();
            app.client.delete(url)
        }
        "POST" if path.ends_with("/read") => app.client.post(url),
        "DELETE" if path == "/api/me" => app.client.delete(url).json(&serde_json::json!({"confirm": "delete my data"})),
        "POST" if path.ends_with("/calendar-feed") => app.client.post(url).json(&serde_json::json!({"leadDays": [14]})),
        // A feed to revoke.
        "DELETE" if path.ends_with("/calendar-feed") => {
            app.client.post(&url).bearer_auth(token("alice")).send().await.unwrap();
            app.client.delete(url)
        }
        "POST" if path.ends_with("/coverages") => {
            app.client.post(url).json(&serde_json::json!({"kind": "extended", "lifetime": true}))
        }
        "PATCH" if path.contains("/coverages/") => app
            .client
            .patch(url)
            .header("if-match", "\"r2\"")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"reference":"R-2"}"#),
        "POST" if path.ends_with("/service-requests") => {
            app.client.post(url).json(&serde_json::json!({"description": "The screen flickers."}))
        }
        "POST" => {
            let (ct, body) =
                Form::registration("Apple", "iPhone", "C02XK0ABJGH9", "2024-01-01", &fixture("invoice.png")).finish();
            app.client.post(url).header("content-type", ct).body(body)
        }
        // A fresh product is at revision 1.
        "PATCH" => app
            .client
            .patch(url)
            .header("if-match", "\"r1\"")
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"notes":"bought at the airport"}"#),
        "DELETE" => app.client.delete(url),
        "PUT" => {
            let (ct, body) = Form::new().file("invoice", "new.png", "image/png", &fixture("invoice.png")).finish();
            app.client.put(url).header("if-match", "\"r1\"").header("content-type", ct).body(body)
        }
        other => panic!("no request recipe for {other}"),
    };
    req.bearer_auth(token("alice")).send().await.unwrap()
}

#[tokio::test]
async fn every_function_json_is_forwarded_to_a_route_the_binary_serves() {
    let host = read_json(&repo().join("function-app/host.json"));
    let handler = &host["customHandler"];
    assert_eq!(handler["enableForwardingHttpRequest"], true);
    assert_eq!(handler["description"]["defaultExecutablePath"], "warranty");
    assert!(handler["description"]["arguments"].as_array().unwrap().contains(&Value::from("serve")));
    let prefix = host["extensions"]["http"]["routePrefix"].as_str().unwrap_or("api");
    let cargo = std::fs::read_to_string(repo().join("handlers/Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"warranty\""), "the binary the host starts exists");

    // With a (loopback) notification hub, so device registration is served.
    let hub = notification_hub().await;
    let hub_connection = warranty::config::Secret::new(hub.connection_string());
    let app = spawn_with(|s| s.reminders.notification_hub_connection_string = Some(hub_connection)).await;
    let mut forwarded: HashMap<String, BTreeSet<(String, String)>> = HashMap::new();
    for entry in std::fs::read_dir(repo().join("function-app")).unwrap().flatten() {
        let fj = entry.path().join("function.json");
        if !fj.exists() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let bindings = read_json(&fj)["bindings"].as_array().unwrap().clone();
        let triggers: Vec<&Value> = bindings.iter().filter(|b| b["type"] == "httpTrigger").collect();
        if triggers.is_empty() {
            // A trigger function: the host POSTs /{FunctionName}; the binary must serve it.
            assert!(
                warranty::inbound::triggers::TRIGGER_ROUTES.iter().any(|(f, p)| *f == name && *p == format!("/{name}")),
                "{name}: no trigger route in the binary"
            );
            let resp = app.client.post(format!("{}/{name}", app.base)).body("{}").send().await.unwrap();
            assert_ne!(resp.status(), 404, "{name}: the binary does not serve /{name}");
            continue;
        }
        assert_eq!(triggers.len(), 1, "{name}: forwarding needs exactly one httpTrigger");
        let outs: Vec<&Value> = bindings.iter().filter(|b| b["type"] == "http" && b["direction"] == "out").collect();
        assert_eq!(
            (outs.len(), bindings.len()),
            (1, 2),
            "{name}: forwarding needs exactly one http out and nothing else"
        );
        let t = triggers[0];
        assert_eq!(t["direction"], "in");
        let path = format!("/{prefix}/{}", t["route"].as_str().unwrap());
        for m in t["methods"].as_array().unwrap() {
            let method = m.as_str().unwrap().to_uppercase();
            assert!(served().contains(&(method.clone(), path.clone())), "{name}: {method} {path} is not served");
            forwarded.entry(name.clone()).or_default().insert((method.clone(), path.clone()));
            // The binary answers it with something other than "no such route".
            let concrete_path = concrete(&app, &path).await;
            let resp = call(&app, &method, &concrete_path).await;
            assert!(resp.status().is_success(), "{name}: {method} {concrete_path} answered {}", resp.status());
        }
    }
    // Every trigger route has its function.json.
    for (function, _) in warranty::inbound::triggers::TRIGGER_ROUTES {
        assert!(repo().join("function-app").join(function).join("function.json").exists(), "{function}");
    }
    // And every API route has its function.
    for (method, path, function) in ROUTES {
        if let Some(function) = function {
            let set = forwarded.get(*function).unwrap_or_else(|| panic!("no function.json for {function}"));
            assert!(
                set.contains(&(method.to_string(), path.to_string())),
                "{function} does not forward {method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes_and_error_codes() {
    let doc = read_json(&repo().join("docs/openapi.json"));
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), served_path(&doc, path)));
        }
    }
    assert_eq!(documented, served(), "documented routes differ from served routes");

    // An open enumeration: the known values in `x-extensible-enum`, the type a plain string.
    let code = &doc["components"]["schemas"]["Problem"]["properties"]["code"];
    assert!(code.get("enum").is_none(), "a closed enum breaks clients when a code is added");
    let enum_codes: BTreeSet<String> =
        code["x-extensible-enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let known: BTreeSet<String> = ALL_CODES.iter().map(|c| c.to_string()).collect();
    assert_eq!(enum_codes, known, "the documented code list differs from the code list");

    // Every code the source can produce is in the list.
    let patterns = [
        regex::Regex::new(r#"FieldError::new\(\s*[^,]+,\s*"([a-z_]+)""#).unwrap(),
        regex::Regex::new(r#"code: "([a-z_]+)""#).unwrap(),
        regex::Regex::new(r#""([a-z]+(?:_[a-z]+)*_missing)""#).unwrap(),
        regex::Regex::new(r#"=> "([a-z]+_[a-z_]+)",\n"#).unwrap(),
    ];
    let mut used = BTreeSet::new();
    let mut stack = vec![repo().join("handlers/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for re in &patterns {
                    used.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
                }
            }
        }
    }
    assert!(used.len() > 15, "the scan found the codes: {used:?}");
    let undocumented: Vec<_> = used.difference(&known).collect();
    assert!(undocumented.is_empty(), "codes used in the source but not documented: {undocumented:?}");

    // Every code an operation's responses mention is a known code.
    let mentioned = regex::Regex::new(r"`([a-z]+(?:_[a-z]+)+)`").unwrap();
    let text = format!("{}{}", doc["paths"], doc["components"]["responses"]);
    for c in mentioned.captures_iter(&text) {
        assert!(known.contains(&c[1]), "the document mentions an unknown code {}", &c[1]);
    }
}

#[tokio::test]
async fn every_documented_operation_answers_with_a_documented_status() {
    let doc = read_json(&repo().join("docs/openapi.json"));
    let app = spawn_app().await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let concrete_path = concrete(&app, &served_path(&doc, path)).await;
            let resp = call(&app, &method, &concrete_path).await;
            let status = resp.status().as_u16().to_string();
            assert!(op["responses"].get(&status).is_some(), "{method} {path} answered undocumented {status}");
            if let Some(schema_ref) = op["responses"][&status]["content"]["application/json"]["schema"]["$ref"].as_str()
            {
                let name = schema_ref.rsplit('/').next().unwrap();
                let schema = &doc["components"]["schemas"][name];
                let body: Value = resp.json().await.unwrap();
                for field in schema["required"].as_array().into_iter().flatten() {
                    assert!(
                        body.get(field.as_str().unwrap()).is_some(),
                        "{method} {path}: {name}.{field} missing in {body}"
                    );
                }
            }
        }
    }
}

/// `GET /api/openapi.json` is public and serves `docs/openapi.json` byte for byte, with an ETag
/// to revalidate.
#[tokio::test]
async fn the_binary_serves_its_openapi_document() {
    let app = spawn_app().await;
    let resp = app.client.get(format!("{}/api/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let served = resp.bytes().await.unwrap();
    assert_eq!(served.as_ref(), std::fs::read(repo().join("docs/openapi.json")).unwrap().as_slice());
    let again =
        app.client.get(format!("{}/api/openapi.json", app.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
}

/// The 201 of a registration carries the card's ETag (also when replayed), so an edit needs no
/// GET first.
#[tokio::test]
async fn a_registration_answers_the_cards_etag_and_an_edit_can_use_it() {
    let app = spawn_app().await;
    let form = || Form::registration("Apple", "iPhone", "C02XK0ABJGH9", "2024-01-01", &fixture("invoice.pdf"));
    let created = app.post_form_with("alice", form(), Some("etag-key-1")).await;
    assert_eq!(created.status(), 201);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "\"r1\"");
    let card: Value = created.json().await.unwrap();
    let replayed = app.post_form_with("alice", form(), Some("etag-key-1")).await;
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.headers()["etag"].to_str().unwrap(), etag, "a replay answers the same ETag");
    let edited = app
        .client
        .patch(format!("{}/api/products/{}", app.base, card["id"].as_str().unwrap()))
        .bearer_auth(token("alice"))
        .header("if-match", &etag)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"notes":"no GET needed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    assert_eq!(edited.headers()["etag"], "\"r2\"");
}

/// A client that accepts only `application/octet-stream` (generated clients that know "bytes")
/// gets the invoice labelled so; everyone else gets the file's own type. The bytes are the same.
#[tokio::test]
async fn an_invoice_download_honours_accept_octet_stream() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let created =
        app.post_form("alice", Form::registration("Apple", "iPhone", "C02XK0ABJGH9", "2024-01-01", &pdf)).await;
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for (accept, expected) in [
        (None, "application/pdf"),
        (Some("application/octet-stream"), "application/octet-stream"),
        (Some("application/pdf, application/octet-stream"), "application/pdf"),
        (Some("*/*"), "application/pdf"),
        (Some("application/*;q=0, application/octet-stream"), "application/octet-stream"),
        (Some("image/png"), "application/pdf"),
    ] {
        let mut req = app.client.get(format!("{}/api/products/{id}/invoice", app.base)).bearer_auth(token("alice"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], expected, "Accept: {accept:?}");
        assert_eq!(resp.headers()["vary"], "Accept");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), pdf.as_slice());
    }
}
