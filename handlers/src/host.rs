//! Wiring: settings → adapters → services → HTTP server on a bound port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::azure::blob::BlobInvoiceStore;
use crate::adapters::azure::cosmos;
use crate::adapters::azure::identity::Identity;
use crate::adapters::azure::servicebus::ServiceBusPublisher;
use crate::adapters::embedded::local_handler::LocalHandler;
use crate::adapters::embedded::{FileInvoiceStore, SqliteProductRepository};
use crate::adapters::ocr::InvoiceReaders;
use crate::application::Services;
use crate::application::outbox::{self, Drive};
use crate::application::reconcile::{self, ReconcilePolicy};
use crate::config::{InvoiceStoreKind, ProductStoreKind, Settings};
use crate::domain::BrandCatalog;
use crate::inbound::auth::Authenticator;
use crate::inbound::http::{self as api, AppState, server};
use crate::ports::{InvoiceStore, OcrPublisher, Outbox, ProductRepository, SystemClock};

pub use crate::build_info::{REVISION, VERSION};
pub use crate::config::StartupError;

/// A bound, not yet running, application.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    readers: Arc<InvoiceReaders>,
    /// Runs the outbox worker (embedded store with its dispatcher on).
    worker: bool,
    reconcile: ReconcilePolicy,
    reconcile_every: Duration,
    /// Local reminder sweeps (embedded store), if on.
    reminder_sweep: Option<Duration>,
    limits: server::Limits,
    body_idle: Duration,
}

/// Raises the soft open-file limit to the hard one (every connection and upload holds a
/// descriptor); returns the soft limit in force.
pub fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// Allocations at or above this size are mapped on their own and unmapped when freed.
pub const LARGE_ALLOCATION: usize = 256 * 1024;

/// Makes the 1 MiB upload blocks go back to the operating system when they are freed.
///
/// glibc raises its mmap threshold every time a mapped chunk is freed (up to 32 MiB), so after
/// the first staged block every later one is carved from a thread's heap arena; with 32 uploads
/// on a dozen threads the arenas keep tens of MiB that no upload uses any more. A fixed
/// threshold switches that adjustment off. Call before the runtime starts its threads.
pub fn return_large_buffers_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; M_MMAP_THRESHOLD takes a byte count.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION as libc::c_int);
    }
}

/// What a caller may supply instead of building from settings (tests: the in-memory Cosmos DB
/// emulator, whose client cannot be reached through an endpoint).
#[derive(Default)]
pub struct Overrides {
    pub cosmos_container: Option<azure_data_cosmos::clients::ContainerClient>,
    /// The clock the use cases read (tests move it by hand); the wall clock when unset.
    pub clock: Option<Arc<dyn crate::ports::Clock>>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: &Settings, overrides: Overrides) -> Result<Self, StartupError> {
        // Before anything opens a descriptor: connections and uploads each hold one.
        let open_files = raise_open_file_limit();
        let dir = &settings.server.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartupError::DataDir(dir.display().to_string(), e))?;
        let identity = Identity::new(&settings.identity);
        let servicebus = ServiceBusPublisher::from_settings(&settings.delivery, &identity)?;
        let delivery = &settings.delivery;
        let mut policy = outbox::Policy {
            drive: Drive::Worker,
            min_age: Duration::from_secs(delivery.ocr_republish_after_secs),
            lock: Duration::from_secs(delivery.ocr_lock_secs.max(1)),
            max_delivery_count: delivery.ocr_max_delivery_count,
            retry_base: Duration::from_millis(delivery.ocr_retry_base_ms),
            retry_max: Duration::from_secs(delivery.ocr_retry_max_secs),
            workers: delivery.ocr_workers.max(1),
            idle_poll: Duration::from_millis(delivery.ocr_idle_poll_ms.max(1)),
        };
        let (products, events, reminder_store): (
            Arc<dyn ProductRepository>,
            Arc<dyn Outbox>,
            Arc<dyn crate::ports::ReminderStore>,
        ) = match settings.products.product_store {
            ProductStoreKind::Cosmos => {
                if servicebus.is_none() {
                    return Err(StartupError::CosmosNeedsServiceBus);
                }
                let container = match overrides.cosmos_container {
                    Some(c) => c,
                    None => cosmos::container_from_settings(&settings.products, &identity).await?,
                };
                let repo = Arc::new(cosmos::CosmosProductRepository::new(container));
                policy.drive = Drive::AtWriteAndTimer;
                (repo.clone(), repo.clone(), repo)
            }
            ProductStoreKind::Sqlite => {
                let repo = SqliteProductRepository::open(
                    &dir.join("warranty.sqlite3"),
                    settings.products.sqlite_busy_timeout(),
                )?;
                let queue = Arc::new(repo.ocr_queue());
                policy.min_age = Duration::ZERO;
                let repo = Arc::new(repo);
                (repo.clone(), queue, repo)
            }
        };
        let invoices: Arc<dyn InvoiceStore> = match settings.invoices.invoice_store {
            InvoiceStoreKind::Files => Arc::new(FileInvoiceStore::open(&dir.join("invoices"))?),
            InvoiceStoreKind::Blob => Arc::new(BlobInvoiceStore::from_settings(&settings.invoices, &identity).await?),
        };
        let readers =
            Arc::new(InvoiceReaders::from_settings(&settings.ocr, &identity, &dir.join("ocr-scratch"), None)?);
        let auth = Authenticator::from_settings(&settings.auth, dir)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.server.port));
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| StartupError::Bind(settings.server.port, e))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.server.port);
        // Events go to Service Bus when configured, else to this process's own trigger endpoint.
        let publisher: Arc<dyn OcrPublisher> = match servicebus {
            Some(bus) => Arc::new(bus),
            None => Arc::new(LocalHandler::new(port, policy.lock)),
        };
        let worker = policy.drive == Drive::Worker && delivery.ocr_dispatcher;
        let services = Services {
            outbox: Arc::new(outbox::Relay::new(events, publisher, policy)),
            products,
            invoices,
            clock: overrides.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
            catalog: Arc::new(BrandCatalog::bundled(settings.server.default_warranty_months)?),
            idempotency_ttl: settings.server.idempotency_ttl(),
            reader: readers.clone(),
            ocr_date_tolerance_days: settings.ocr.ocr_date_tolerance_days,
            reminders: crate::application::reminders::Reminders {
                store: reminder_store,
                push: match &settings.reminders.notification_hub_connection_string {
                    None => None,
                    Some(cs) => Some(Arc::new(
                        crate::adapters::notify::hubs::NotificationHub::new(
                            cs,
                            &settings.reminders.notification_hub_name,
                        )
                        .map_err(StartupError::NotificationHubConfig)?,
                    )),
                },
                webhook: Arc::new(crate::adapters::notify::webhook::WebhookNotifier::default()),
                policy: crate::application::reminders::Policy {
                    max_attempts: settings.reminders.reminder_max_attempts,
                    retry_base: Duration::from_secs(settings.reminders.reminder_retry_base_secs.max(1)),
                    ..Default::default()
                },
            },
            links: {
                if settings.sharing.verification_key.is_none()
                    && settings.products.product_store == crate::config::ProductStoreKind::Cosmos
                {
                    tracing::warn!(
                        "WARRANTY_VERIFICATION_KEY is not set: card links are signed with a key kept in the data directory, which other instances do not share"
                    );
                }
                crate::application::sharing::LinkPolicy {
                    key: crate::inbound::auth::kept_secret(
                        settings.sharing.verification_key.as_ref().map(crate::config::Secret::expose),
                        &settings.server.data_dir,
                        "verification-key",
                    )
                    .map_err(|e| StartupError::DataDir(settings.server.data_dir.display().to_string(), e))?,
                    lifetime: chrono::Duration::days(i64::from(settings.sharing.verification_link_days)),
                }
            },
        };
        let reminder_sweep = (settings.products.product_store == ProductStoreKind::Sqlite
            && settings.reminders.reminder_sweep_secs > 0)
            .then(|| Duration::from_secs(settings.reminders.reminder_sweep_secs));
        let reconcile = ReconcilePolicy {
            grace: Duration::from_secs(settings.invoices.orphan_grace_secs),
            lookback: Duration::from_secs(settings.invoices.orphan_lookback_hours.saturating_mul(3600)),
        };
        let max_connections = settings.server.max_connections.min(open_files.saturating_sub(64).max(16) as usize);
        if max_connections < settings.server.max_connections {
            tracing::info!(max_connections, open_files, "connection ceiling kept below the open-file limit");
        }
        Ok(Self {
            listener,
            state: Arc::new(AppState {
                services,
                auth,
                version: VERSION,
                public_base_url: settings.sharing.public_base_url.clone().map(|u| u.trim_end_matches('/').to_owned()),
                erasure_wait: Duration::from_secs(settings.server.erasure_wait_secs),
            }),
            readers,
            worker,
            reconcile,
            reconcile_every: Duration::from_secs(settings.invoices.orphan_sweep_secs.max(1)),
            reminder_sweep,
            limits: server::Limits {
                header_timeout: Duration::from_secs(settings.server.header_timeout_secs.max(1)),
                max_connections,
            },
            body_idle: Duration::from_secs(settings.server.body_idle_timeout_secs.max(1)),
        })
    }

    /// The use cases' services (tests drive the reminder sweep through them).
    pub fn services(&self) -> Services {
        self.state.services.clone()
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
        let worker = self.worker.then(|| tokio::spawn(self.state.services.outbox.clone().run(stop_rx.clone())));
        // Invoices left without a product by an interrupted write: at start, then periodically.
        let (state, policy, every) = (self.state.clone(), self.reconcile, self.reconcile_every);
        let mut stop_reconcile = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                match reconcile::orphan_invoices(&state.services, state.services.clock.now(), policy).await {
                    Ok(r) if r.removed > 0 => {
                        tracing::info!(checked = r.checked, removed = r.removed, "reconciled invoices")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "invoice reconciliation failed; the next pass retries"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop_reconcile.changed() => return,
                }
            }
        });
        // Erasures a crash interrupted: finished at start, and looked for every 5 minutes.
        {
            let state = self.state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    match crate::application::privacy::resume_pending(&state.services).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(finished = n, "interrupted erasures finished"),
                        Err(e) => tracing::warn!(error = %e, "resuming erasures failed; the next pass retries"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        // Expiry reminders on the embedded store: the timer function's work, from here.
        if let Some(every) = self.reminder_sweep {
            let state = self.state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    let now = state.services.clock.now();
                    match crate::application::reminders::sweep(&state.services, now).await {
                        Ok(r) if r.created + r.delivered + r.retried + r.dead_lettered > 0 => {
                            tracing::info!(report = ?r, "reminder sweep")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "reminder sweep failed; the next one retries"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        let routes = api::routes(self.state, self.body_idle);
        server::serve(self.listener, routes, self.limits, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        if let Some(w) = worker {
            let _ = w.await;
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
