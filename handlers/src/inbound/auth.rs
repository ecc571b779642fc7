//! Bearer-token authentication.
//!
//! Two modes, chosen by configuration:
//! - **JWKS** (production, Entra ID): RS256 or ES256 tokens whose `kid` is looked up in a JSON
//!   Web Key Set fetched from a URL (or read from a file), cached as `inbound::jwks` describes:
//!   keys expire, refresh ahead of expiry in the background, an unknown `kid` refetches at most
//!   once per `min_refresh` and waits for it only briefly, and a provider outage answers 503,
//!   never 401. HMAC tokens are refused in this mode.
//! - **Shared secret** (the embedded default): HS256 with a local secret, for `warranty
//!   dev-token`.
//!
//! In both, issuer and audience are required and checked, `exp` is required, and a token with
//! `alg: none` or any algorithm outside the mode's list is refused before any key is touched.
//! `WARRANTY_JWT_ISSUER` and `WARRANTY_JWT_AUDIENCE` may each list several values, comma-separated:
//! Entra ID puts the App ID URI or the client id in a v1.0 token's `aud`, whichever the client
//! asked for, so a v1.0 API accepts both (the Bicep derives both lists from the app registration,
//! decision 0024).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::config::{AuthSettings, Secret, StartupError};
use crate::domain::UserId;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
pub const DEV_ISSUER: &str = "warranty-dev";
pub const DEV_AUDIENCE: &str = "warranty-api";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    /// The reason is logged, never sent: it would help an attacker tune forgeries.
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

use super::jwks::{JwksCache, Lookup};
pub use super::jwks::{JwksPolicy, KeySource};

enum Mode {
    Shared(DecodingKey),
    Jwks(Arc<JwksCache>),
}

pub struct Authenticator {
    mode: Mode,
    issuers: Vec<String>,
    audiences: Vec<String>,
    user_claim: String,
}

/// The values of a comma-separated setting, trimmed, without empty ones.
fn values(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
}

impl Authenticator {
    /// JWKS mode when a JWKS URL or file is set (issuer and audience then required), else the
    /// embedded default's shared secret (configured, or kept in `data_dir`).
    pub fn from_settings(settings: &AuthSettings, data_dir: &std::path::Path) -> Result<Self, StartupError> {
        let source = match (&settings.jwks_url, &settings.jwks_file) {
            (Some(url), _) => Some(KeySource::Url(url.clone())),
            (None, Some(file)) => Some(KeySource::File(file.clone())),
            (None, None) => None,
        };
        match source {
            Some(source) => {
                let (Some(iss), Some(aud)) = (&settings.jwt_issuer, &settings.jwt_audience) else {
                    return Err(StartupError::JwksNeedsIssuerAndAudience);
                };
                if values(iss).is_empty() || values(aud).is_empty() {
                    return Err(StartupError::JwksNeedsIssuerAndAudience);
                }
                let policy = JwksPolicy {
                    min_refresh: Duration::from_secs(settings.jwks_min_refresh_secs),
                    default_ttl: Duration::from_secs(settings.jwks_default_ttl_secs),
                    max_ttl: Duration::from_secs(settings.jwks_max_ttl_secs.max(1)),
                    unknown_kid_wait: Duration::from_millis(settings.jwks_unknown_kid_wait_ms),
                    retry_base: Duration::from_millis(settings.jwks_retry_base_ms),
                    stale_if_error: Duration::from_secs(settings.jwks_stale_if_error_secs),
                };
                Ok(Self::jwks(source, policy, iss, aud, &settings.jwt_user_claim))
            }
            None => {
                let secret = dev_secret(settings.dev_jwt_secret.as_ref().map(Secret::expose), data_dir)
                    .map_err(|e| StartupError::DataDir(data_dir.display().to_string(), e))?;
                Ok(Self::shared_secret(
                    &secret,
                    settings.jwt_issuer.as_deref().unwrap_or(DEV_ISSUER),
                    settings.jwt_audience.as_deref().unwrap_or(DEV_AUDIENCE),
                    &settings.jwt_user_claim,
                ))
            }
        }
    }

    pub fn shared_secret(secret: &[u8], issuer: &str, audience: &str, user_claim: &str) -> Self {
        Self {
            mode: Mode::Shared(DecodingKey::from_secret(secret)),
            issuers: values(issuer),
            audiences: values(audience),
            user_claim: user_claim.to_owned(),
        }
    }

    pub fn jwks(source: KeySource, policy: JwksPolicy, issuer: &str, audience: &str, user_claim: &str) -> Self {
        Self {
            mode: Mode::Jwks(JwksCache::new(source, policy)),
            issuers: values(issuer),
            audiences: values(audience),
            user_claim: user_claim.to_owned(),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Shared(_) => "shared-secret",
            Mode::Jwks(_) => "jwks",
        }
    }

    /// The signing-key cache's state (JWKS mode): fresh or stale, and how often a stale set
    /// judged requests because the provider could not be reached, with the last reason.
    pub fn key_status(&self) -> Option<super::jwks::KeyCacheStatus> {
        match &self.mode {
            Mode::Shared(_) => None,
            Mode::Jwks(cache) => Some(cache.status()),
        }
    }

    /// Checks an `Authorization` header value and returns the caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<UserId, AuthError> {
        let token = bearer_token(authorization).ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(format!("header: {e}")))?;
        let key = match &self.mode {
            Mode::Shared(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(AuthError::Invalid(format!("algorithm {:?} not accepted", header.alg)));
                }
                key.clone()
            }
            Mode::Jwks(_) => {
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(AuthError::Invalid(format!("algorithm {:?} not accepted", header.alg)));
                }
                let kid = header.kid.as_deref().ok_or_else(|| AuthError::Invalid("no kid".into()))?;
                self.key_for(kid, header.alg).await?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&self.issuers);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let user = data
            .claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= 256 && !u.chars().any(char::is_control))
            .ok_or_else(|| AuthError::Invalid(format!("claim {} missing or not a string", self.user_claim)))?;
        Ok(UserId(user.to_owned()))
    }

    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let Mode::Jwks(cache) = &self.mode else {
            unreachable!("key_for is only called in JWKS mode");
        };
        match cache.lookup(kid).await {
            Lookup::Found(key, declared) => {
                // A key that declares its algorithm may only be used with it.
                if let Some(declared) = declared
                    && !declared_matches(declared, alg)
                {
                    return Err(AuthError::Invalid(format!("kid {kid} is not a {alg:?} key")));
                }
                Ok(key)
            }
            Lookup::Unknown => Err(AuthError::Invalid(format!("unknown kid {kid}"))),
            Lookup::Unavailable(e) => Err(AuthError::KeysUnavailable(e)),
        }
    }
}

fn declared_matches(declared: jsonwebtoken::jwk::KeyAlgorithm, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::KeyAlgorithm as K;
    matches!((declared, alg), (K::RS256, Algorithm::RS256) | (K::ES256, Algorithm::ES256))
}

fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Signs a development token for the shared-secret mode.
pub fn dev_token(secret: &[u8], user: &str, ttl: Duration) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": user,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
    });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing cannot fail")
}

/// The development secret: `configured` if given, else the one stored under the data
/// directory, created (32 random bytes, mode 0600) on first use.
pub fn dev_secret(configured: Option<&str>, data_dir: &std::path::Path) -> std::io::Result<Vec<u8>> {
    kept_secret(configured, data_dir, "dev-jwt-secret")
}

/// `configured` when set; else the random secret kept in `data_dir/name` (made on first use,
/// mode 0600; a concurrent first use by another process is taken, not overwritten).
pub fn kept_secret(configured: Option<&str>, data_dir: &std::path::Path, name: &str) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    let secret = hex::encode(raw);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(secret.as_bytes())?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[tokio::test]
    async fn dev_tokens_are_accepted_and_tampering_is_not() {
        let auth = Authenticator::shared_secret(b"s3cret", DEV_ISSUER, DEV_AUDIENCE, "sub");
        let token = dev_token(b"s3cret", "alice", Duration::from_secs(60));
        let user = auth.authenticate(Some(&format!("Bearer {token}"))).await.unwrap();
        assert_eq!(user.as_str(), "alice");
        let other = dev_token(b"other", "alice", Duration::from_secs(60));
        assert!(matches!(auth.authenticate(Some(&format!("Bearer {other}"))).await, Err(AuthError::Invalid(_))));
        assert!(matches!(auth.authenticate(None).await, Err(AuthError::Missing)));
    }

    #[test]
    fn the_dev_secret_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_secret(None, dir.path()).unwrap();
        let b = dev_secret(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(dev_secret(Some("given"), dir.path()).unwrap(), b"given");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("dev-jwt-secret")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
