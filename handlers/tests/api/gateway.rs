//! The way in: from the phone, through API Management and the Functions host, to the handler.
//!
//! API Management and Entra ID cannot run here. `support/gateway.rs` models them from their
//! documentation (its doc comment lists the rules and where the model differs); the host is the
//! harness of `support/host.rs`. These tests apply those models to the files a deployment uses —
//! `infra-bicep/` (URLs, token rules, the policy), `docs/openapi.json`, `function-app/` — and run
//! a phone's requests through all three in front of the real handler. Sources:
//! docs/decisions/0024-the-way-in.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use serde_json::{Value, json};
use warp::http::HeaderMap;

use crate::support::gateway::*;
use crate::support::*;

const GATEWAY: &str = "warranty-prod-apim-u7x2k9q4m1z0a.azure-api.net";
const APP: &str = "warranty-prod-func-u7x2k9q4m1z0a.azurewebsites.net";

/// The host's route prefix (host.json).
fn route_prefix() -> String {
    host_json()["extensions"]["http"]["routePrefix"].as_str().unwrap_or("api").to_owned()
}

#[test]
fn every_operation_reaches_exactly_one_function_route_at_its_public_url() {
    let urls = deployment_urls(GATEWAY, APP);
    assert_eq!(urls.public_base, format!("https://{GATEWAY}/api"));
    let functions = functions();
    let ops = operations();
    assert!(ops.len() >= 34, "{} operations", ops.len());
    let prefix = route_prefix();
    let mut reached = 0;
    for op in &ops {
        let path = concrete(&op.template);
        // Public: gateway URL + API path + operation template.
        let public = format!("https://{GATEWAY}/{}{path}", urls.api_path);
        assert_eq!(public, format!("{}{path}", urls.public_base), "the phone's URL is the public base + the path");
        // Forwarded: backend URL + the operation's path (the API path dropped).
        let forwarded = format!("{}{path}", urls.backend);
        let host_path = forwarded.strip_prefix(&format!("https://{APP}")).expect("the backend is the app");
        let segments: Vec<&str> = host_path.trim_start_matches('/').split('/').collect();
        assert_eq!(segments[0], prefix, "{} {}: the route prefix once, first", op.method, op.template);
        assert_ne!(segments.get(1), Some(&prefix.as_str()), "{}: the prefix twice", op.template);
        let matching: Vec<&Function> = functions
            .iter()
            .filter(|f| {
                f.http.as_ref().is_some_and(|(t, methods, _)| {
                    template_matches(t, &segments) && (methods.is_empty() || methods.contains(&op.method))
                })
            })
            .collect();
        assert_eq!(matching.len(), 1, "{} {public} → {forwarded}: {} function routes", op.method, matching.len());
        reached += 1;
    }
    eprintln!("{reached} of {} operations reach one function route", ops.len());

    // The API's service URL (explicit, so the imported `servers` entry does not become the
    // backend) and the backend entity are the same.
    let apim = read("infra-bicep/modules/apim.bicep");
    assert!(apim.contains("serviceUrl: backendUrl") && apim.contains("url: backendUrl"));
    assert!(apim.contains("path: apiPath"));
    // At import the document's server is the public base URL.
    assert!(apim.contains("union(loadJsonContent('../../docs/openapi.json'), { servers: [{ url: publicBaseUrl }] })"));
    assert!(apim.contains("value: string(document)"));
    // The document in the repository: its paths are relative to a server whose path is the
    // API's, so the local server and the public one differ only in their origin.
    let doc: Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    let local = doc["servers"][0]["url"].as_str().unwrap();
    assert_eq!(local, format!("http://127.0.0.1:7071/{}", urls.api_path));
    assert!(doc["paths"].as_object().unwrap().keys().all(|p| !p.starts_with(&format!("/{prefix}/"))));
    // The links the app prints (cards, calendars) start at the same public base.
    let main = read("infra-bicep/main.bicep");
    assert!(main.contains("publicBaseUrl: publicBaseUrl"), "main.bicep passes the one base URL to the app");
    let app = read("infra-bicep/modules/functionapp.bicep");
    assert!(app.contains("{ name: 'WARRANTY_PUBLIC_BASE_URL', value: publicBaseUrl }"));
}

#[test]
fn the_readme_and_the_generated_clients_call_documented_operations() {
    let ops = operations();
    let readme = read("README.md");
    let url = regex::Regex::new(r"http://127\.0\.0\.1:7071(/api/[A-Za-z0-9_./{}\-]*)").unwrap();
    let mut seen = 0;
    for c in url.captures_iter(&readme) {
        let path = c[1].trim_end_matches(['.', ')']);
        let rest = path.strip_prefix("/api").unwrap();
        let rest = rest.split('?').next().unwrap();
        let found =
            ["GET", "POST", "PUT", "PATCH", "DELETE"].iter().any(|m| select(&ops, m, &concrete(rest)).is_some());
        assert!(found, "the README calls {path}, which is no documented operation");
        seen += 1;
    }
    assert!(seen >= 3, "the README's URLs were read ({seen})");
    // The TypeScript journey's calls are typed by the document's paths; check them anyway.
    let journey = read("tools/clients/journey.ts");
    let call = regex::Regex::new(r#"client\.(GET|POST|PUT|PATCH|DELETE)\("([^"]+)""#).unwrap();
    let mut calls = 0;
    for c in call.captures_iter(&journey) {
        assert!(select(&ops, &c[1], &concrete(&c[2])).is_some(), "journey.ts calls {} {}", &c[1], &c[2]);
        calls += 1;
    }
    assert!(calls >= 8, "{calls} calls read");
}

fn policy_for(reg: &Registration) -> String {
    render_policy(&PolicyValues { rules: token_rules(reg), user_rate: 60, public_rate: 120 })
}

#[test]
fn apim_bicep_fills_exactly_the_placeholders_the_policy_has() {
    let policy = read("infra-bicep/policies/api.xml");
    let apim = read("infra-bicep/modules/apim.bicep");
    let re = regex::Regex::new(r"__[A-Z_]+__").unwrap();
    let in_policy: BTreeSet<String> = re.find_iter(&policy).map(|m| m.as_str().to_owned()).collect();
    let in_bicep: BTreeSet<String> = re.find_iter(&apim).map(|m| m.as_str().to_owned()).collect();
    let modelled: BTreeSet<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(in_policy, in_bicep);
    assert_eq!(in_policy, modelled, "the model fills what apim.bicep fills");
    let rendered = policy_for(&Registration::new(2));
    assert!(!re.is_match(&rendered), "a placeholder is left");
    roxmltree::Document::parse(&rendered).expect("the rendered policy is XML");
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(warp::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    h
}

#[test]
fn the_policy_holds_on_every_route_of_every_tier() {
    let apim = read("infra-bicep/modules/apim.bicep");
    let tiers: Vec<String> = {
        let i = apim.find("param sku string").unwrap();
        let before = &apim[..i];
        let j = before.rfind("@allowed([").unwrap();
        before[j + 10..].split(']').next().unwrap().split(',').map(|s| s.trim().trim_matches('\'').to_owned()).collect()
    };
    // Each tier's policy: the v2 tiers all have rate-limit-by-key, so there is one variant;
    // Consumption (no rate-limit-by-key) is not offered (decision 0024).
    assert!(!tiers.iter().any(|t| t == "Consumption"), "{tiers:?}");
    let reg = Registration::new(2);
    let key = TenantKey::new();
    let token = key.access_token(&reg, 2, &reg.client_id, "oid-alice");
    let ops = operations();
    // The public operations the policy lists are exactly those the document marks public.
    let listed: BTreeSet<String> = public_templates_in(&read("infra-bicep/policies/api.xml")).into_iter().collect();
    let documented: BTreeSet<String> = ops.iter().filter(|o| o.public).map(|o| o.template.clone()).collect();
    assert_eq!(listed, documented);
    for tier in &tiers {
        for op in &ops {
            for with_token in [true, false] {
                let state = GatewayState::new(policy_for(&reg), vec![key.jwk()]);
                let auth = format!("Bearer {token}");
                let mut pairs = vec![("Content-Length", "0")];
                if with_token {
                    pairs.push(("Authorization", auth.as_str()));
                }
                let h = headers(&pairs);
                let req = PolicyRequest { method: &op.method, headers: &h, ip: "198.51.100.4", operation: op };
                match state.inbound(&req) {
                    Outcome::ExpressionFailed(e) => panic!("{tier} {} {}: {e}", op.method, op.template),
                    Outcome::Forward { set_headers, .. } => {
                        assert!(with_token || op.public, "{} {} passed without a token", op.method, op.template);
                        assert!(set_headers.iter().any(|(n, v)| n == "x-functions-key" && v == FUNCTION_KEY));
                    }
                    Outcome::Respond { status, .. } => {
                        assert!(!with_token && !op.public && status == 401, "{} {}: {status}", op.method, op.template)
                    }
                }
            }
        }
    }
    // The limits: per address on a public operation, per user elsewhere.
    let state = GatewayState::new(
        render_policy(&PolicyValues { rules: token_rules(&reg), user_rate: 3, public_rate: 2 }),
        vec![key.jwk()],
    );
    let health = ops.iter().find(|o| o.template == "/health").unwrap();
    let list = ops.iter().find(|o| o.template == "/products" && o.method == "GET").unwrap();
    let status = |op: &Operation, ip: &str, h: &HeaderMap| {
        state.inbound(&PolicyRequest { method: &op.method, headers: h, ip, operation: op }).status()
    };
    let none = headers(&[]);
    assert_eq!([status(health, "a", &none), status(health, "a", &none), status(health, "a", &none)], [200, 200, 429]);
    assert_eq!(status(health, "b", &none), 200, "another address has its own count");
    let auth = format!("Bearer {token}");
    let alice = headers(&[("Authorization", auth.as_str())]);
    let statuses: Vec<u16> = ["c", "d", "e", "f"].iter().map(|ip| status(list, ip, &alice)).collect();
    assert_eq!(statuses, [200, 200, 200, 429], "per user, whatever the address");
}

#[test]
fn the_policy_model_fails_a_variable_read_where_no_token_was_validated() {
    // The old policy's shape: a per-user limit outside the branch that validates the token.
    let policy = r#"<policies><inbound><rate-limit-by-key calls="5" renewal-period="60" counter-key="@(((Jwt)context.Variables[&quot;jwt&quot;]).Claims.GetValueOrDefault(&quot;oid&quot;, context.Request.IpAddress))" /></inbound></policies>"#;
    let state = GatewayState::new(policy.to_owned(), vec![]);
    let op = Operation { method: "GET".into(), template: "/health".into(), public: true };
    let h = headers(&[]);
    let outcome = state.inbound(&PolicyRequest { method: "GET", headers: &h, ip: "a", operation: &op });
    assert!(matches!(outcome, Outcome::ExpressionFailed(_)), "{outcome:?}");
}

#[test]
fn a_body_of_unknown_length_is_refused_by_the_policy_on_either_protocol() {
    let reg = Registration::new(2);
    let key = TenantKey::new();
    let auth = format!("Bearer {}", key.access_token(&reg, 2, &reg.client_id, "oid-alice"));
    let state = GatewayState::new(policy_for(&reg), vec![key.jwk()]);
    let ops = operations();
    let register = ops.iter().find(|o| o.template == "/products" && o.method == "POST").unwrap();
    let erase = ops.iter().find(|o| o.template == "/me" && o.method == "DELETE").unwrap();
    let run = |op: &Operation, pairs: &[(&str, &str)]| {
        let mut all = pairs.to_vec();
        all.push(("Authorization", auth.as_str()));
        let h = headers(&all);
        match state.inbound(&PolicyRequest { method: &op.method, headers: &h, ip: "a", operation: op }) {
            Outcome::Respond { status, body } => (status, body),
            Outcome::Forward { .. } => (200, String::new()),
            Outcome::ExpressionFailed(e) => panic!("{e}"),
        }
    };
    // HTTP/1.1 chunked, and HTTP/2 (no Transfer-Encoding: only a length or none).
    let (status, body) = run(register, &[("Transfer-Encoding", "chunked")]);
    assert_eq!(status, 411);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], "length_required");
    assert_eq!(run(register, &[]).0, 411, "an HTTP/2 body without a length");
    assert_eq!(run(register, &[("Content-Length", "120")]).0, 200);
    assert_eq!(run(register, &[("Content-Length", "20000000")]).0, 413);
    assert_eq!(run(erase, &[("Transfer-Encoding", "chunked")]).0, 411, "a chunked DELETE too");
    assert_eq!(run(erase, &[]).0, 200, "a DELETE without a body");
}

/// The app in JWKS mode trusting what `rules` say (the settings the Bicep gives it), its key set
/// the tenant's key in a file, the user the token's `oid`; links at `public_base` when given.
async fn app_trusting(
    rules: &TokenRules,
    key: &TenantKey,
    public_base: Option<String>,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys = jwks_file(dir.path(), &[key.jwk()]);
    let (issuer, audience) = (rules.issuer.clone(), rules.audiences.join(","));
    let app = spawn_with(move |s| {
        s.auth.jwks_url = None;
        s.auth.jwks_file = Some(keys);
        s.auth.jwt_issuer = Some(issuer);
        s.auth.jwt_audience = Some(audience);
        s.auth.jwt_user_claim = "oid".into();
        s.auth.dev_jwt_secret = None;
        s.sharing.public_base_url = public_base;
    })
    .await;
    (app, dir)
}

/// What Entra ID issues for a registration of `version` (`aud` as the client asked for it).
fn shapes(key: &TenantKey, reg: &Registration) -> Vec<(&'static str, String)> {
    vec![
        ("v2.0", key.access_token(reg, 2, &reg.client_id, "oid-alice")),
        ("v1.0 for the App ID URI", key.access_token(reg, 1, &reg.app_id_uri, "oid-alice")),
        ("v1.0 for the client id", key.access_token(reg, 1, &reg.client_id, "oid-alice")),
    ]
}

#[tokio::test]
async fn entra_shaped_tokens_pass_the_gateway_and_the_app_as_the_registration_says() {
    let key = TenantKey::new();
    for version in [2, 1] {
        let reg = Registration::new(version);
        let (app, _keys) = app_trusting(&token_rules(&reg), &key, None).await;
        let state = GatewayState::new(policy_for(&reg), vec![key.jwk()]);
        let ops = operations();
        let list = ops.iter().find(|o| o.template == "/products" && o.method == "GET").unwrap();
        for (shape, token) in shapes(&key, &reg) {
            let expected = if shape.starts_with(&format!("v{version}.0")) { 200 } else { 401 };
            let auth = format!("Bearer {token}");
            let h = headers(&[("Authorization", auth.as_str())]);
            let gateway =
                state.inbound(&PolicyRequest { method: "GET", headers: &h, ip: "a", operation: list }).status();
            let direct = app
                .client
                .get(format!("{}/api/products", app.base))
                .header("authorization", &auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!((gateway, direct), (expected, expected), "registration v{version}.0, token {shape}");
        }
    }
}

/// The card PDF's QR code, read as a phone's camera would (pdftoppm, zbarimg).
fn qr_link(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("card.pdf"), pdf).unwrap();
    let png = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(dir.path().join("card.pdf"))
        .arg(dir.path().join("card"))
        .status()
        .unwrap();
    assert!(png.success());
    let out =
        std::process::Command::new("zbarimg").args(["-q", "--raw"]).arg(dir.path().join("card.png")).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The phone as it is: the public URL (`https://<gateway>/api/…`, played by the gateway model on
/// loopback), an Entra-shaped v2.0 access token, multipart with a length. Through the gateway
/// model, the host harness and the handler: register with an invoice, read the card, edit it,
/// raise a service request; the card's verification link and the calendar feed, followed
/// without a token as a service desk and a calendar app do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_runs_every_journey_through_gateway_host_and_handler() {
    let key = TenantKey::new();
    let reg = Registration::new(2);
    // The gateway's port is known before the app starts (its links name the gateway).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway_port = listener.local_addr().unwrap().port();
    drop(listener);
    let public_base = format!("http://127.0.0.1:{gateway_port}/api");
    let (app, _keys) = app_trusting(&token_rules(&reg), &key, Some(public_base.clone())).await;
    let host = FunctionsHost::in_front_of(app.port).await;
    let urls = deployment_urls(GATEWAY, APP);
    let backend = urls.backend.replace(&format!("https://{APP}"), &host.base);
    let gateway =
        Gateway::start_on(gateway_port, GatewayState::new(policy_for(&reg), vec![key.jwk()]), &urls.api_path, &backend)
            .await;
    assert_eq!(gateway.base, public_base.trim_end_matches("/api"));

    let phone = reqwest::Client::new();
    let bearer = format!("Bearer {}", key.access_token(&reg, 2, &reg.client_id, "oid-alice"));
    let api = |path: &str| format!("{public_base}{path}");

    // Register with the invoice.
    let (content_type, body) =
        Form::registration("Apple", "MacBook Air 13", "C02XK0ABJGH5", &day(-30), &fixture("invoice.pdf")).finish();
    let resp = phone
        .post(api("/products"))
        .header("authorization", &bearer)
        .header("content-type", content_type)
        .header("idempotency-key", "phone-journey-1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let card: Value = resp.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();

    // Read the card.
    let resp = phone.get(api(&format!("/products/{id}"))).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();

    // Edit it.
    let resp = phone
        .patch(api(&format!("/products/{id}")))
        .header("authorization", &bearer)
        .header("content-type", "application/merge-patch+json")
        .header("if-match", &etag)
        .body(json!({"model": "MacBook Air 13 M3"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["model"], "MacBook Air 13 M3");

    // Raise a service request.
    let resp = phone
        .post(api(&format!("/products/{id}/service-requests")))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(json!({"description": "The screen flickers.", "preferredContact": "email"}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 201, "{text}");

    // The card's QR code names the gateway, and a service desk opens it without a token.
    let pdf =
        phone.get(api(&format!("/products/{id}/card.pdf"))).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(pdf.status(), 200);
    let link = qr_link(&pdf.bytes().await.unwrap());
    assert!(link.starts_with(&format!("{public_base}/verify/")), "{link}");
    let resp = phone.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["brand"], "Apple", "{view}");

    // The calendar feed: created with the token, fetched by a calendar app without one.
    let resp = phone
        .post(api("/me/calendar-feed"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let feed: Value = resp.json().await.unwrap();
    let feed_url = feed["url"].as_str().unwrap();
    assert!(feed_url.starts_with(&format!("{public_base}/calendar/")), "{feed_url}");
    let ics = phone.get(feed_url).send().await.unwrap();
    assert_eq!(ics.status(), 200);
    assert!(ics.text().await.unwrap().contains("BEGIN:VCALENDAR"));

    // Every request reached the host at `/api/…` once and was answered by the handler.
    let forwarded = gateway.forwarded.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 8, "{forwarded:?}");
    assert!(forwarded.iter().all(|(_, _, s)| *s < 300), "{forwarded:?}");
    // And without the token the gateway refuses what needs one, before the host.
    let resp = phone.get(api("/products")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(gateway.forwarded.lock().unwrap().len(), 8);
}

/// An HTTP/2 client (h2c, prior knowledge) to the handler: a POST whose body has no
/// `Content-Length` is refused with 411 before a byte is read, and nothing is stored; the same
/// upload with its length is registered; a GET needs no length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_a_body_without_length_is_refused_and_nothing_is_stored() {
    use http_body_util::{BodyExt, Full, StreamBody};
    let app = spawn_app().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("the handler speaks h2c");
    tokio::spawn(conn);
    let (content_type, body) =
        Form::registration("Apple", "MacBook Air 13", "C02XK0ABJGH5", &day(-30), &fixture("invoice.pdf")).finish();
    let request = |length: Option<usize>| {
        let mut b = hyper::Request::post(format!("{}/api/products", app.base))
            .header("authorization", format!("Bearer {}", token("alice")))
            .header("content-type", content_type.clone());
        let bytes = bytes::Bytes::from(body.clone());
        // A stream has no size hint, so the client sends no length; a whole body has one.
        match length {
            Some(n) => {
                b = b.header("content-length", n);
                b.body(Full::new(bytes).map_err(|e| match e {}).boxed()).unwrap()
            }
            None => {
                let frames =
                    futures_util::stream::iter([Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes))]);
                b.body(StreamBody::new(frames).boxed()).unwrap()
            }
        }
    };
    let resp = send.send_request(request(None)).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 411);
    let problem: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(problem["code"], "length_required");
    assert_eq!(app.product_count().await, 0, "nothing stored");
    assert!(app.invoice_files().is_empty(), "no file left");

    let resp = send.send_request(request(Some(body.len()))).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(app.product_count().await, 1);
    let get = hyper::Request::get(format!("{}/api/products", app.base))
        .header("authorization", format!("Bearer {}", token("alice")))
        .body(Full::new(bytes::Bytes::new()).map_err(|e| match e {}).boxed())
        .unwrap();
    assert_eq!(send.send_request(get).await.unwrap().status(), 200);
    // Over HTTP/1.1 a POST with neither a length nor chunking has no body (RFC 9112 §6.3): it is
    // not refused (here: a service request's body is required, so 4xx of its own, never 411).
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write!(
        raw,
        "POST /api/notifications/x/read HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("alice")
    )
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(!answer.starts_with("HTTP/1.1 411"), "{answer}");
}

#[test]
fn tls_zone_redundancy_and_the_first_deployment_follow_the_documentation() {
    let app = read("infra-bicep/modules/functionapp.bicep");
    let apim = read("infra-bicep/modules/apim.bicep");
    let main = read("infra-bicep/main.bicep");
    let vault = read("infra-bicep/modules/keyvault.bicep");
    // TLS: every tier offered must reach the site; TLS 1.3 to backends is documented for the
    // classic tiers only, so the site's minimum is 1.2 (clients that offer 1.3 get it).
    let tls: Vec<&str> = app.lines().filter(|l| l.trim_start().starts_with("minTlsVersion:")).collect();
    assert_eq!(tls.len(), 2, "both slots");
    assert!(tls.iter().all(|l| l.contains("'1.2'")), "{tls:?}");
    assert!(
        apim.contains("@allowed(['BasicV2', 'StandardV2'])") && main.contains("@allowed(['BasicV2', 'StandardV2'])")
    );

    // Zone redundancy: the plan's capacity and the app's always-ready count at 3 or more.
    assert!(app.contains("sku: { name: planSku, tier: 'ElasticPremium', capacity: alwaysReady }"));
    assert!(app.contains("minimumElasticInstanceCount: alwaysReady"));
    let always_ready = bicep_var(&app, "alwaysReady");
    for env in ["dev", "prod"] {
        let params = read(&format!("infra-bicep/params/{env}.bicepparam"));
        let param = |name: &str| {
            params
                .lines()
                .find_map(|l| l.strip_prefix(&format!("param {name} = ")))
                .unwrap_or_else(|| panic!("{env}: {name}"))
                .trim()
                .to_owned()
        };
        let zone = param("zoneRedundant") == "true";
        let mut vars = BTreeMap::new();
        vars.insert("zoneRedundant".to_owned(), Val::Str(zone.to_string()));
        vars.insert("minimumInstances".to_owned(), Val::Int(param("minimumInstances").parse().unwrap()));
        let Val::Int(capacity) = eval(&always_ready, &vars) else { panic!() };
        assert!(capacity >= 1);
        if zone {
            assert!(capacity >= 3, "{env}: a zone-redundant plan of {capacity}");
        }
        // The function key's value and the master key come from the operators' secret store.
        assert!(params.contains("param gatewayFunctionKey = readEnvironmentVariable('GATEWAY_FUNCTION_KEY')"));
        assert!(params.contains("param hostMasterKey = readEnvironmentVariable('HOST_MASTER_KEY')"));
        assert!(params.contains("param apimSku = 'BasicV2'") || params.contains("param apimSku = 'StandardV2'"));
    }
    // With the minimum the guide asks for, the smallest zone-redundant plan is 3.
    let mut vars = BTreeMap::new();
    vars.insert("zoneRedundant".to_owned(), Val::Str("true".into()));
    vars.insert("minimumInstances".to_owned(), Val::Int(1));
    assert_eq!(eval(&always_ready, &vars), Val::Int(3));

    // The first deployment: no key is read from a host that has not started. The host keeps its
    // keys in Key Vault, where the deployment writes both the master key and the gateway's key;
    // the gateway's named value is a Key Vault reference to the same secret.
    for file in std::fs::read_dir(repo().join("infra-bicep/modules")).unwrap().flatten() {
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains("/host/default"), "{} reads the host's keys at deployment", file.path().display());
        assert!(!text.contains("host/functionKeys"), "{}: a key resource needs a running host", file.path().display());
    }
    assert!(app.contains("{ name: 'AzureWebJobsSecretStorageType', value: 'keyvault' }"));
    assert!(app.contains("{ name: 'AzureWebJobsSecretStorageKeyVaultUri', value: keyVaultUri }"));
    assert!(app.contains("{ name: 'AzureWebJobsSecretStorageKeyVaultClientId', value: identityClientId }"));
    assert!(vault.contains("name: 'host--masterKey--master'") && vault.contains("name: 'host--functionKey--gateway'"));
    assert!(apim.contains("keyVault: { secretIdentifier: functionKeySecretUri }"));
    assert!(
        apim.contains("dependsOn: [gatewayReadsSecrets]"),
        "the gateway may read the secret before it is referenced"
    );
    assert!(main.contains("@secure()\n@minLength(32)\nparam gatewayFunctionKey string"));
}

/// The plan's memory against the readings in flight: the Service Bus concurrency the Bicep
/// gives each instance (its app setting overrides host.json) × the measured peak of one reading,
/// plus the measured peak of the HTTP load and the host's allowance, within 75 % of the SKU's
/// memory, for every SKU and instance count the parameters allow.
#[test]
fn the_readings_in_flight_fit_the_plans_memory() {
    let app = read("infra-bicep/modules/functionapp.bicep");
    let main = read("infra-bicep/main.bicep");
    let memory: Value = serde_json::from_str(&read("infra-bicep/memory.json")).unwrap();
    assert!(app.contains("var ocrCallsPerInstance = "));
    let skus: Vec<String> = {
        let i = main.find("param planSku string").unwrap();
        let before = &main[..i];
        let j = before.rfind("@allowed([").unwrap();
        before[j + 10..].split(']').next().unwrap().split(',').map(|s| s.trim().trim_matches('\'').to_owned()).collect()
    };
    let per_reading = memory["peakPerReadingMiB"].as_f64().unwrap();
    let http = memory["peakHttpMiB"].as_f64().unwrap();
    let host = memory["hostAllowanceMiB"].as_f64().unwrap();
    for sku in &skus {
        let sku_mib = memory["skuMemoryMiB"][sku].as_f64().unwrap_or_else(|| panic!("no memory for {sku}"));
        for instances in 1..=100i64 {
            for tps in [1i64, 15, 50, 1000] {
                let calls = ocr_calls_per_instance(tps, instances) as f64;
                let need = calls * per_reading + http + host;
                assert!(
                    need <= 0.75 * sku_mib,
                    "{sku}: {calls} readings × {per_reading} MiB + {http} + {host} = {need} MiB > 75 % of {sku_mib}"
                );
            }
        }
    }
    // host.json's own value is the fallback the app setting overrides.
    assert!(host_json()["extensions"]["serviceBus"]["maxConcurrentCalls"].as_u64().unwrap() <= 2);
}
