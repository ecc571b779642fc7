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
use crate::application::Services;
use crate::application::outbox::{self, Drive};
use crate::application::reconcile::{self, ReconcilePolicy};
use crate::config::{InvoiceStoreKind, ProductStoreKind, Settings};
use crate::domain::BrandCatalog;
use crate::inbound::auth::Authenticator;
use crate::inbound::http::{self as api, AppState, server};
use crate::inbound::state::{Gate, StoreProgress};
use crate::ports::{InvoiceStore, OcrPublisher, Outbox, ProductRepository, SystemClock};

pub use crate::build_info::{REVISION, VERSION};
pub use crate::config::StartupError;

/// A bound, not yet running, application. Its stores may not be connected yet: see
/// [`Application::bind_with`].
pub struct Application {
    listener: tokio::net::TcpListener,
    gate: Arc<Gate>,
    plan: Arc<Plan>,
    background: Background,
    limits: server::Limits,
    body_idle: Duration,
}

/// Names of the stores in `/api/health`.
const PRODUCT_STORE: &str = "productStore";
const INVOICE_STORE: &str = "invoiceStore";

/// Everything checked from the settings before the port is bound (no network), and what
/// connecting the stores afterwards needs.
struct Plan {
    settings: Settings,
    /// Cosmos DB, when it holds the products.
    cosmos: Option<CosmosSource>,
    blob: Option<BlobInvoiceStore>,
    publisher: Arc<dyn OcrPublisher>,
    policy: outbox::Policy,
    readers: Arc<crate::adapters::ocr::worker::ReaderPool>,
    auth: Arc<Authenticator>,
    catalog: Arc<BrandCatalog>,
    clock: Arc<dyn crate::ports::Clock>,
    links: crate::application::sharing::LinkPolicy,
    push: Option<Arc<crate::adapters::notify::hubs::NotificationHub>>,
}

/// Where the products container comes from: the account the settings name, or a client the
/// caller made (tests: the in-memory emulator).
enum CosmosSource {
    Account(cosmos::CosmosTarget),
    Container(azure_data_cosmos::clients::ContainerClient),
}

type ProductStores = (Arc<dyn ProductRepository>, Arc<dyn Outbox>, Arc<dyn crate::ports::ReminderStore>);

impl Plan {
    /// Opens (SQLite) or connects to (Cosmos DB) the product store and checks that it answers.
    async fn connect_products(&self) -> Result<ProductStores, StartupError> {
        let settings = &self.settings;
        match &self.cosmos {
            Some(source) => {
                let container = match source {
                    CosmosSource::Container(c) => c.clone(),
                    CosmosSource::Account(target) => target.connect().await?,
                };
                let repo = Arc::new(cosmos::CosmosProductRepository::new(container));
                repo.health().await?;
                Ok((repo.clone(), repo.clone(), repo))
            }
            None => {
                let repo = SqliteProductRepository::open(
                    &settings.server.data_dir.join("warranty.sqlite3"),
                    settings.products.sqlite_busy_timeout(),
                )?;
                let queue = Arc::new(repo.ocr_queue());
                let repo = Arc::new(repo);
                Ok((repo.clone(), queue, repo))
            }
        }
    }

    /// Opens the invoice directory or makes sure the blob container exists.
    async fn connect_invoices(&self) -> Result<Arc<dyn InvoiceStore>, StartupError> {
        match &self.blob {
            Some(blob) => {
                blob.ensure_container().await?;
                Ok(Arc::new(blob.clone()))
            }
            None => Ok(Arc::new(FileInvoiceStore::open(&self.settings.server.data_dir.join("invoices"))?)),
        }
    }

    /// The running service over connected stores.
    fn assemble(&self, products: ProductStores, invoices: Arc<dyn InvoiceStore>) -> AppState {
        let (products, events, reminder_store) = products;
        let settings = &self.settings;
        let services = Services {
            outbox: Arc::new(outbox::Relay::new(events, self.publisher.clone(), self.policy.clone())),
            products,
            invoices,
            clock: self.clock.clone(),
            catalog: self.catalog.clone(),
            idempotency_ttl: settings.server.idempotency_ttl(),
            reader: Arc::new(crate::adapters::ocr::worker::PooledReaders(self.readers.clone())),
            ocr_date_tolerance_days: settings.ocr.ocr_date_tolerance_days,
            ocr_deadline: Duration::from_secs(settings.ocr.ocr_deadline_secs.max(1)),
            reminders: crate::application::reminders::Reminders {
                store: reminder_store,
                push: self.push.clone().map(|h| h as Arc<dyn crate::ports::PushRegistry>),
                webhook: Arc::new(crate::adapters::notify::webhook::WebhookNotifier::default()),
                policy: crate::application::reminders::Policy {
                    max_attempts: settings.reminders.reminder_max_attempts,
                    retry_base: Duration::from_secs(settings.reminders.reminder_retry_base_secs.max(1)),
                    concurrency: usize::from(settings.reminders.reminder_concurrency),
                    ..Default::default()
                },
            },
            links: self.links.clone(),
        };
        AppState {
            services,
            auth: self.auth.clone(),
            version: VERSION,
            public_base_url: settings.sharing.public_base_url.clone().map(|u| u.trim_end_matches('/').to_owned()),
            erasure_wait: Duration::from_secs(settings.server.erasure_wait_secs),
            export_part_bytes: settings.server.export_part_mib.saturating_mul(1024 * 1024),
            reconcile: reconcile_policy(settings),
        }
    }
}

/// Reconciliation's grace and look-back from the settings.
fn reconcile_policy(settings: &Settings) -> ReconcilePolicy {
    ReconcilePolicy {
        grace: Duration::from_secs(settings.invoices.orphan_grace_secs),
        lookback: Duration::from_secs(settings.invoices.orphan_lookback_hours.saturating_mul(3600)),
    }
}

/// What a failed connection attempt says in `/api/health`: a word, never the error's text
/// (which may hold an endpoint or a signed URL).
fn failure_kind(e: &StartupError) -> &'static str {
    match e {
        StartupError::Store(u) => match u.condition {
            crate::ports::Condition::Down => "unreachable",
            crate::ports::Condition::Busy => "busy",
            crate::ports::Condition::Full => "full",
        },
        StartupError::DataDir(..) => "unusable",
        _ => "refused",
    }
}

/// Longest wait for one connection attempt: an endpoint that accepts and never answers must not
/// hold the loop for the SDK's own timeouts.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(10);

/// One attempt at each store not yet connected; records the outcome on the gate.
async fn attempt<T>(
    gate: &Gate,
    store: &'static str,
    slot: &mut Option<T>,
    attempts: &mut u32,
    connect: impl Future<Output = Result<T, StartupError>>,
) -> Option<StartupError> {
    if slot.is_some() {
        return None;
    }
    *attempts += 1;
    let outcome = match tokio::time::timeout(CONNECT_ATTEMPT, connect).await {
        Ok(r) => r,
        Err(_) => {
            gate.record(store, StoreProgress { status: "down", attempts: *attempts, last_error: Some("timed_out") });
            tracing::warn!(store, attempts = *attempts, "store did not answer in time; retrying");
            return Some(StartupError::Store(crate::ports::Unavailable::new(store, "timed out")));
        }
    };
    match outcome {
        Ok(v) => {
            *slot = Some(v);
            gate.record(store, StoreProgress { status: "up", attempts: *attempts, last_error: None });
            tracing::info!(store, attempts = *attempts, "store connected");
            None
        }
        Err(e) => {
            let kind = failure_kind(&e);
            gate.record(store, StoreProgress { status: "down", attempts: *attempts, last_error: Some(kind) });
            tracing::warn!(store, attempts = *attempts, error = %e, "store not reachable yet; retrying");
            Some(e)
        }
    }
}

/// Connects the stores, retrying with backoff (0.25 s doubling to 10 s) until both answer, then
/// opens the gate. With `once`, gives up after the first round and returns its error.
async fn connect(gate: &Gate, plan: &Plan, once: bool) -> Result<(), StartupError> {
    let (mut products, mut invoices) = (None, None);
    let (mut pa, mut ia) = (0u32, 0u32);
    let mut delay = Duration::from_millis(250);
    loop {
        let (pe, ie) = tokio::join!(
            attempt(gate, PRODUCT_STORE, &mut products, &mut pa, plan.connect_products()),
            attempt(gate, INVOICE_STORE, &mut invoices, &mut ia, plan.connect_invoices()),
        );
        if let (Some(p), Some(i)) = (products.take(), invoices.take()) {
            gate.open(Arc::new(plan.assemble(p, i)));
            tracing::info!(after_ms = gate.started.elapsed().as_millis() as u64, "stores connected: ready");
            return Ok(());
        }
        if once && let Some(e) = pe.or(ie) {
            return Err(e);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
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
/// threshold switches that adjustment off.
///
/// Also caps glibc's heap arenas at one per core (its default is eight per core): each thread
/// that allocates gets an arena of its own up to the cap, and every arena keeps the pages it
/// touched, so at rest six arenas held about 0.6 MiB for threads that had only started. Threads
/// beyond the cap share arenas; small allocations still come from each thread's own cache.
/// Call before the runtime starts its threads.
pub fn return_large_buffers_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(64) as libc::c_int;
        // SAFETY: mallopt only changes allocator parameters; M_MMAP_THRESHOLD takes a byte
        // count and M_ARENA_MAX a number of arenas.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION as libc::c_int);
            libc::mallopt(libc::M_ARENA_MAX, cores);
        }
    }
}

/// Unmaps the pages of this program's own code and read-only data (`MADV_DONTNEED` on its
/// read-only file mappings) and returns how many KiB were mapped.
///
/// Start-up runs code that serving never runs again (settings, schema, route tables, the
/// dynamic loader's work), and each first touch of a page of code maps the 64 KiB around it (the
/// kernel's fault-around): about 12 MiB of a 22 MiB text segment after start. These pages are
/// clean copies of the file, shared with the page cache, so unmapping them loses nothing: the
/// next call into any of them maps it again from the page cache (a minor fault, no I/O).
/// Mappings that hold a private copy of a page (the relocated read-only data) are left alone —
/// for them the file is not the content.
pub fn release_startup_pages() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let (Ok(exe), Ok(smaps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/smaps"))
        else {
            return 0;
        };
        let exe = exe.to_string_lossy().into_owned();
        // (start, end, resident KiB, private KiB) of each read-only mapping of the program.
        let mut candidates: Vec<(usize, usize, u64, u64)> = Vec::new();
        let mut current: Option<usize> = None;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                current = None;
                if (perms == "r-xp" || perms == "r--p") && path == exe {
                    candidates.push((start, end, 0, u64::MAX));
                    current = Some(candidates.len() - 1);
                }
                continue;
            }
            let Some(i) = current else { continue };
            // A value that cannot be read counts as private: the mapping is then left alone.
            let kib = fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
            match first {
                "Rss:" => candidates[i].2 = kib,
                "Anonymous:" => candidates[i].3 = kib,
                _ => {}
            }
        }
        let mut released = 0;
        for (start, end, rss, private) in candidates {
            if private != 0 {
                continue;
            }
            // SAFETY: the range is one whole mapping of the program's file, read-only, without a
            // private page; MADV_DONTNEED only drops its page-table entries, so later accesses
            // map the file's unchanged pages again.
            if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
                released += rss;
            }
        }
        released
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// How often the host looks whether the service is at rest.
const QUIET_TICK: Duration = Duration::from_secs(1);

/// Ticks without a request begun or in flight after which the service is at rest.
const QUIET_TICKS: u32 = 2;

/// Tells when the service has come to rest: no request begun and none in flight for
/// [`QUIET_TICKS`] ticks; once per quiet period.
struct QuietWatch {
    seen: u64,
    quiet: u32,
    released: bool,
}

impl QuietWatch {
    /// Started at rest, just released, having seen `seen` requests.
    fn new(seen: u64) -> Self {
        Self { seen, quiet: 0, released: true }
    }

    /// One tick with the request counters now; true when the pages should be released.
    fn tick(&mut self, begun: u64, in_flight: usize) -> bool {
        if begun != self.seen || in_flight > 0 {
            self.seen = begun;
            self.quiet = 0;
            self.released = false;
            return false;
        }
        self.quiet += 1;
        if self.quiet >= QUIET_TICKS && !self.released {
            self.released = true;
            return true;
        }
        false
    }
}

/// One `GET /api/health` through this process's own listener (bound to localhost), answered
/// like any probe; the answer is read and dropped.
async fn request_health(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limit = Duration::from_secs(5);
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(limit, tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))).await
    else {
        return;
    };
    let request = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_ok() {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
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
    /// Binds the port and connects the stores before returning (tools and tests that need the
    /// stores at once; a store that does not answer is an error).
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Overrides::default()).await
    }

    pub async fn build_with(settings: &Settings, overrides: Overrides) -> Result<Self, StartupError> {
        let app = Self::bind_with(settings, overrides)?;
        connect(&app.gate, &app.plan, true).await?;
        Ok(app)
    }

    /// Checks the settings and binds the port; no network. The stores are connected by
    /// [`Self::run_until`] after the port answers (`serve`): the Functions host restarts a
    /// handler that does not answer `GET /` within its initialisation timeout.
    pub fn bind(settings: &Settings) -> Result<Self, StartupError> {
        Self::bind_with(settings, Overrides::default())
    }

    pub fn bind_with(settings: &Settings, overrides: Overrides) -> Result<Self, StartupError> {
        // Before anything opens a descriptor: connections and uploads each hold one.
        let open_files = raise_open_file_limit();
        let dir = &settings.server.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartupError::DataDir(dir.display().to_string(), e))?;
        let identity = Identity::new(&settings.identity);
        let servicebus = ServiceBusPublisher::from_settings(&settings.delivery, &identity)?.map(Arc::new);
        let delivery = &settings.delivery;
        let mut policy = outbox::Policy {
            drive: Drive::Worker,
            min_age: Duration::from_secs(delivery.ocr_republish_after_secs),
            lock: Duration::from_secs(delivery.ocr_lock_secs.max(1)),
            max_delivery_count: delivery.ocr_max_delivery_count,
            retry_base: Duration::from_millis(delivery.ocr_retry_base_ms),
            retry_max: Duration::from_secs(delivery.ocr_retry_max_secs),
            workers: delivery.ocr_workers.max(1),
            drain_batch: delivery.ocr_drain_batch as usize,
            drain_concurrency: delivery.ocr_drain_concurrency as usize,
            idle_poll: Duration::from_millis(delivery.ocr_idle_poll_ms.max(1)),
        };
        let cosmos = match settings.products.product_store {
            ProductStoreKind::Cosmos => {
                if servicebus.is_none() {
                    return Err(StartupError::CosmosNeedsServiceBus);
                }
                policy.drive = Drive::AtWriteAndTimer;
                Some(match overrides.cosmos_container {
                    Some(c) => CosmosSource::Container(c),
                    None => CosmosSource::Account(cosmos::CosmosTarget::from_settings(&settings.products, &identity)?),
                })
            }
            ProductStoreKind::Sqlite => {
                policy.min_age = Duration::ZERO;
                None
            }
        };
        let blob = match settings.invoices.invoice_store {
            InvoiceStoreKind::Files => None,
            InvoiceStoreKind::Blob => Some(BlobInvoiceStore::configured(&settings.invoices, &identity)?),
        };
        // Every uploaded file is parsed in a reader process (decision 0025); what an earlier run's
        // readers left in their folders is removed first.
        let scratch = dir.join("ocr-scratch");
        crate::adapters::ocr::worker::clear_scratch(&scratch);
        let readers = crate::adapters::ocr::worker::ReaderPool::new(
            crate::adapters::ocr::worker::WorkerSettings::from_settings(&settings.ocr, &scratch),
            crate::adapters::ocr::document_intelligence(&settings.ocr, &identity)?,
        );
        let auth = Arc::new(Authenticator::from_settings(&settings.auth, dir)?);
        let push = match &settings.reminders.notification_hub_connection_string {
            None => None,
            Some(cs) => Some(Arc::new(
                crate::adapters::notify::hubs::NotificationHub::new(cs, &settings.reminders.notification_hub_name)
                    .map_err(StartupError::NotificationHubConfig)?,
            )),
        };
        if settings.sharing.verification_key.is_none() && settings.products.product_store == ProductStoreKind::Cosmos {
            tracing::warn!(
                "WARRANTY_VERIFICATION_KEY is not set: card links are signed with a key kept in the data directory, which other instances do not share"
            );
        }
        let links = crate::application::sharing::LinkPolicy {
            key: crate::inbound::auth::kept_secret(
                settings.sharing.verification_key.as_ref().map(crate::config::Secret::expose),
                &settings.server.data_dir,
                "verification-key",
            )
            .map_err(|e| StartupError::DataDir(settings.server.data_dir.display().to_string(), e))?,
            lifetime: chrono::Duration::days(i64::from(settings.sharing.verification_link_days)),
        };
        let catalog = Arc::new(BrandCatalog::bundled(settings.server.default_warranty_months)?);
        // A std listener bound here and handed to tokio: binding needs no runtime, so the port
        // is open before anything else happens.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.server.port));
        let std_listener =
            std::net::TcpListener::bind(addr).map_err(|e| StartupError::Bind(settings.server.port, e))?;
        std_listener.set_nonblocking(true).map_err(|e| StartupError::Bind(settings.server.port, e))?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| StartupError::Bind(settings.server.port, e))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.server.port);
        // Events go to Service Bus when configured, else to this process's own trigger endpoint.
        let publisher: Arc<dyn OcrPublisher> = match &servicebus {
            Some(bus) => bus.clone(),
            None => Arc::new(LocalHandler::new(port, policy.lock)),
        };
        let requeue = servicebus.map(|bus| crate::inbound::state::Requeue {
            queue: bus,
            policy: crate::inbound::state::RequeuePolicy {
                base: Duration::from_millis(delivery.ocr_requeue_base_ms.max(1)),
                max: Duration::from_millis(delivery.ocr_requeue_max_ms.max(1)),
                give_up_after: chrono::Duration::hours(i64::from(delivery.ocr_requeue_for_hours)),
            },
        });
        let gate = Arc::new(Gate::new(VERSION, &[PRODUCT_STORE, INVOICE_STORE], requeue));
        let background = Background {
            worker: policy.drive == Drive::Worker && delivery.ocr_dispatcher,
            // On Cosmos DB (Azure) the `ReconcileInvoices` timer function runs it, once for all
            // instances; on the embedded store this process does, at start and periodically.
            reconcile: (settings.products.product_store == ProductStoreKind::Sqlite)
                .then(|| (reconcile_policy(settings), Duration::from_secs(settings.invoices.orphan_sweep_secs.max(1)))),
            reminder_sweep: (settings.products.product_store == ProductStoreKind::Sqlite
                && settings.reminders.reminder_sweep_secs > 0)
                .then(|| Duration::from_secs(settings.reminders.reminder_sweep_secs)),
        };
        let max_connections = settings.server.max_connections.min(open_files.saturating_sub(64).max(16) as usize);
        if max_connections < settings.server.max_connections {
            tracing::info!(max_connections, open_files, "connection ceiling kept below the open-file limit");
        }
        let plan = Arc::new(Plan {
            settings: settings.clone(),
            cosmos,
            blob,
            publisher,
            policy,
            readers,
            auth,
            catalog,
            clock: overrides.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
            links,
            push,
        });
        Ok(Self {
            listener,
            gate,
            plan,
            background,
            limits: server::Limits {
                header_timeout: Duration::from_secs(settings.server.header_timeout_secs.max(1)),
                max_connections,
            },
            body_idle: Duration::from_secs(settings.server.body_idle_timeout_secs.max(1)),
        })
    }

    /// The use cases' services (tests drive the reminder sweep through them). Only after the
    /// stores are connected ([`Self::build_with`]).
    pub fn services(&self) -> Services {
        self.gate.state().expect("the stores are connected (Application::build)").services.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests. Answers at once;
    /// connects the stores (if [`Self::bind`] did not) and starts the background work once they
    /// answer.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let port = self.port();
        tracing::info!(port, auth = self.plan.auth.mode_name(), version = VERSION, "listening");
        // Probe the OCR tools after the listener is up: start-up is not slowed by it.
        let readers = self.plan.readers.clone();
        let probed = tokio::spawn(async move { readers.probe().await });
        // Once started (probed and connected), the pages of start-up code go back to the page
        // cache: what stays mapped is what serving touches.
        {
            let gate = self.gate.clone();
            tokio::spawn(async move {
                let _ = probed.await;
                let state = gate.opened().await;
                // What the first probe and the first poll run only once runs now: a health
                // check through the listener (the connection's thread-locals and one-time
                // initialisations, the store checks' reader connection, schema and prepared
                // statement) and the OCR relay's look at its queue (its statement prepared). After
                // the release a probe or a poll then maps back only the code it runs every time,
                // not SQLite's parser (measured: 131 faults of 64 KiB before, docs/benchmarks.md).
                request_health(port).await;
                state.services.outbox.look().await;
                if let Ok(kib) = tokio::task::spawn_blocking(release_startup_pages).await {
                    tracing::debug!(kib, "start-up code unmapped");
                }
                // And again whenever the service has been at rest for a while: what the last
                // requests mapped goes back to the page cache until the next one.
                let mut watch = QuietWatch::new(api::request_activity().0);
                loop {
                    tokio::time::sleep(QUIET_TICK).await;
                    let (begun, in_flight) = api::request_activity();
                    if watch.tick(begun, in_flight)
                        && let Ok(kib) = tokio::task::spawn_blocking(release_startup_pages).await
                    {
                        tracing::debug!(kib, "code mapped by the last requests unmapped at rest");
                    }
                }
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if self.gate.state().is_none() {
            let (gate, plan) = (self.gate.clone(), self.plan.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = connect(&gate, &plan, false) => {}
                    _ = stop.changed() => {}
                }
            });
        }
        let background = {
            let gate = self.gate.clone();
            let mut stop = stop_rx.clone();
            let work = self.background;
            tokio::spawn(async move {
                let state = tokio::select! {
                    s = gate.opened() => s,
                    _ = stop.changed() => return None,
                };
                work.start(state, stop)
            })
        };
        let routes = api::routes(self.gate, self.body_idle);
        server::serve(self.listener, routes, self.limits, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        if let Ok(Some(w)) = background.await {
            let _ = w.await;
        }
    }
}

/// The work that runs beside the requests once the stores answer.
struct Background {
    /// Runs the outbox worker (embedded store with its dispatcher on).
    worker: bool,
    /// Local reconciliation (embedded store): what it looks at and how often.
    reconcile: Option<(ReconcilePolicy, Duration)>,
    /// Local reminder sweeps (embedded store), if on.
    reminder_sweep: Option<Duration>,
}

impl Background {
    /// Starts it; returns the outbox worker, which shutdown waits for.
    fn start(
        self,
        state: Arc<AppState>,
        stop_rx: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let worker = self.worker.then(|| tokio::spawn(state.services.outbox.clone().run(stop_rx.clone())));
        // Invoices left without a product by an interrupted write: at start, then periodically.
        if let Some((policy, every)) = self.reconcile {
            let state = state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    match crate::application::intakes::sweep(&state.services, state.services.clock.now()).await {
                        Ok(s) if s.expired + s.purged > 0 => {
                            tracing::info!(expired = s.expired, purged = s.purged, "intakes swept")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "the intake sweep failed; the next pass retries"),
                    }
                    match reconcile::orphan_invoices(&state.services, state.services.clock.now(), policy).await {
                        Ok(r) if r.removed > 0 => {
                            tracing::info!(checked = r.checked, removed = r.removed, "reconciled invoices")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "invoice reconciliation failed; the next pass retries"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        // Erasures a crash interrupted: finished at start, and looked for every 5 minutes.
        {
            let state = state.clone();
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
        worker
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

#[cfg(test)]
mod tests {
    use super::*;

    /// At rest after two quiet ticks, once per quiet period; a request begun, or one still in
    /// flight, starts the count again.
    #[test]
    fn the_service_is_at_rest_after_quiet_ticks_once_per_quiet_period() {
        let mut w = QuietWatch::new(5);
        assert!(!w.tick(5, 0) && !w.tick(5, 0) && !w.tick(5, 0), "just released at start");
        assert!(!w.tick(6, 0), "a request");
        assert!(!w.tick(6, 0), "one quiet tick");
        assert!(w.tick(6, 0), "two: at rest");
        assert!(!w.tick(6, 0), "once per quiet period");
        assert!(!w.tick(7, 1), "a long request begins");
        assert!(!w.tick(7, 1) && !w.tick(7, 1) && !w.tick(7, 1), "in flight: not at rest");
        assert!(!w.tick(7, 0));
        assert!(w.tick(7, 0), "it ended two ticks ago");
    }
}
