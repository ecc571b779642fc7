//! Settings, from the environment (app settings in Azure, `local.settings.json` locally).
//! Every setting is listed in the README's configuration table.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Port to listen on, on 127.0.0.1. The Functions host sets it.
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 7071)]
    pub port: u16,

    /// Directory for the embedded store (database, invoices, dev secret).
    #[arg(long, env = "WARRANTY_DATA_DIR", default_value = "./.warranty-data")]
    pub data_dir: PathBuf,

    /// Warranty months for brands not in the catalogue.
    #[arg(long, env = "WARRANTY_DEFAULT_MONTHS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub default_warranty_months: u32,

    /// How long an Idempotency-Key answer is remembered, in hours.
    #[arg(long, env = "WARRANTY_IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub idempotency_ttl_hours: u32,

    /// How long a database write waits for a lock before answering 503, in milliseconds.
    #[arg(long, env = "WARRANTY_SQLITE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub sqlite_busy_timeout_ms: u64,

    /// JWKS URL of the identity provider (Entra ID:
    /// https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys). Enables JWKS mode.
    #[arg(long, env = "WARRANTY_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// A JWKS file instead of a URL (air-gapped setups, tests). Enables JWKS mode.
    #[arg(long, env = "WARRANTY_JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,

    /// Least time between two JWKS refetches caused by an unknown `kid`, in seconds.
    #[arg(long, env = "WARRANTY_JWKS_MIN_REFRESH_SECS", default_value_t = 300)]
    pub jwks_min_refresh_secs: u64,

    /// Required `iss` of tokens. Defaults to the dev issuer in shared-secret mode; required in JWKS mode.
    #[arg(long, env = "WARRANTY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens. Defaults to the dev audience in shared-secret mode; required in JWKS mode.
    #[arg(long, env = "WARRANTY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim that holds the user id.
    #[arg(long, env = "WARRANTY_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// HS256 secret for the embedded default. Unset: a random one is kept in the data dir.
    #[arg(long, env = "WARRANTY_DEV_JWT_SECRET", hide_env_values = true)]
    pub dev_jwt_secret: Option<String>,
}

impl Settings {
    pub fn idempotency_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.idempotency_ttl_hours))
    }

    pub fn sqlite_busy_timeout(&self) -> Duration {
        Duration::from_millis(self.sqlite_busy_timeout_ms)
    }

    /// Settings for tests and benchmarks: a given data dir, an OS-chosen port, a fixed secret.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            port: 0,
            data_dir,
            default_warranty_months: 24,
            idempotency_ttl_hours: 24,
            sqlite_busy_timeout_ms: 5000,
            jwks_url: None,
            jwks_file: None,
            jwks_min_refresh_secs: 300,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_user_claim: "sub".into(),
            dev_jwt_secret: Some("test-secret-not-for-production".into()),
        }
    }
}
