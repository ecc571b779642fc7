//! The identity provider's signing keys, cached.
//!
//! - **Lifetime**: a fetched set is fresh for the answer's `Cache-Control: max-age` (else the
//!   default), capped by the maximum. While fresh it judges requests at once; past three quarters
//!   of it, a request starts a refresh in the background, so under normal refresh no request
//!   waits.
//! - **Revalidated past its lifetime**: a request that finds the set past its lifetime waits for
//!   a fetch (single flight, at most `unknown_kid_wait`) and is judged by the provider's current
//!   set, so a key the provider removed is refused on the first request after `max-age`, however
//!   quiet the instance was.
//! - **Stale if error** (RFC 5861): only when that fetch fails or times out is the old set used,
//!   for at most its grace — the answer's `stale-if-error`, else `stale_if_error` — past its
//!   lifetime, and never past `max_ttl` since it was fetched; each such use is logged (with why)
//!   and counted. Past the grace a token the cache cannot judge gets `503 auth_unavailable`.
//! - **Single flight, no lock across I/O**: the set is swapped under a short synchronous lock;
//!   fetches are serialised by their own lock, so a request whose key is cached never waits for a
//!   fetch while the set is fresh. A request with an unknown `kid` waits for a fetch at most
//!   `unknown_kid_wait`.
//! - **Failures are not refreshes**: a failed fetch does not count against `min_refresh` (the
//!   spacing of refetches caused by unknown `kid`s); it is retried after a short backoff with
//!   jitter, and meanwhile a token the cache cannot judge gets `503 auth_unavailable`, never 401.
//! - **Unusable keys are skipped**: a set with key types or curves this service does not verify
//!   (OKP X25519, secp256k1, encryption keys) still yields its usable keys, with one warning.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm};
use serde_json::Value;

pub enum KeySource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// Least time between two refetches caused by an unknown `kid`.
    pub min_refresh: Duration,
    /// Lifetime of a set whose answer carries no `max-age` (and of a set read from a file).
    pub default_ttl: Duration,
    /// Upper bound of a set's lifetime, and of using it while the provider is unreachable.
    pub max_ttl: Duration,
    /// Longest wait of a request with an unknown `kid` for a fetch.
    pub unknown_kid_wait: Duration,
    /// First retry delay after a failed fetch (doubles up to 30 s, ±20 % jitter).
    pub retry_base: Duration,
    /// How long past its lifetime a set may still judge requests while the provider cannot be
    /// reached, when the answer carried no `stale-if-error` (RFC 5861).
    pub stale_if_error: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(300),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            unknown_kid_wait: Duration::from_secs(2),
            retry_base: Duration::from_secs(2),
            stale_if_error: Duration::from_secs(3600),
        }
    }
}

struct CachedKey {
    key: DecodingKey,
    declared: Option<KeyAlgorithm>,
}

struct KeySet {
    keys: HashMap<String, CachedKey>,
    fetched_at: Instant,
    ttl: Duration,
    /// Use past `ttl` allowed while the provider cannot be reached.
    grace: Duration,
}

#[derive(Default)]
struct State {
    set: Option<Arc<KeySet>>,
    /// Successful fetches so far (a waiter knows a fetch happened after it asked).
    generation: u64,
    /// Consecutive failed fetches and when the next may be tried.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

/// What the cache says about a `kid`.
pub enum Lookup {
    Found(DecodingKey, Option<KeyAlgorithm>),
    /// The provider's current set has no such key.
    Unknown,
    /// The cache cannot judge: the provider could not be reached.
    Unavailable(String),
}

pub struct JwksCache {
    source: KeySource,
    client: reqwest::Client,
    policy: JwksPolicy,
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
    /// Requests judged by a set past its lifetime because the provider could not be reached.
    stale_uses: std::sync::atomic::AtomicU64,
    last_stale_reason: Mutex<Option<String>>,
}

/// What `/api/health` says of the key cache.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCacheStatus {
    /// `fresh`, `stale` (past its lifetime: revalidated on the next request), or `none`.
    pub state: &'static str,
    pub age_secs: Option<u64>,
    pub lifetime_secs: Option<u64>,
    pub stale_uses: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_stale_reason: Option<String>,
}

impl JwksCache {
    pub fn new(source: KeySource, policy: JwksPolicy) -> Arc<Self> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        Arc::new(Self {
            source,
            client,
            policy,
            state: Mutex::new(State::default()),
            fetching: Default::default(),
            stale_uses: Default::default(),
            last_stale_reason: Mutex::new(None),
        })
    }

    pub fn status(&self) -> KeyCacheStatus {
        let (set, ..) = self.snapshot();
        let age = set.as_ref().map(|s| s.fetched_at.elapsed());
        KeyCacheStatus {
            state: match (&set, age) {
                (Some(s), Some(a)) if a < s.ttl => "fresh",
                (Some(_), _) => "stale",
                _ => "none",
            },
            age_secs: age.map(|a| a.as_secs()),
            lifetime_secs: set.as_ref().map(|s| s.ttl.as_secs()),
            stale_uses: self.stale_uses.load(std::sync::atomic::Ordering::Relaxed),
            last_stale_reason: self.last_stale_reason.lock().expect("never poisoned").clone(),
        }
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, u64, Option<Instant>, Option<String>) {
        let s = self.state.lock().expect("the key cache lock is never poisoned");
        (s.set.clone(), s.generation, s.retry_at, s.last_error.clone())
    }

    /// The key for `kid`.
    pub async fn lookup(self: &Arc<Self>, kid: &str) -> Lookup {
        let (set, generation, retry_at, last_error) = self.snapshot();
        let now = Instant::now();
        if let Some(set) = &set {
            let age = now.duration_since(set.fetched_at);
            if age >= set.ttl {
                return self.revalidate(set.clone(), generation, retry_at, last_error, kid).await;
            }
            // Fresh. Refresh ahead of expiry, without making this request wait.
            if age >= set.ttl.mul_f64(0.75) {
                self.refresh_in_background(generation);
            }
            if let Some(k) = set.keys.get(kid) {
                return Lookup::Found(k.key.clone(), k.declared);
            }
            // An unknown kid: the provider may have rotated. Refetch at most once per
            // `min_refresh` (counted from the last good fetch).
            if age < self.policy.min_refresh {
                return Lookup::Unknown;
            }
        }
        if retry_at.is_some_and(|t| now < t) {
            return Lookup::Unavailable(last_error.unwrap_or_else(|| "the last fetch failed".into()));
        }
        match self.fetch_bounded(generation).await {
            Ok(()) => self.judge_current(kid),
            Err(e) => Lookup::Unavailable(e),
        }
    }

    /// Waits for a fetch (ours or one already running), at most `unknown_kid_wait`.
    async fn fetch_bounded(self: &Arc<Self>, generation: u64) -> Result<(), String> {
        let me = self.clone();
        let fetch = tokio::spawn(async move { me.refresh_after(generation).await });
        match tokio::time::timeout(self.policy.unknown_kid_wait, fetch).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the identity provider is slow to answer".into()),
        }
    }

    fn judge_current(&self, kid: &str) -> Lookup {
        let (set, ..) = self.snapshot();
        match set.as_ref().and_then(|s| s.keys.get(kid)) {
            Some(k) => Lookup::Found(k.key.clone(), k.declared),
            None => Lookup::Unknown,
        }
    }

    /// A set past its lifetime: ask the provider again before judging; only if it cannot be
    /// reached, judge by the old set within its grace.
    async fn revalidate(
        self: &Arc<Self>,
        set: Arc<KeySet>,
        generation: u64,
        retry_at: Option<Instant>,
        last_error: Option<String>,
        kid: &str,
    ) -> Lookup {
        let failed = if retry_at.is_some_and(|t| Instant::now() < t) {
            // A fetch failed moments ago; the next is not due yet.
            last_error.unwrap_or_else(|| "the last fetch failed".into())
        } else {
            match self.fetch_bounded(generation).await {
                Ok(()) => return self.judge_current(kid),
                Err(e) => e,
            }
        };
        let age = set.fetched_at.elapsed();
        let limit = (set.ttl + set.grace).min(self.policy.max_ttl);
        if age >= limit {
            tracing::error!(
                age_secs = age.as_secs(),
                limit_secs = limit.as_secs(),
                reason = %failed,
                "signing keys past their lifetime and grace, and the identity provider cannot be reached: refusing to judge tokens"
            );
            return Lookup::Unavailable(failed);
        }
        match set.keys.get(kid) {
            Some(k) => {
                self.stale_uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *self.last_stale_reason.lock().expect("never poisoned") = Some(failed.clone());
                tracing::warn!(
                    age_secs = age.as_secs(),
                    lifetime_secs = set.ttl.as_secs(),
                    grace_left_secs = (limit - age).as_secs(),
                    reason = %failed,
                    "stale signing keys used: the identity provider could not be reached to revalidate them"
                );
                Lookup::Found(k.key.clone(), k.declared)
            }
            // Not in the old set, and the provider cannot say whether it is new.
            None => Lookup::Unavailable(failed),
        }
    }

    fn refresh_in_background(self: &Arc<Self>, seen: u64) {
        if self.fetching.try_lock().is_err() {
            return; // one is running
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.refresh_after(seen).await {
                tracing::warn!(error = %e, "could not refresh the signing keys ahead of expiry; keeping the old ones");
            }
        });
    }

    /// Fetches the set unless a fetch succeeded since generation `seen` (single flight).
    async fn refresh_after(&self, seen: u64) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        {
            let s = self.state.lock().expect("the key cache lock is never poisoned");
            if s.generation > seen {
                return Ok(());
            }
            if s.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(s.last_error.clone().unwrap_or_default());
            }
        }
        let fetched = self.fetch().await;
        let mut s = self.state.lock().expect("the key cache lock is never poisoned");
        match fetched {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), ttl_secs = set.ttl.as_secs(), "refreshed the signing keys");
                s.set = Some(Arc::new(set));
                s.generation += 1;
                s.failures = 0;
                s.retry_at = None;
                s.last_error = None;
                Ok(())
            }
            Err(e) => {
                s.failures += 1;
                let delay = backoff(self.policy.retry_base, s.failures);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "could not fetch the signing keys");
                s.retry_at = Some(Instant::now() + delay);
                s.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let (text, max_age) = match &self.source {
            KeySource::File(path) => (tokio::fs::read_to_string(path).await.map_err(|e| e.to_string())?, None),
            KeySource::Url(url) => {
                let resp = self.client.get(url).send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("JWKS endpoint answered {}", resp.status()));
                }
                let max_age = resp.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(cache_control);
                (resp.text().await.map_err(|e| e.to_string())?, max_age)
            }
        };
        let keys = usable_keys(&text)?;
        let (max_age, stale_if_error) = max_age.unwrap_or((None, None));
        let ttl = max_age.unwrap_or(self.policy.default_ttl).min(self.policy.max_ttl);
        let grace = stale_if_error.unwrap_or(self.policy.stale_if_error);
        Ok(KeySet { keys, fetched_at: Instant::now(), ttl, grace })
    }
}

/// `max-age` and `stale-if-error` of a `Cache-Control` value (`no-store`/`no-cache` mean a zero
/// `max-age`).
fn cache_control(value: &str) -> (Option<Duration>, Option<Duration>) {
    let seconds = |d: &str, name: &str| {
        d.strip_prefix(name).and_then(|v| v.trim_matches('"').parse::<u64>().ok()).map(Duration::from_secs)
    };
    let (mut age, mut stale) = (None, None);
    for d in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-store" || d == "no-cache" {
            age = Some(Duration::ZERO);
        }
        age = age.or_else(|| seconds(&d, "max-age="));
        stale = stale.or_else(|| seconds(&d, "stale-if-error="));
    }
    (age, stale)
}

fn backoff(base: Duration, failures: u32) -> Duration {
    let raw = base.saturating_mul(1u32 << failures.saturating_sub(1).min(10)).min(Duration::from_secs(30));
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    raw.mul_f64(0.8 + 0.4 * (f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)))
}

/// The verifying keys of a JWKS document; keys this service cannot use are skipped, with one
/// warning naming them. A document with no usable key is an error.
fn usable_keys(text: &str) -> Result<HashMap<String, CachedKey>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let list = doc.get("keys").and_then(Value::as_array).ok_or("not a JWKS: no `keys` array")?;
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for raw in list {
        let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("?").to_owned();
        // Encryption keys are not for verifying signatures.
        if raw.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            skipped.push(format!("{kid} (use {})", raw["use"]));
            continue;
        }
        let parsed = serde_json::from_value::<Jwk>(raw.clone()).map_err(|e| e.to_string()).and_then(|jwk| {
            DecodingKey::from_jwk(&jwk).map(|k| (k, jwk.common.key_algorithm)).map_err(|e| e.to_string())
        });
        match parsed {
            Ok((key, declared)) if kid != "?" => {
                keys.insert(kid, CachedKey { key, declared });
            }
            Ok(_) => skipped.push("a key without kid".into()),
            Err(e) => skipped.push(format!("{kid} ({e})")),
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(skipped = %skipped.join(", "), usable = keys.len(), "skipped unusable keys in the JWKS");
    }
    if keys.is_empty() {
        return Err(format!("no usable signing key in the JWKS ({} skipped)", skipped.len()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_and_stale_if_error_are_read_from_cache_control() {
        let s = Duration::from_secs;
        assert_eq!(cache_control("public, max-age=3600"), (Some(s(3600)), None));
        assert_eq!(cache_control("max-age=60, stale-if-error=600"), (Some(s(60)), Some(s(600))));
        assert_eq!(cache_control("no-store"), (Some(Duration::ZERO), None));
        assert_eq!(cache_control("public"), (None, None));
        assert_eq!(cache_control("max-age=abc, Stale-If-Error=\"5\""), (None, Some(s(5))));
    }

    #[test]
    fn unusable_keys_are_skipped_and_usable_ones_kept() {
        let rsa = serde_json::json!({"kty":"RSA","kid":"r","use":"sig","alg":"RS256",
            "n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"});
        let okp =
            serde_json::json!({"kty":"OKP","crv":"X25519","kid":"x","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"});
        let k1 = serde_json::json!({"kty":"EC","crv":"secp256k1","kid":"k","x":"AAAA","y":"AAAA"});
        let enc = serde_json::json!({"kty":"RSA","kid":"e","use":"enc","n":"AQAB","e":"AQAB"});
        let doc = serde_json::json!({"keys":[okp, rsa, k1, enc]}).to_string();
        let keys = usable_keys(&doc).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["r"]);
        assert!(usable_keys(r#"{"keys":[]}"#).is_err());
        assert!(usable_keys("[]").is_err());
    }
}
