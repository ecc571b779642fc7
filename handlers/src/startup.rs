//! Wiring: settings → adapters → services → HTTP server on a bound port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::embedded::dispatcher::{Dispatcher, DispatcherConfig, Sink};
use crate::adapters::embedded::queue::SqliteOcrQueue;
use crate::adapters::embedded::{FileInvoiceStore, SqliteProductRepository};
use crate::adapters::ocr::docintel::{Credential, DocumentIntelligence};
use crate::adapters::ocr::tesseract::TesseractConfig;
use crate::adapters::ocr::{InvoiceReaders, ReaderLimits};
use crate::application::Services;
use crate::configuration::Settings;
use crate::domain::BrandCatalog;
use crate::inbound::auth::{self, Authenticator, KeySource};
use crate::inbound::http::{self as api, AppState};
use crate::ports::SystemClock;

pub use crate::build_info::{REVISION, VERSION};

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
    #[error("cannot listen on port {0}: {1}")]
    Bind(u16, std::io::Error),
}

/// The app's managed identity: the user-assigned one named by `AZURE_CLIENT_ID`, else the
/// system-assigned one.
pub fn managed_identity(
    settings: &Settings,
) -> azure_core::Result<std::sync::Arc<azure_identity::ManagedIdentityCredential>> {
    use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
    let options = settings.managed_identity_client_id.as_ref().map(|id| ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId(id.clone())),
        ..Default::default()
    });
    ManagedIdentityCredential::new(options)
}

pub fn authenticator(settings: &Settings) -> Result<Authenticator, StartupError> {
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
            Ok(Authenticator::jwks(
                source,
                Duration::from_secs(settings.jwks_min_refresh_secs),
                iss,
                aud,
                &settings.jwt_user_claim,
            ))
        }
        None => {
            let secret = auth::dev_secret(settings.dev_jwt_secret.as_deref(), &settings.data_dir)
                .map_err(|e| StartupError::DataDir(settings.data_dir.display().to_string(), e))?;
            Ok(Authenticator::shared_secret(
                &secret,
                settings.jwt_issuer.as_deref().unwrap_or(auth::DEV_ISSUER),
                settings.jwt_audience.as_deref().unwrap_or(auth::DEV_AUDIENCE),
                &settings.jwt_user_claim,
            ))
        }
    }
}

/// A bound, not yet running, application.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    readers: Arc<InvoiceReaders>,
    dispatcher: Option<(SqliteOcrQueue, DispatcherConfig)>,
    /// `Some` when queued events go to Service Bus instead of this process.
    servicebus: Option<crate::adapters::servicebus::ServiceBusPublisher>,
}

fn servicebus(settings: &Settings) -> Result<Option<crate::adapters::servicebus::ServiceBusPublisher>, StartupError> {
    use crate::adapters::servicebus::{SasKey, ServiceBusPublisher, entra_auth};
    if settings.ocr_delivery != "servicebus" {
        return Ok(None);
    }
    let queue = &settings.ocr_queue;
    if let Some(cs) = &settings.servicebus_connection_string {
        let key = SasKey::parse(cs).map_err(StartupError::ServiceBusConfig)?;
        let namespace = key.endpoint.trim_start_matches("sb://").trim_end_matches('/').to_owned();
        // A connection string may name a local endpoint for contract tests (`Endpoint=http://…`).
        let namespace =
            if key.endpoint.starts_with("http") { key.endpoint.trim_end_matches('/').to_owned() } else { namespace };
        let resource = ServiceBusPublisher::resource_uri(&namespace, queue);
        return Ok(Some(ServiceBusPublisher::new(&namespace, queue, key.auth_source(resource))));
    }
    let Some(namespace) = &settings.servicebus_namespace else {
        return Err(StartupError::ServiceBusConfig("neither is set".into()));
    };
    let credential = managed_identity(settings).map_err(|e| StartupError::ServiceBusConfig(e.to_string()))?;
    Ok(Some(ServiceBusPublisher::new(namespace, queue, entra_auth(credential))))
}

async fn invoice_store(settings: &Settings) -> Result<Arc<dyn crate::ports::InvoiceStore>, StartupError> {
    use crate::adapters::blob::BlobInvoiceStore;
    use crate::adapters::blob::sas::ConnectionString;
    if settings.invoice_store == "files" {
        return Ok(Arc::new(FileInvoiceStore::open(&settings.data_dir.join("invoices"))?));
    }
    let container = &settings.blob_container;
    let store = if let Some(uri) = &settings.blob_service_uri {
        // Production: the app's managed identity; no key anywhere.
        let url = azure_core::http::Url::parse(&format!("{}/{container}", uri.trim_end_matches('/')))
            .map_err(|e| StartupError::BlobConfig(e.to_string()))?;
        let credential = managed_identity(settings).map_err(|e| StartupError::BlobConfig(e.to_string()))?;
        BlobInvoiceStore::new(url, Some(credential))?
    } else if let Some(cs) = &settings.blob_connection_string {
        let cs = ConnectionString::parse(cs).map_err(StartupError::BlobConfig)?;
        // A SAS valid for a year, signed at start-up; restarting re-signs it.
        let sas = cs
            .container_sas_url(container, chrono::Utc::now() + chrono::Duration::days(365))
            .map_err(StartupError::BlobConfig)?;
        let url = azure_core::http::Url::parse(&sas).map_err(|e| StartupError::BlobConfig(e.to_string()))?;
        BlobInvoiceStore::new(url, None)?
    } else {
        return Err(StartupError::BlobConfig("neither is set".into()));
    };
    store.ensure_container().await?;
    Ok(Arc::new(store))
}

/// The Cosmos DB container of products: managed identity in Azure, a key locally.
pub async fn cosmos_container(
    settings: &Settings,
) -> Result<azure_data_cosmos::clients::ContainerClient, StartupError> {
    use azure_data_cosmos::{AccountEndpoint, AccountReference, CosmosClient, RoutingStrategy};
    let err = |e: &dyn std::fmt::Display| StartupError::CosmosConfig(e.to_string());
    let account = if let Some(endpoint) = &settings.cosmos_endpoint {
        let endpoint: AccountEndpoint = endpoint.parse().map_err(|e| err(&e))?;
        let credential = managed_identity(settings).map_err(|e| err(&e))?;
        AccountReference::with_credential(endpoint, credential)
    } else if let Some(cs) = &settings.cosmos_connection_string {
        let part = |name: &str| {
            cs.split(';')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        let (Some(endpoint), Some(key)) = (part("AccountEndpoint"), part("AccountKey")) else {
            return Err(err(&"the connection string needs AccountEndpoint and AccountKey"));
        };
        let endpoint: AccountEndpoint = endpoint.parse().map_err(|e| err(&e))?;
        AccountReference::with_authentication_key(endpoint, azure_core::credentials::Secret::new(key))
    } else {
        return Err(err(&"neither is set"));
    };
    let region = settings
        .cosmos_region
        .clone()
        .or_else(|| std::env::var("REGION_NAME").ok())
        .unwrap_or_else(|| "East US".into());
    let client = CosmosClient::builder()
        .with_default_operation_options(crate::adapters::cosmos::operation_options())
        .build(account, RoutingStrategy::ProximityTo(region.into()))
        .await
        .map_err(|e| err(&e))?;
    // The database and container are infrastructure (Bicep): the app's identity may read and
    // write items but not create containers.
    client
        .database_client(settings.cosmos_database.as_str())
        .container_client(settings.cosmos_container.as_str(), None)
        .await
        .map_err(|e| err(&e))
}

/// What a caller may supply instead of building from settings (tests: the in-memory Cosmos DB
/// emulator, whose client cannot be reached through an endpoint).
#[derive(Default)]
pub struct Overrides {
    pub cosmos_container: Option<azure_data_cosmos::clients::ContainerClient>,
}

fn readers(settings: &Settings) -> Result<InvoiceReaders, StartupError> {
    invoice_readers(settings, &settings.data_dir.join("ocr-scratch"), None)
}

/// The invoice readers the settings describe, with scratch space at `scratch` and (development
/// only, for `warranty ocr-eval`) a cache of Tesseract's raw output.
pub fn invoice_readers(
    settings: &Settings,
    scratch: &std::path::Path,
    cache: Option<std::path::PathBuf>,
) -> Result<InvoiceReaders, StartupError> {
    let tesseract = TesseractConfig {
        tesseract: settings.tesseract_path.clone(),
        pdftoppm: settings.pdftoppm_path.clone(),
        languages: settings.ocr_languages.clone(),
        timeout: Duration::from_secs(settings.ocr_timeout_secs),
        dpi: settings.ocr_dpi,
        psm: settings.ocr_psm,
        scratch: scratch.to_owned(),
        cache,
    };
    let docintel = if settings.ocr_engine == "document-intelligence" {
        let Some(endpoint) = &settings.docintel_endpoint else {
            return Err(StartupError::DocIntelNeedsEndpoint);
        };
        let credential = match &settings.docintel_key {
            // Local use only.
            Some(key) => Credential::Key(key.clone()),
            // In Azure: the app's managed identity (role Cognitive Services User on the resource).
            None => {
                let identity = managed_identity(settings).map_err(|e| StartupError::DocIntelIdentity(e.to_string()))?;
                Credential::Token(std::sync::Arc::new(move || {
                    let identity = identity.clone();
                    Box::pin(async move {
                        use azure_core::credentials::TokenCredential;
                        let token = identity
                            .get_token(&["https://cognitiveservices.azure.com/.default"], None)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(token.token.secret().to_owned())
                    })
                }))
            }
        };
        Some(DocumentIntelligence::new(endpoint, credential, Duration::from_secs(120)))
    } else {
        None
    };
    let limits =
        ReaderLimits { max_pages: settings.ocr_max_pages, max_pixels: settings.ocr_max_pixels, dpi: settings.ocr_dpi };
    Ok(InvoiceReaders::new(tesseract, docintel, limits))
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: &Settings, overrides: Overrides) -> Result<Self, StartupError> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartupError::DataDir(dir.display().to_string(), e))?;
        let servicebus = servicebus(settings)?;
        let (products, queue, relay): (Arc<dyn crate::ports::ProductRepository>, _, _) = if settings.product_store
            == "cosmos"
        {
            let Some(publisher) = servicebus.clone() else {
                return Err(StartupError::CosmosNeedsServiceBus);
            };
            let container = match overrides.cosmos_container {
                Some(c) => c,
                None => cosmos_container(settings).await?,
            };
            let repo = Arc::new(crate::adapters::cosmos::CosmosProductRepository::new(container));
            let relay = crate::application::relay::Relay {
                pending: repo.clone(),
                publisher: Arc::new(publisher),
                republish_after: chrono::Duration::seconds(settings.ocr_republish_after_secs as i64),
            };
            (repo, None, Some(Arc::new(relay)))
        } else {
            let repo = SqliteProductRepository::open(&dir.join("warranty.sqlite3"), settings.sqlite_busy_timeout())?;
            let queue = repo.ocr_queue();
            (Arc::new(repo), Some(queue), None)
        };
        let invoices = invoice_store(settings).await?;
        let readers = Arc::new(readers(settings)?);
        let services = Services {
            relay,
            products,
            invoices,
            clock: Arc::new(SystemClock),
            catalog: Arc::new(BrandCatalog::bundled(settings.default_warranty_months)?),
            idempotency_ttl: settings.idempotency_ttl(),
            reader: readers.clone(),
            ocr_date_tolerance_days: settings.ocr_date_tolerance_days,
            ocr_wake: Arc::new(tokio::sync::Notify::new()),
        };
        let dispatcher = queue.filter(|_| settings.ocr_dispatcher).map(|queue| {
            (
                queue,
                DispatcherConfig {
                    lock: Duration::from_secs(settings.ocr_lock_secs.max(1)),
                    max_delivery_count: settings.ocr_max_delivery_count,
                    retry_base: Duration::from_millis(settings.ocr_retry_base_ms),
                    retry_max: Duration::from_secs(settings.ocr_retry_max_secs),
                    workers: settings.ocr_workers.max(1),
                    idle_poll: Duration::from_millis(settings.ocr_idle_poll_ms.max(1)),
                    binding: "message".into(),
                },
            )
        });
        let auth = authenticator(settings)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| StartupError::Bind(settings.port, e))?;
        Ok(Self {
            listener,
            state: Arc::new(AppState { services, auth, version: VERSION }),
            readers,
            dispatcher,
            servicebus,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let port = self.port();
        tracing::info!(port, auth = self.state.auth.mode_name(), version = VERSION, "listening");
        // Probe the OCR tools after the listener is up: start-up is not slowed by it.
        let readers = self.readers.clone();
        tokio::spawn(async move { readers.probe().await });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let dispatcher = self.dispatcher.map(|(queue, cfg)| {
            let wake = self.state.services.ocr_wake.clone();
            let sink = match self.servicebus {
                Some(publisher) => Sink::ServiceBus(publisher),
                None => Sink::Local { port },
            };
            tokio::spawn(Dispatcher::new(queue, cfg, sink, wake).run(stop_rx))
        });
        warp::serve(api::routes(self.state))
            .incoming(self.listener)
            .graceful(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .run()
            .await;
        if let Some(d) = dispatcher {
            let _ = d.await;
        }
    }
}

/// Completes on SIGTERM (the host stopping the worker) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
