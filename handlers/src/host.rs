//! Wiring: settings → adapters → services → HTTP server on a bound port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::azure::blob::BlobInvoiceStore;
use crate::adapters::azure::cosmos;
use crate::adapters::azure::identity::Identity;
use crate::adapters::azure::servicebus::ServiceBusPublisher;
use crate::adapters::embedded::dispatcher::{Dispatcher, DispatcherConfig, Sink};
use crate::adapters::embedded::queue::SqliteOcrQueue;
use crate::adapters::embedded::{FileInvoiceStore, SqliteProductRepository};
use crate::adapters::ocr::InvoiceReaders;
use crate::application::Services;
use crate::config::{InvoiceStoreKind, ProductStoreKind, Settings};
use crate::domain::BrandCatalog;
use crate::inbound::auth::Authenticator;
use crate::inbound::http::{self as api, AppState};
use crate::ports::SystemClock;

pub use crate::build_info::{REVISION, VERSION};
pub use crate::config::StartupError;

/// A bound, not yet running, application.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    readers: Arc<InvoiceReaders>,
    dispatcher: Option<(SqliteOcrQueue, DispatcherConfig)>,
    /// `Some` when queued events go to Service Bus instead of this process.
    servicebus: Option<ServiceBusPublisher>,
}

/// What a caller may supply instead of building from settings (tests: the in-memory Cosmos DB
/// emulator, whose client cannot be reached through an endpoint).
#[derive(Default)]
pub struct Overrides {
    pub cosmos_container: Option<azure_data_cosmos::clients::ContainerClient>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: &Settings, overrides: Overrides) -> Result<Self, StartupError> {
        let dir = &settings.server.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartupError::DataDir(dir.display().to_string(), e))?;
        let identity = Identity::new(&settings.identity);
        let servicebus = ServiceBusPublisher::from_settings(&settings.delivery, &identity)?;
        let (products, queue, relay): (Arc<dyn crate::ports::ProductRepository>, _, _) =
            match settings.products.product_store {
                ProductStoreKind::Cosmos => {
                    let Some(publisher) = servicebus.clone() else {
                        return Err(StartupError::CosmosNeedsServiceBus);
                    };
                    let container = match overrides.cosmos_container {
                        Some(c) => c,
                        None => cosmos::container_from_settings(&settings.products, &identity).await?,
                    };
                    let repo = Arc::new(cosmos::CosmosProductRepository::new(container));
                    let relay = crate::application::relay::Relay {
                        pending: repo.clone(),
                        publisher: Arc::new(publisher),
                        republish_after: chrono::Duration::seconds(settings.delivery.ocr_republish_after_secs as i64),
                    };
                    (repo, None, Some(Arc::new(relay)))
                }
                ProductStoreKind::Sqlite => {
                    let repo = SqliteProductRepository::open(
                        &dir.join("warranty.sqlite3"),
                        settings.products.sqlite_busy_timeout(),
                    )?;
                    let queue = repo.ocr_queue();
                    (Arc::new(repo), Some(queue), None)
                }
            };
        let invoices: Arc<dyn crate::ports::InvoiceStore> = match settings.invoices.invoice_store {
            InvoiceStoreKind::Files => Arc::new(FileInvoiceStore::open(&dir.join("invoices"))?),
            InvoiceStoreKind::Blob => Arc::new(BlobInvoiceStore::from_settings(&settings.invoices, &identity).await?),
        };
        let readers =
            Arc::new(InvoiceReaders::from_settings(&settings.ocr, &identity, &dir.join("ocr-scratch"), None)?);
        let services = Services {
            relay,
            products,
            invoices,
            clock: Arc::new(SystemClock),
            catalog: Arc::new(BrandCatalog::bundled(settings.server.default_warranty_months)?),
            idempotency_ttl: settings.server.idempotency_ttl(),
            reader: readers.clone(),
            ocr_date_tolerance_days: settings.ocr.ocr_date_tolerance_days,
            ocr_wake: Arc::new(tokio::sync::Notify::new()),
        };
        let dispatcher = queue.filter(|_| settings.delivery.ocr_dispatcher).map(|queue| {
            (
                queue,
                DispatcherConfig {
                    lock: Duration::from_secs(settings.delivery.ocr_lock_secs.max(1)),
                    max_delivery_count: settings.delivery.ocr_max_delivery_count,
                    retry_base: Duration::from_millis(settings.delivery.ocr_retry_base_ms),
                    retry_max: Duration::from_secs(settings.delivery.ocr_retry_max_secs),
                    workers: settings.delivery.ocr_workers.max(1),
                    idle_poll: Duration::from_millis(settings.delivery.ocr_idle_poll_ms.max(1)),
                    binding: "message".into(),
                },
            )
        });
        let auth = Authenticator::from_settings(&settings.auth, dir)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.server.port));
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| StartupError::Bind(settings.server.port, e))?;
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
