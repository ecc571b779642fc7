//! Bearer-token authentication against a JSON Web Key Set, as Entra ID issues tokens.
//!
//! Entra ID cannot run here, so the identity provider's documented wire contract stands in: a
//! loopback HTTP server serves the JWKS document (`{"keys":[{kty,kid,n,e|crv,x,y,...}]}`) and
//! tokens are signed in the test with aws-lc-rs, independently of the `jsonwebtoken` code
//! under test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use warp::Filter;

const ISSUER: &str = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0";
const AUDIENCE: &str = "api://warranty";

enum Signer {
    Rsa(signature::RsaKeyPair),
    Ec(signature::EcdsaKeyPair),
}

struct TestKey {
    kid: String,
    signer: Signer,
}

impl TestKey {
    fn rsa(kid: &str) -> Self {
        let kp = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Self { kid: kid.into(), signer: Signer::Rsa(kp) }
    }

    fn ec(kid: &str) -> Self {
        let kp = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        Self { kid: kid.into(), signer: Signer::Ec(kp) }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(kp) => {
                let public = kp.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "kid": self.kid, "alg": "RS256",
                    "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(kp) => {
                let point = kp.public_key().as_ref();
                assert_eq!(point[0], 4, "uncompressed point");
                json!({
                    "kty": "EC", "use": "sig", "kid": self.kid, "crv": "P-256",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
                })
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    fn sign_with_header(&self, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = match &self.signer {
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(kp) => kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", B64.encode(sig))
    }

    fn sign(&self, claims: Value) -> String {
        self.sign_with_header(json!({"typ": "JWT", "alg": self.alg(), "kid": self.kid}), claims)
    }
}

fn claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "oid": format!("oid-{sub}"), "iat": now, "nbf": now, "exp": now + 600})
}

/// A loopback JWKS endpoint whose key set the test can change, counting fetches. It can also
/// answer scripted statuses first, send a `Cache-Control` header, and hold its answers until
/// released (a slow provider).
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    script: Arc<Mutex<Vec<u16>>>,
    cache_control: Arc<Mutex<Option<String>>>,
    hang: Arc<std::sync::atomic::AtomicBool>,
    release: Arc<tokio::sync::Notify>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn jwks_server(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Mutex::new(Vec::<u16>::new()));
    let cache_control = Arc::new(Mutex::new(None::<String>));
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    let (k, f, sc, cc, h, r) =
        (keys.clone(), fetches.clone(), script.clone(), cache_control.clone(), hang.clone(), release.clone());
    let route = warp::path!("discovery" / "v2.0" / "keys").then(move || {
        let (k, f, sc, cc, h, r) = (k.clone(), f.clone(), sc.clone(), cc.clone(), h.clone(), r.clone());
        async move {
            f.fetch_add(1, Ordering::SeqCst);
            if h.load(Ordering::SeqCst) {
                r.notified().await;
            }
            let scripted = {
                let mut sc = sc.lock().unwrap();
                (!sc.is_empty()).then(|| sc.remove(0))
            };
            let mut resp = match scripted {
                Some(status) => warp::http::Response::builder().status(status).body(String::new()).unwrap(),
                None => warp::http::Response::new(json!({ "keys": *k.lock().unwrap() }).to_string()),
            };
            if let Some(c) = cc.lock().unwrap().clone() {
                resp.headers_mut().insert("cache-control", c.parse().unwrap());
            }
            resp
        }
    });
    let (port, tx) = serve_loopback(route).await;
    Jwks {
        url: format!("http://127.0.0.1:{port}/discovery/v2.0/keys"),
        keys,
        fetches,
        script,
        cache_control,
        hang,
        release,
        _stop: tx,
    }
}

async fn app_for(jwks: &Jwks, min_refresh_secs: u64) -> TestApp {
    app_with(jwks, min_refresh_secs, |_| {}).await
}

async fn app_with(
    jwks: &Jwks,
    min_refresh_secs: u64,
    more: impl FnOnce(&mut warranty::config::Settings) + Send + 'static,
) -> TestApp {
    let url = jwks.url.clone();
    spawn_with(move |s| {
        s.auth.jwks_url = Some(url);
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
        s.auth.jwks_min_refresh_secs = min_refresh_secs;
        s.auth.dev_jwt_secret = None;
        more(s);
    })
    .await
}

async fn list_status(app: &TestApp, token: &str) -> (u16, Option<String>) {
    let resp = app.client.get(format!("{}/api/products", app.base)).bearer_auth(token).send().await.unwrap();
    let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), challenge)
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_key_set_are_accepted() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let jwks = jwks_server(vec![rsa.jwk(), ec.jwk()]).await;
    let app = app_for(&jwks, 300).await;
    assert_eq!(list_status(&app, &rsa.sign(claims("alice"))).await.0, 200);
    assert_eq!(list_status(&app, &ec.sign(claims("alice"))).await.0, 200);
    // Keys are cached: two tokens, one fetch.
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_bearer_challenge() {
    let key = TestKey::rsa("rsa-1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    let app = app_for(&jwks, 300).await;
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims("alice");
    expired["exp"] = json!(now - 3600);
    let mut other_aud = claims("alice");
    other_aud["aud"] = json!("api://someone-else");
    let mut other_iss = claims("alice");
    other_iss["iss"] = json!("https://evil.example.com/");
    let mut not_yet = claims("alice");
    not_yet["nbf"] = json!(now + 3600);
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    let stranger = TestKey::rsa("rsa-1"); // same kid, different key: a forgery
    let unsigned = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).to_string()),
        B64.encode(claims("alice").to_string())
    );
    // An HS256 token "signed" with the public key material: the classic algorithm confusion.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("rsa-1".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims("alice"),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk()["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let cases = [
        ("expired", key.sign(expired)),
        ("other audience", key.sign(other_aud)),
        ("other issuer", key.sign(other_iss)),
        ("not yet valid", key.sign(not_yet)),
        ("no exp", key.sign(no_exp)),
        ("no sub", key.sign(no_sub)),
        ("forged", stranger.sign(claims("alice"))),
        ("alg none", unsigned),
        ("hs256 in jwks mode", hs),
        ("garbage", "not.a.jwt".to_owned()),
        ("no kid", key.sign_with_header(json!({"alg": "RS256"}), claims("alice"))),
    ];
    for (what, token) in cases {
        let (status, challenge) = list_status(&app, &token).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="warranty", error="invalid_token""#), "{what}");
    }
    let resp = app.client.get(format!("{}/api/products", app.base)).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], r#"Bearer realm="warranty""#);
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (401, "unauthorized"));
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_a_restart() {
    let old = TestKey::rsa("2026-10");
    let jwks = jwks_server(vec![old.jwk()]).await;
    let app = app_for(&jwks, 0).await;
    assert_eq!(list_status(&app, &old.sign(claims("alice"))).await.0, 200);
    // The provider publishes a new key and starts signing with it.
    let new = TestKey::ec("2026-11");
    jwks.keys.lock().unwrap().push(new.jwk());
    assert_eq!(list_status(&app, &new.sign(claims("alice"))).await.0, 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    // The old key is retired: tokens signed with it stop working after the next refresh.
    jwks.keys.lock().unwrap().remove(0);
    let newer = TestKey::rsa("2026-12");
    jwks.keys.lock().unwrap().push(newer.jwk());
    assert_eq!(list_status(&app, &newer.sign(claims("alice"))).await.0, 200);
    assert_eq!(list_status(&app, &old.sign(claims("alice"))).await.0, 401);
}

#[tokio::test]
async fn unknown_key_ids_cannot_make_the_service_hammer_the_provider() {
    let key = TestKey::rsa("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    let app = app_for(&jwks, 300).await;
    assert_eq!(list_status(&app, &key.sign(claims("alice"))).await.0, 200);
    for i in 0..20 {
        let forged = TestKey::rsa(&format!("made-up-{i}"));
        assert_eq!(list_status(&app, &forged.sign(claims("alice"))).await.0, 401);
    }
    // One fetch at start, at most one refresh inside the minimum interval.
    assert!(jwks.fetches.load(Ordering::SeqCst) <= 2, "{} fetches", jwks.fetches.load(Ordering::SeqCst));
}

#[tokio::test]
async fn the_user_claim_is_configurable_and_scopes_the_data() {
    let key = TestKey::ec("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| {
        s.auth.jwks_url = Some(url);
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
        s.auth.jwt_user_claim = "oid".into();
    })
    .await;
    let (ct, body) =
        Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &fixture("invoice.pdf")).finish();
    let resp = app
        .client
        .post(format!("{}/api/products", app.base))
        .bearer_auth(key.sign(claims("alice")))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let owner: String = app.db().query_row("SELECT user_id FROM products", [], |r| r.get(0)).unwrap();
    assert_eq!(owner, "oid-alice");
}

#[tokio::test]
async fn a_jwks_file_works_without_a_network() {
    let key = TestKey::rsa("file-key");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let app = spawn_with(move |s| {
        s.auth.jwks_file = Some(path);
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    assert_eq!(list_status(&app, &key.sign(claims("alice"))).await.0, 200);
    // A dev token (HS256) is not accepted once JWKS mode is on.
    assert_eq!(list_status(&app, &token("alice")).await.0, 401);
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_503_not_a_401() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let app = spawn_with(move |s| {
        s.auth.jwks_url = Some(format!("http://127.0.0.1:{port}/keys"));
        s.auth.jwt_issuer = Some(ISSUER.into());
        s.auth.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let key = TestKey::rsa("k");
    let resp =
        app.client.get(format!("{}/api/products", app.base)).bearer_auth(key.sign(claims("a"))).send().await.unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "auth_unavailable"));
}

#[tokio::test]
async fn dev_tokens_work_in_the_embedded_default_and_expire() {
    let app = spawn_app().await;
    assert_eq!(list_status(&app, &token("alice")).await.0, 200);
    let expired = {
        let now = chrono::Utc::now().timestamp();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"iss": "warranty-dev", "aud": "warranty-api", "sub": "alice", "exp": now - 120}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(list_status(&app, &expired).await.0, 401);
    let wrong_aud = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "warranty-dev", "aud": "other", "sub": "alice", "exp": chrono::Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(list_status(&app, &wrong_aud).await.0, 401);
}

/// A fetch that fails once (the provider answers 500, then recovers) is retried on a later
/// request: 503 meanwhile, never a 401 for a valid token.
#[tokio::test]
async fn a_failed_key_fetch_is_retried_and_never_turns_a_valid_token_into_a_401() {
    let key = TestKey::rsa("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    jwks.script.lock().unwrap().push(500);
    // The retry backoff is zero here so the next request may retry at once.
    let app = app_with(&jwks, 300, |s| s.auth.jwks_retry_base_ms = 0).await;
    let token = key.sign(claims("alice"));
    let resp = app.client.get(format!("{}/api/products", app.base)).bearer_auth(&token).send().await.unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "auth_unavailable"));
    assert_eq!(list_status(&app, &token).await.0, 200, "the valid token works once the provider answers");
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
}

/// The attack run's reproduction: the provider removes key A (rotated out, say compromised);
/// once the cached set is past its `max-age`, the next request — however long the instance was
/// quiet — is judged by the provider's current set, not the old one: 401.
#[tokio::test]
async fn past_its_lifetime_a_key_the_provider_removed_is_refused_on_the_next_request() {
    let old = TestKey::rsa("old");
    let jwks = jwks_server(vec![old.jwk()]).await;
    // Past its lifetime from the first request on.
    *jwks.cache_control.lock().unwrap() = Some("public, max-age=0".into());
    let app = app_for(&jwks, 300).await;
    let token = old.sign(claims("alice"));
    assert_eq!(list_status(&app, &token).await.0, 200);
    let new = TestKey::rsa("new");
    *jwks.keys.lock().unwrap() = vec![new.jwk()];
    assert_eq!(list_status(&app, &token).await.0, 401, "the removed key is refused at once");
    assert_eq!(list_status(&app, &new.sign(claims("alice"))).await.0, 200);
    let health: Value = app.client.get(format!("{}/api/health", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["authKeys"]["staleUses"], 0, "{health}");
}

/// The provider cannot be reached once the set is past its lifetime: the old set judges tokens
/// for its `stale-if-error` grace (each use logged and counted), then tokens get 503
/// `auth_unavailable`; when the provider is back, requests are judged again.
#[tokio::test]
async fn an_unreachable_provider_gets_the_stale_set_its_grace_then_503() {
    let key = TestKey::rsa("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    *jwks.cache_control.lock().unwrap() = Some("max-age=0, stale-if-error=2".into());
    let app = app_with(&jwks, 300, |s| s.auth.jwks_retry_base_ms = 0).await;
    let token = key.sign(claims("alice"));
    assert_eq!(list_status(&app, &token).await.0, 200);
    let fetched = std::time::Instant::now();
    jwks.script.lock().unwrap().extend(std::iter::repeat_n(500, 1000));
    assert_eq!(list_status(&app, &token).await.0, 200, "within the grace the stale set judges");
    let health: Value = app.client.get(format!("{}/api/health", app.base)).send().await.unwrap().json().await.unwrap();
    assert!(health["authKeys"]["staleUses"].as_u64().unwrap() >= 1, "{health}");
    assert!(health["authKeys"]["lastStaleReason"].as_str().unwrap().contains("500"), "{health}");
    assert_eq!(health["authKeys"]["state"], "stale");
    // The grace (2 s from the fetch) runs out: the scenario's clock, not a wait for a result.
    tokio::time::sleep(std::time::Duration::from_millis(2100).saturating_sub(fetched.elapsed())).await;
    let resp = app.client.get(format!("{}/api/products", app.base)).bearer_auth(&token).send().await.unwrap();
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "auth_unavailable"));
    // The provider answers again.
    jwks.script.lock().unwrap().clear();
    assert_eq!(list_status(&app, &token).await.0, 200);
}

/// Under normal refresh (three quarters into the set's lifetime, the provider slow) a request
/// with a known key is answered at once from the fresh set while the refresh runs behind it.
#[tokio::test]
async fn a_known_key_never_waits_for_a_refresh_ahead_of_expiry() {
    let key = TestKey::rsa("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    *jwks.cache_control.lock().unwrap() = Some("max-age=4".into());
    // Should a slow machine reach the lifetime's end first, revalidation gives up quickly and the
    // stale set (within its grace) answers: the request still does not wait on the provider.
    let app = app_with(&jwks, 300, |s| s.auth.jwks_unknown_kid_wait_ms = 300).await;
    let token = key.sign(claims("alice"));
    assert_eq!(list_status(&app, &token).await.0, 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);
    // Three quarters of the lifetime pass (the scenario's clock).
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    jwks.hang.store(true, Ordering::SeqCst);
    let answered = tokio::time::timeout(std::time::Duration::from_secs(2), list_status(&app, &token)).await;
    assert_eq!(answered.expect("the request waited for the refresh").0, 200);
    let fetches = jwks.fetches.clone();
    eventually("the refresh ahead of expiry started", || fetches.load(Ordering::SeqCst) >= 2).await;
    jwks.hang.store(false, Ordering::SeqCst);
    jwks.release.notify_waiters();
}

/// While the provider is slow to answer a refetch caused by an unknown `kid`, requests whose key
/// is cached are not delayed, and the unknown `kid` waits only the configured time.
#[tokio::test]
async fn a_slow_provider_never_delays_requests_with_a_known_key() {
    let key = TestKey::rsa("k1");
    let jwks = jwks_server(vec![key.jwk()]).await;
    let app = Arc::new(app_with(&jwks, 0, |s| s.auth.jwks_unknown_kid_wait_ms = 300).await);
    let token = key.sign(claims("alice"));
    assert_eq!(list_status(&app, &token).await.0, 200);
    jwks.hang.store(true, Ordering::SeqCst);
    let forged = TestKey::rsa("forged").sign(claims("mallory"));
    let app2 = app.clone();
    let stalled = tokio::spawn(async move { list_status(&app2, &forged).await.0 });
    let fetches = jwks.fetches.clone();
    eventually("the refetch reached the provider", || fetches.load(Ordering::SeqCst) >= 2).await;
    let known = tokio::time::timeout(std::time::Duration::from_secs(3), list_status(&app, &token)).await;
    assert_eq!(known.expect("a request with a cached key was held by the refetch").0, 200);
    let forged_status = stalled.await.unwrap();
    assert_eq!(forged_status, 503, "the unknown kid gave up waiting for the slow provider");
    jwks.hang.store(false, Ordering::SeqCst);
    jwks.release.notify_waiters();
}

/// A key set with keys this service cannot verify (X25519, secp256k1, an encryption key) beside
/// a valid RSA key: the RSA key works.
#[tokio::test]
async fn unsupported_keys_in_the_set_are_skipped() {
    let rsa = TestKey::rsa("rsa-ok");
    let okp =
        json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"});
    let k1 = json!({"kty": "EC", "crv": "secp256k1", "kid": "k256",
        "x": "4H7K2vY8fA9mZk1fzJr2qYh0z8H1nPq6x5s3Xw2mT1U", "y": "qT3tX0b1cJm6Zr8vW1pL9sK2yN4hF7dE5gC3aB0x1yQ"});
    let enc = json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"});
    let jwks = jwks_server(vec![okp, k1, rsa.jwk(), enc]).await;
    let app = app_for(&jwks, 300).await;
    assert_eq!(list_status(&app, &rsa.sign(claims("alice"))).await.0, 200);
}
