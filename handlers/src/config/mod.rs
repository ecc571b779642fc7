//! Settings, from the environment (app settings in Azure, `local.settings.json` locally), one
//! struct per concern, flattened into the binary's command line. Every setting is listed in the
//! README's configuration table. Defaults are written once, in the `default_value`s below:
//! [`Settings::defaults`] reads them without looking at the environment.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};

/// A value that must never be printed (keys, connection strings, shared secrets): `Debug` and
/// `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (signing, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Why the app cannot start with these settings (or on this machine).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot use the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("{0}")]
    Store(#[from] crate::ports::Unavailable),
    #[error("{0}")]
    Catalog(#[from] crate::domain::brand_catalog::CatalogError),
    #[error("JWKS mode needs WARRANTY_JWT_ISSUER and WARRANTY_JWT_AUDIENCE")]
    JwksNeedsIssuerAndAudience,
    #[error("WARRANTY_OCR_ENGINE=document-intelligence needs WARRANTY_DOCINTEL_ENDPOINT")]
    DocIntelNeedsEndpoint,
    #[error("no managed identity for Document Intelligence: {0}")]
    DocIntelIdentity(String),
    #[error(
        "WARRANTY_INVOICE_STORE=blob needs InvoiceStorage__blobServiceUri (managed identity) or InvoiceStorage (connection string, local only): {0}"
    )]
    BlobConfig(String),
    #[error(
        "WARRANTY_OCR_DELIVERY=servicebus needs ServiceBusConnection__fullyQualifiedNamespace (managed identity) or ServiceBusConnection (connection string, local only): {0}"
    )]
    ServiceBusConfig(String),
    #[error(
        "WARRANTY_PRODUCT_STORE=cosmos needs CosmosDb__accountEndpoint (managed identity) or CosmosDb (connection string, local only), and an existing database and container: {0}"
    )]
    CosmosConfig(String),
    #[error("WARRANTY_PRODUCT_STORE=cosmos needs WARRANTY_OCR_DELIVERY=servicebus: Cosmos DB has no local queue")]
    CosmosNeedsServiceBus,
    #[error("WARRANTY_NOTIFICATION_HUB_CONNECTION_STRING is not usable: {0}")]
    NotificationHubConfig(String),
    #[error("cannot listen on port {0}: {1}")]
    Bind(u16, std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProductStoreKind {
    /// SQLite under the data directory (the embedded default).
    Sqlite,
    Cosmos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InvoiceStoreKind {
    /// Files under the data directory (the embedded default).
    Files,
    /// Azure Blob Storage (Azurite locally).
    Blob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OcrEngineChoice {
    /// Tesseract (and poppler) on this machine.
    Local,
    DocumentIntelligence,
}

/// Which local recognisers read scans and photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recognizers {
    /// PP-OCR and Tesseract, checked against each other.
    #[value(name = "pp-ocr+tesseract")]
    Both,
    #[value(name = "pp-ocr")]
    PpOcr,
    Tesseract,
}

/// Where `tools/models/fetch` puts the PP-OCR models and ONNX Runtime in a checkout; the image
/// sets `WARRANTY_OCR_MODELS_DIR` to its own copy.
pub const DEFAULT_MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.models");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OcrDeliveryKind {
    /// This process's `/ProcessInvoiceOcr`.
    Local,
    /// The Service Bus queue the Functions host's trigger reads.
    Servicebus,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub products: ProductStoreSettings,
    #[command(flatten)]
    pub invoices: InvoiceStoreSettings,
    #[command(flatten)]
    pub ocr: OcrSettings,
    #[command(flatten)]
    pub delivery: DeliverySettings,
    #[command(flatten)]
    pub identity: IdentitySettings,
    #[command(flatten)]
    pub sharing: SharingSettings,
    #[command(flatten)]
    pub reminders: ReminderSettings,
}

/// Expiry reminders: the local scheduler, delivery retries, and the push hub.
#[derive(Debug, Clone, Args)]
pub struct ReminderSettings {
    /// Seconds between reminder sweeps of the local scheduler inside `warranty serve` (embedded
    /// store only; in Azure the `SendExpiryReminders` timer function sweeps). 0: off.
    #[arg(long, env = "WARRANTY_REMINDER_SWEEP_SECS", default_value_t = 300)]
    pub reminder_sweep_secs: u64,
    /// Attempts per reminder delivery (push device, webhook) before it is dead-lettered.
    #[arg(long, env = "WARRANTY_REMINDER_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub reminder_max_attempts: u32,
    /// Seconds before the first retry of a failed delivery; doubled after each failure, at most
    /// six hours.
    #[arg(long, env = "WARRANTY_REMINDER_RETRY_BASE_SECS", default_value_t = 60)]
    pub reminder_retry_base_secs: u64,
    /// Reminder deliveries one instance keeps in flight at once (pushes and webhook calls).
    #[arg(long, env = "WARRANTY_REMINDER_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub reminder_concurrency: u16,
    /// Azure Notification Hubs connection string (`Endpoint=sb://…;SharedAccessKeyName=…;
    /// SharedAccessKey=…`, a Listen+Send rule; in Azure a Key Vault reference). Unset: no push.
    #[arg(long, env = "WARRANTY_NOTIFICATION_HUB_CONNECTION_STRING", hide_env_values = true)]
    pub notification_hub_connection_string: Option<Secret>,
    /// The notification hub's name.
    #[arg(long, env = "WARRANTY_NOTIFICATION_HUB_NAME", default_value = "warranty")]
    pub notification_hub_name: String,
}

/// The printable card's verification links and the calendar feed.
#[derive(Debug, Clone, Args)]
pub struct SharingSettings {
    /// HMAC key that signs verification links (in Azure: a Key Vault reference). Unset: a random
    /// one is kept in the data dir (embedded default only; links die with it).
    #[arg(long, env = "WARRANTY_VERIFICATION_KEY", hide_env_values = true)]
    pub verification_key: Option<Secret>,
    /// Days a verification link printed on a card stays valid.
    #[arg(long, env = "WARRANTY_VERIFICATION_LINK_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub verification_link_days: u32,
    /// Public base URL of the API, the one the OpenAPI document's paths are relative to
    /// (`https://<gateway>.azure-api.net/api`), for links on cards and in calendars. Unset: taken
    /// from the request (`X-Forwarded-Proto`/`-Host`, then `Host`) followed by `/api`.
    #[arg(long, env = "WARRANTY_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
}

/// The process: where it listens, where the embedded store keeps its files, the rules of registration.
#[derive(Debug, Clone, Args)]
pub struct ServerSettings {
    /// Port to listen on, on 127.0.0.1. The Functions host sets it.
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 7071)]
    pub port: u16,

    /// Directory for the embedded store (database, invoices, dev secret).
    #[arg(long, env = "WARRANTY_DATA_DIR", default_value = "./.warranty-data")]
    pub data_dir: PathBuf,

    /// Time a client has to send a request's head (line and headers), in seconds.
    #[arg(long, env = "WARRANTY_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Time a request body may go without a byte before the request fails, in seconds.
    #[arg(long, env = "WARRANTY_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub body_idle_timeout_secs: u64,

    /// Open connections at most (also kept 64 below the open-file limit, which the binary
    /// raises to its hard limit at start); past it new connections get `503 server_busy`.
    #[arg(long, env = "WARRANTY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Warranty months for brands not in the catalogue.
    #[arg(long, env = "WARRANTY_DEFAULT_MONTHS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub default_warranty_months: u32,

    /// How long an Idempotency-Key answer is remembered, in hours.
    #[arg(long, env = "WARRANTY_IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub idempotency_ttl_hours: u32,
    /// Seconds `DELETE /api/me` waits for the erasure before answering `202` (it goes on).
    #[arg(long, env = "WARRANTY_ERASURE_WAIT_SECS", default_value_t = 10)]
    pub erasure_wait_secs: u64,
    /// Most bytes of invoices and proofs in one part of `GET /api/me/export`, in MiB. The
    /// Functions host holds a forwarded answer whole in memory before sending it on, so a larger
    /// archive comes in parts, each linked from the one before (`Link: rel="next"`).
    #[arg(long, env = "WARRANTY_EXPORT_PART_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub export_part_mib: u64,
}

/// How bearer tokens are checked: an identity provider's JWKS, or the embedded default's shared secret.
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
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

    /// Lifetime of the signing keys when the JWKS answer has no `Cache-Control: max-age`, in
    /// seconds (and for a JWKS file).
    #[arg(long, env = "WARRANTY_JWKS_DEFAULT_TTL_SECS", default_value_t = 3600)]
    pub jwks_default_ttl_secs: u64,

    /// Longest lifetime of the signing keys, whatever `max-age` says, and the longest they are
    /// used while the identity provider cannot be reached, in seconds.
    #[arg(long, env = "WARRANTY_JWKS_MAX_TTL_SECS", default_value_t = 86_400)]
    pub jwks_max_ttl_secs: u64,

    /// Longest wait of a request with an unknown `kid` for the key set to be fetched, in
    /// milliseconds (then 503 `auth_unavailable`).
    #[arg(long, env = "WARRANTY_JWKS_UNKNOWN_KID_WAIT_MS", default_value_t = 2000)]
    pub jwks_unknown_kid_wait_ms: u64,

    /// First retry delay after a failed JWKS fetch, in milliseconds (doubles up to 30 s).
    #[arg(long, env = "WARRANTY_JWKS_RETRY_BASE_MS", default_value_t = 2000)]
    pub jwks_retry_base_ms: u64,

    /// How long past their lifetime the signing keys may still judge tokens while the identity
    /// provider cannot be reached, in seconds, when its answer carries no `stale-if-error`
    /// (RFC 5861); never past `WARRANTY_JWKS_MAX_TTL_SECS` since they were fetched.
    #[arg(long, env = "WARRANTY_JWKS_STALE_IF_ERROR_SECS", default_value_t = 3600)]
    pub jwks_stale_if_error_secs: u64,

    /// Accepted `iss` of tokens (several comma-separated). Defaults to the dev issuer in
    /// shared-secret mode; required in JWKS mode.
    #[arg(long, env = "WARRANTY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accepted `aud` of tokens (several comma-separated: a v1.0 Entra ID token names the App ID URI
    /// or the client id). Defaults to the dev audience in shared-secret mode; required in JWKS mode.
    #[arg(long, env = "WARRANTY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim that holds the user id.
    #[arg(long, env = "WARRANTY_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// HS256 secret for the embedded default. Unset: a random one is kept in the data dir.
    #[arg(long, env = "WARRANTY_DEV_JWT_SECRET", hide_env_values = true)]
    pub dev_jwt_secret: Option<Secret>,
}

/// Where products live: SQLite under the data directory, or Cosmos DB.
#[derive(Debug, Clone, Args)]
pub struct ProductStoreSettings {
    /// Where products live: `sqlite` (embedded, under the data directory) or `cosmos`.
    #[arg(long, env = "WARRANTY_PRODUCT_STORE", value_enum, default_value = "sqlite")]
    pub product_store: ProductStoreKind,

    /// How long a database write waits for a lock before answering 503, in milliseconds.
    #[arg(long, env = "WARRANTY_SQLITE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub sqlite_busy_timeout_ms: u64,

    /// Cosmos DB account endpoint for the managed identity (Functions' identity-based
    /// connection convention), e.g. `https://<account>.documents.azure.com:443/`.
    #[arg(long, env = "CosmosDb__accountEndpoint")]
    pub cosmos_endpoint: Option<String>,

    /// A Cosmos DB connection string (`AccountEndpoint=…;AccountKey=…;`), local use only.
    #[arg(long, env = "CosmosDb", hide_env_values = true)]
    pub cosmos_connection_string: Option<Secret>,

    #[arg(long, env = "WARRANTY_COSMOS_DATABASE", default_value = "warranty")]
    pub cosmos_database: String,

    #[arg(long, env = "WARRANTY_COSMOS_CONTAINER", default_value = "products")]
    pub cosmos_container: String,

    /// Region the Cosmos DB client routes to first (nearest); defaults to the app's own region
    /// (`REGION_NAME`, set by App Service), else East US.
    #[arg(long, env = "WARRANTY_COSMOS_REGION")]
    pub cosmos_region: Option<String>,
}

/// Where invoices live: files under the data directory, or Blob Storage.
#[derive(Debug, Clone, Args)]
pub struct InvoiceStoreSettings {
    /// Where invoices are stored: `files` (under the data directory) or `blob` (Azure Blob
    /// Storage, or Azurite locally).
    #[arg(long, env = "WARRANTY_INVOICE_STORE", value_enum, default_value = "files")]
    pub invoice_store: InvoiceStoreKind,

    /// Blob service URL for the managed identity (Functions identity-based connection
    /// convention), e.g. https://<account>.blob.core.windows.net.
    #[arg(long, env = "InvoiceStorage__blobServiceUri")]
    pub blob_service_uri: Option<String>,

    /// A storage connection string, for local use only (Azurite: `UseDevelopmentStorage=true`).
    #[arg(long, env = "InvoiceStorage", hide_env_values = true)]
    pub blob_connection_string: Option<Secret>,

    /// Age after which an invoice no product references is removed (reconciliation after an
    /// interrupted write), in seconds. Longer than any registration takes.
    #[arg(long, env = "WARRANTY_ORPHAN_GRACE_SECS", default_value_t = 600)]
    pub orphan_grace_secs: u64,

    /// How far back reconciliation looks at invoices, in hours.
    #[arg(long, env = "WARRANTY_ORPHAN_LOOKBACK_HOURS", default_value_t = 48)]
    pub orphan_lookback_hours: u64,

    /// Interval between reconciliation passes (one runs at start), in seconds.
    #[arg(long, env = "WARRANTY_ORPHAN_SWEEP_SECS", default_value_t = 3600)]
    pub orphan_sweep_secs: u64,

    /// The (private) container for invoices; created if missing.
    #[arg(long, env = "WARRANTY_BLOB_CONTAINER", default_value = "invoices")]
    pub blob_container: String,
}

/// How invoices are read.
#[derive(Debug, Clone, Args)]
pub struct OcrSettings {
    /// OCR engine for scans, photos and PDFs without a text layer: `local` (Tesseract) or
    /// `document-intelligence`. Embedded e-invoice XML is always read first.
    #[arg(long, env = "WARRANTY_OCR_ENGINE", value_enum, default_value = "local")]
    pub ocr_engine: OcrEngineChoice,

    /// The tesseract binary.
    #[arg(long, env = "WARRANTY_TESSERACT_PATH", default_value = "tesseract")]
    pub tesseract_path: PathBuf,

    /// poppler's pdftoppm (renders scanned PDFs for Tesseract).
    #[arg(long, env = "WARRANTY_PDFTOPPM_PATH", default_value = "pdftoppm")]
    pub pdftoppm_path: PathBuf,

    /// Tesseract languages.
    #[arg(long, env = "WARRANTY_OCR_LANGUAGES", default_value = "deu+fra+eng")]
    pub ocr_languages: String,

    /// Time limit for one OCR process (render or recognise), in seconds.
    #[arg(long, env = "WARRANTY_OCR_TIMEOUT_SECS", default_value_t = 60)]
    pub ocr_timeout_secs: u64,

    /// Pages read from one invoice.
    #[arg(long, env = "WARRANTY_OCR_MAX_PAGES", default_value_t = 5)]
    pub ocr_max_pages: usize,

    /// Longest time one invoice is read for, all engines and pages together, in seconds. A
    /// reading that takes longer is recorded as failed (`ocr_deadline_exceeded`). Must end
    /// inside host.json's `functionTimeout` (a test holds them together).
    #[arg(long, env = "WARRANTY_OCR_DEADLINE_SECS", default_value_t = 240)]
    pub ocr_deadline_secs: u64,

    /// Pixels per image or rendered page.
    #[arg(long, env = "WARRANTY_OCR_MAX_PIXELS", default_value_t = 40_000_000)]
    pub ocr_max_pixels: u64,

    /// Resolution scanned PDFs are rendered at.
    #[arg(long, env = "WARRANTY_OCR_DPI", default_value_t = 200)]
    pub ocr_dpi: u32,

    /// Tesseract's page-segmentation mode: 6 (one block of text) reads receipts and invoice
    /// rows best on the evaluation corpus (docs/benchmarks.md); 4 (one column of variable
    /// sizes) was the default before.
    #[arg(long, env = "WARRANTY_OCR_PSM", default_value_t = 6)]
    pub ocr_psm: u8,

    /// Local recognisers for scans and photos: `pp-ocr+tesseract` (both, checked against each
    /// other), `pp-ocr` or `tesseract`. An engine that is not installed steps aside.
    #[arg(long, env = "WARRANTY_OCR_RECOGNIZERS", value_enum, default_value = "pp-ocr+tesseract")]
    pub ocr_recognizers: Recognizers,

    /// Folder with the PP-OCR models, ONNX Runtime and PDFium (`det.onnx`, `rec.onnx`,
    /// `libonnxruntime.so`, `libpdfium.so`), as `tools/models/fetch` installs them.
    #[arg(long, env = "WARRANTY_OCR_MODELS_DIR", default_value = DEFAULT_MODELS_DIR)]
    pub ocr_models_dir: PathBuf,

    /// PP-OCR model instances (each reads one image at a time on one thread); default: one
    /// per two cores, at least one.
    #[arg(long, env = "WARRANTY_OCR_RECOGNIZER_INSTANCES")]
    pub ocr_recognizer_instances: Option<usize>,

    /// Reader processes at most (every uploaded file is parsed in one: decision 0025). Unset:
    /// one per core, no more than one per GiB of memory.
    #[arg(long, env = "WARRANTY_READER_WORKERS")]
    pub reader_workers: Option<usize>,

    /// Seconds a reader process waits for its next document before it ends.
    #[arg(long, env = "WARRANTY_READER_IDLE_SECS", default_value_t = 30)]
    pub reader_idle_secs: u64,

    /// A reader process's address space (`RLIMIT_AS`), MiB: a document that needs more fails
    /// alone.
    #[arg(long, env = "WARRANTY_READER_MEMORY_MIB", default_value_t = 3072)]
    pub reader_memory_mib: u64,

    /// The binary reader processes run (`warranty read-worker`). Unset: this binary.
    #[arg(long, env = "WARRANTY_READER_EXE")]
    pub reader_exe: Option<PathBuf>,

    /// Days the invoice date may differ from the purchase date and still match.
    #[arg(long, env = "WARRANTY_OCR_DATE_TOLERANCE_DAYS", default_value_t = 3)]
    pub ocr_date_tolerance_days: u32,

    /// Document Intelligence endpoint, e.g. https://<name>.cognitiveservices.azure.com.
    #[arg(long, env = "WARRANTY_DOCINTEL_ENDPOINT")]
    pub docintel_endpoint: Option<String>,

    /// Document Intelligence key (local use; in Azure use managed identity).
    #[arg(long, env = "WARRANTY_DOCINTEL_KEY", hide_env_values = true)]
    pub docintel_key: Option<Secret>,
}

/// How OCR events get from the store that records them to the handler that reads the invoice.
#[derive(Debug, Clone, Args)]
pub struct DeliverySettings {
    /// Age after which the `RepublishPendingOcr` timer sends an unconfirmed OCR event again.
    #[arg(long, env = "WARRANTY_OCR_REPUBLISH_AFTER_SECS", default_value_t = 60)]
    pub ocr_republish_after_secs: u64,

    /// Deliver the local OCR queue to /ProcessInvoiceOcr (the embedded default's stand-in for
    /// Service Bus). Off when the Functions host delivers Service Bus messages.
    #[arg(long, env = "WARRANTY_OCR_DISPATCHER", default_value_t = true, action = clap::ArgAction::Set)]
    pub ocr_dispatcher: bool,

    /// Where the relay sends queued OCR events: `local` (this process's /ProcessInvoiceOcr) or
    /// `servicebus` (the queue the Functions host's trigger reads).
    #[arg(long, env = "WARRANTY_OCR_DELIVERY", value_enum, default_value = "local")]
    pub ocr_delivery: OcrDeliveryKind,

    /// Service Bus namespace for the managed identity (shared with the trigger's identity-based
    /// connection), e.g. `<name>.servicebus.windows.net`.
    #[arg(long, env = "ServiceBusConnection__fullyQualifiedNamespace")]
    pub servicebus_namespace: Option<String>,

    /// A Service Bus connection string with a send-only SAS policy, local use only.
    #[arg(long, env = "ServiceBusConnection", hide_env_values = true)]
    pub servicebus_connection_string: Option<Secret>,

    /// The OCR queue.
    #[arg(long, env = "WARRANTY_OCR_QUEUE", default_value = "invoice-ocr")]
    pub ocr_queue: String,

    /// Lock (visibility timeout) of a delivered message, in seconds.
    #[arg(long, env = "WARRANTY_OCR_LOCK_SECS", default_value_t = 300)]
    pub ocr_lock_secs: u64,

    /// Deliveries before a message is dead-lettered.
    #[arg(long, env = "WARRANTY_OCR_MAX_DELIVERY_COUNT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ocr_max_delivery_count: u32,

    /// First retry delay after a failed delivery, in milliseconds (doubles per delivery).
    #[arg(long, env = "WARRANTY_OCR_RETRY_BASE_MS", default_value_t = 2000)]
    pub ocr_retry_base_ms: u64,

    /// Longest retry delay, in seconds.
    #[arg(long, env = "WARRANTY_OCR_RETRY_MAX_SECS", default_value_t = 300)]
    pub ocr_retry_max_secs: u64,

    /// Service Bus: delay before an OCR message that failed transiently comes back, in
    /// milliseconds; doubled per copy up to `WARRANTY_OCR_REQUEUE_MAX_MS`. The delivery itself
    /// completes, so an outage does not use up the queue's delivery count.
    #[arg(long, env = "WARRANTY_OCR_REQUEUE_BASE_MS", default_value_t = 5000)]
    pub ocr_requeue_base_ms: u64,

    /// Service Bus: longest delay before a put-back OCR message comes back, in milliseconds.
    #[arg(long, env = "WARRANTY_OCR_REQUEUE_MAX_MS", default_value_t = 30_000)]
    pub ocr_requeue_max_ms: u64,

    /// Service Bus: hours after the first transient failure during which a message is put back;
    /// later failures are left to the queue's redelivery and dead-letter queue.
    #[arg(long, env = "WARRANTY_OCR_REQUEUE_FOR_HOURS", default_value_t = 24)]
    pub ocr_requeue_for_hours: u32,

    /// Azure: OCR events the `RepublishPendingOcr` timer claims at a time (it takes batch after
    /// batch until none is due, for at most 4 minutes).
    #[arg(long, env = "WARRANTY_OCR_DRAIN_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub ocr_drain_batch: u64,

    /// Azure: OCR events the timer sends at once.
    #[arg(long, env = "WARRANTY_OCR_DRAIN_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub ocr_drain_concurrency: u64,

    /// Messages handled at once.
    #[arg(long, env = "WARRANTY_OCR_WORKERS", default_value_t = 1)]
    pub ocr_workers: usize,

    /// How often an idle local dispatcher looks at the queue, in milliseconds, besides being
    /// woken at once by every registration or invoice replacement (lock expiries and retries).
    #[arg(long, env = "WARRANTY_OCR_IDLE_POLL_MS", default_value_t = 1000)]
    pub ocr_idle_poll_ms: u64,
}

/// The Azure identity the app authenticates with.
#[derive(Debug, Clone, Args)]
pub struct IdentitySettings {
    /// Client id of the user-assigned managed identity the app authenticates to Azure services
    /// with (both slots share one). Unset: the system-assigned identity.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub managed_identity_client_id: Option<String>,
}

impl Settings {
    /// Every setting at its default, the environment ignored.
    pub fn defaults() -> Self {
        let cmd =
            Self::augment_args(clap::Command::new("warranty").no_binary_name(true)).mut_args(|a| a.env(None::<&str>));
        let matches = cmd.try_get_matches_from(Vec::<String>::new()).expect("the defaults parse");
        Self::from_arg_matches(&matches).expect("the defaults are valid settings")
    }

    /// Settings for tests and benchmarks: the defaults with a given data dir, an OS-chosen port,
    /// a fixed secret, and the local dispatcher off (tests that exercise it turn it on; the rest
    /// inspect the queue undisturbed).
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut s = Self::defaults();
        s.server.port = 0;
        s.server.data_dir = data_dir;
        s.auth.dev_jwt_secret = Some(Secret::new("test-secret-not-for-production"));
        s.delivery.ocr_dispatcher = false;
        // Tests sweep reminders themselves, at the times they choose.
        s.reminders.reminder_sweep_secs = 0;
        s
    }
}

impl ServerSettings {
    pub fn idempotency_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.idempotency_ttl_hours))
    }
}

impl ProductStoreSettings {
    pub fn sqlite_busy_timeout(&self) -> Duration {
        Duration::from_millis(self.sqlite_busy_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_declarations_and_secrets_never_print() {
        let d = Settings::defaults();
        assert_eq!(d.server.port, 7071);
        assert_eq!(d.products.product_store, ProductStoreKind::Sqlite);
        assert_eq!(d.invoices.blob_container, "invoices");
        assert_eq!(d.ocr.ocr_psm, 6);
        assert!(d.delivery.ocr_dispatcher);
        assert_eq!(d.auth.dev_jwt_secret, None);
        let mut t = Settings::for_tests("/tmp/x".into());
        t.invoices.blob_connection_string = Some(Secret::new("AccountName=a;AccountKey=c2VjcmV0"));
        let printed = format!("{t:?}");
        assert!(!printed.contains("c2VjcmV0") && !printed.contains("test-secret"), "{printed}");
        assert!(printed.contains("Secret(***)"));
    }
}
