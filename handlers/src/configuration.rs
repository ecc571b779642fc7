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

    /// Where invoices are stored: `files` (under the data directory) or `blob` (Azure Blob
    /// Storage, or Azurite locally).
    #[arg(long, env = "WARRANTY_INVOICE_STORE", default_value = "files", value_parser = ["files", "blob"])]
    pub invoice_store: String,

    /// Blob service URL for the managed identity (Functions identity-based connection
    /// convention), e.g. https://<account>.blob.core.windows.net.
    #[arg(long, env = "InvoiceStorage__blobServiceUri")]
    pub blob_service_uri: Option<String>,

    /// A storage connection string, for local use only (Azurite: `UseDevelopmentStorage=true`).
    #[arg(long, env = "InvoiceStorage", hide_env_values = true)]
    pub blob_connection_string: Option<String>,

    /// The (private) container for invoices; created if missing.
    #[arg(long, env = "WARRANTY_BLOB_CONTAINER", default_value = "invoices")]
    pub blob_container: String,

    /// OCR engine for scans, photos and PDFs without a text layer: `local` (Tesseract) or
    /// `document-intelligence`. Embedded e-invoice XML is always read first.
    #[arg(long, env = "WARRANTY_OCR_ENGINE", default_value = "local", value_parser = ["local", "document-intelligence"])]
    pub ocr_engine: String,

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

    /// Days the invoice date may differ from the purchase date and still match.
    #[arg(long, env = "WARRANTY_OCR_DATE_TOLERANCE_DAYS", default_value_t = 3)]
    pub ocr_date_tolerance_days: u32,

    /// Document Intelligence endpoint, e.g. https://<name>.cognitiveservices.azure.com.
    #[arg(long, env = "WARRANTY_DOCINTEL_ENDPOINT")]
    pub docintel_endpoint: Option<String>,

    /// Document Intelligence key (local use; in Azure use managed identity).
    #[arg(long, env = "WARRANTY_DOCINTEL_KEY", hide_env_values = true)]
    pub docintel_key: Option<String>,

    /// Client id of the user-assigned managed identity the app authenticates to Azure services
    /// with (both slots share one). Unset: the system-assigned identity.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub managed_identity_client_id: Option<String>,

    /// Where products live: `sqlite` (embedded, under the data directory) or `cosmos`.
    #[arg(long, env = "WARRANTY_PRODUCT_STORE", default_value = "sqlite", value_parser = ["sqlite", "cosmos"])]
    pub product_store: String,

    /// Cosmos DB account endpoint for the managed identity (Functions' identity-based
    /// connection convention), e.g. `https://<account>.documents.azure.com:443/`.
    #[arg(long, env = "CosmosDb__accountEndpoint")]
    pub cosmos_endpoint: Option<String>,

    /// A Cosmos DB connection string (`AccountEndpoint=…;AccountKey=…;`), local use only.
    #[arg(long, env = "CosmosDb", hide_env_values = true)]
    pub cosmos_connection_string: Option<String>,

    #[arg(long, env = "WARRANTY_COSMOS_DATABASE", default_value = "warranty")]
    pub cosmos_database: String,

    #[arg(long, env = "WARRANTY_COSMOS_CONTAINER", default_value = "products")]
    pub cosmos_container: String,

    /// Region the Cosmos DB client routes to first (nearest); defaults to the app's own region
    /// (`REGION_NAME`, set by App Service), else East US.
    #[arg(long, env = "WARRANTY_COSMOS_REGION")]
    pub cosmos_region: Option<String>,

    /// Age after which the `RepublishPendingOcr` timer sends an unconfirmed OCR event again.
    #[arg(long, env = "WARRANTY_OCR_REPUBLISH_AFTER_SECS", default_value_t = 60)]
    pub ocr_republish_after_secs: u64,

    /// Deliver the local OCR queue to /ProcessInvoiceOcr (the embedded default's stand-in for
    /// Service Bus). Off when the Functions host delivers Service Bus messages.
    #[arg(long, env = "WARRANTY_OCR_DISPATCHER", default_value_t = true, action = clap::ArgAction::Set)]
    pub ocr_dispatcher: bool,

    /// Where the relay sends queued OCR events: `local` (this process's /ProcessInvoiceOcr) or
    /// `servicebus` (the queue the Functions host's trigger reads).
    #[arg(long, env = "WARRANTY_OCR_DELIVERY", default_value = "local", value_parser = ["local", "servicebus"])]
    pub ocr_delivery: String,

    /// Service Bus namespace for the managed identity (shared with the trigger's identity-based
    /// connection), e.g. `<name>.servicebus.windows.net`.
    #[arg(long, env = "ServiceBusConnection__fullyQualifiedNamespace")]
    pub servicebus_namespace: Option<String>,

    /// A Service Bus connection string with a send-only SAS policy, local use only.
    #[arg(long, env = "ServiceBusConnection", hide_env_values = true)]
    pub servicebus_connection_string: Option<String>,

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

    /// Messages handled at once.
    #[arg(long, env = "WARRANTY_OCR_WORKERS", default_value_t = 1)]
    pub ocr_workers: usize,

    /// How often an idle local dispatcher looks at the queue, in milliseconds, besides being
    /// woken at once by every registration or invoice replacement (lock expiries and retries).
    #[arg(long, env = "WARRANTY_OCR_IDLE_POLL_MS", default_value_t = 1000)]
    pub ocr_idle_poll_ms: u64,

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
            invoice_store: "files".into(),
            blob_service_uri: None,
            blob_connection_string: None,
            blob_container: "invoices".into(),
            ocr_engine: "local".into(),
            tesseract_path: "tesseract".into(),
            pdftoppm_path: "pdftoppm".into(),
            ocr_languages: "deu+fra+eng".into(),
            ocr_timeout_secs: 60,
            ocr_max_pages: 5,
            ocr_max_pixels: 40_000_000,
            ocr_dpi: 200,
            ocr_psm: 6,
            ocr_date_tolerance_days: 3,
            docintel_endpoint: None,
            docintel_key: None,
            managed_identity_client_id: None,
            product_store: "sqlite".into(),
            cosmos_endpoint: None,
            cosmos_connection_string: None,
            cosmos_database: "warranty".into(),
            cosmos_container: "products".into(),
            cosmos_region: None,
            ocr_republish_after_secs: 60,
            // Tests that exercise the dispatcher turn it on; the rest inspect the queue undisturbed.
            ocr_dispatcher: false,
            ocr_delivery: "local".into(),
            servicebus_namespace: None,
            servicebus_connection_string: None,
            ocr_queue: "invoice-ocr".into(),
            ocr_lock_secs: 300,
            ocr_max_delivery_count: 10,
            ocr_retry_base_ms: 2000,
            ocr_retry_max_secs: 300,
            ocr_workers: 1,
            ocr_idle_poll_ms: 1000,
        }
    }
}
