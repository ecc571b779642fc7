//! Shared test support: the real server on a random loopback port, real HTTP, real files. Also
//! compiled into the benchmark (`benches/bench.rs`), which measures the same app.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use warranty::config::Settings;
use warranty::host::{Application, Overrides};
use warranty::inbound::auth;

mod cosmos;
pub mod gateway;
mod host;
mod hub;
mod identity;
mod servicebus;
pub use cosmos::*;
#[allow(unused_imports)]
pub use host::*;
#[allow(unused_imports)]
pub use hub::*;
pub use identity::*;
pub use servicebus::*;

pub const SECRET: &str = "test-secret-not-for-production";

/// Which adapters a test app runs on. The same test bodies run on each (see [`both_backends`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite + files under the data directory.
    Embedded,
    /// Invoices in Blob Storage (Azurite, through the official crate).
    Blob,
    /// The Azure adapters: products in Cosmos DB (the SDK's in-memory emulator), invoices in
    /// Blob Storage (Azurite), OCR events on Service Bus (a loopback namespace).
    Azure,
}

tokio::task_local! {
    pub static BACKEND: Backend;
}

pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Embedded)
}

/// Runs each listed test body once per listed backend, as `name::embedded`, `name::blob` and
/// `name::azure`: `backends!([embedded, blob, azure]: a, b)` for the journeys, `[embedded, blob]`
/// for tests of the embedded store's own machinery (its SQLite outbox and dispatcher).
#[macro_export]
macro_rules! backends {
    ($backends:tt: $($name:ident),* $(,)?) => {
        $( $crate::backends!(@each $name $backends); )*
    };
    (@each $name:ident [$($backend:ident),+ $(,)?]) => {
        mod $name {
            $( $crate::backends!(@test $backend $name); )+
        }
    };
    (@test embedded $name:ident) => {
        #[tokio::test]
        async fn embedded() {
            $crate::support::BACKEND.scope($crate::support::Backend::Embedded, super::$name()).await
        }
    };
    (@test blob $name:ident) => {
        #[tokio::test]
        async fn blob() {
            $crate::support::BACKEND.scope($crate::support::Backend::Blob, super::$name()).await
        }
    };
    (@test azure $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn azure() {
            $crate::support::BACKEND.scope($crate::support::Backend::Azure, super::$name()).await
        }
    };
}

/// The blob endpoint of an Azurite for this test process: `WARRANTY_TEST_AZURITE` if set
/// (CI starts one), else one started from `tools/azurite` on a free port, with a watchdog that
/// stops it when this process exits.
pub fn azurite() -> &'static str {
    static ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ENDPOINT.get_or_init(|| {
        if let Ok(e) = std::env::var("WARRANTY_TEST_AZURITE") {
            return e;
        }
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/azurite/node_modules/.bin/azurite-blob");
        assert!(bin.exists(), "Azurite is not installed: run `npm ci --prefix tools/azurite` (.ci/run does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = format!(
            "{} --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --silent --blobPort {port} & A=$!; \
             while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $A",
            bin.display(),
            std::process::id()
        );
        // Kept for the life of the process; the watchdog in the script stops Azurite and exits
        // when this process does.
        static WATCHDOG: std::sync::OnceLock<std::sync::Mutex<std::process::Child>> = std::sync::OnceLock::new();
        let child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Azurite starts");
        let _ = WATCHDOG.set(std::sync::Mutex::new(child));
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(60), "Azurite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://127.0.0.1:{port}/devstoreaccount1")
    })
}

pub fn azurite_connection_string() -> String {
    use warranty::adapters::azure::blob::sas::{DEV_ACCOUNT, DEV_KEY};
    format!("AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint={}", azurite())
}

pub struct TestApp {
    pub backend: Backend,
    blob_connection: Option<(String, String)>,
    /// Azure backend: the products container (emulated) and its switchable faults.
    pub cosmos: Option<CosmosFixture>,
    /// Azure backend: the loopback Service Bus namespace.
    pub bus: Option<ServiceBus>,
    /// Embedded backend: a connection holding the database's write lock during an outage.
    outage: std::sync::Mutex<Option<rusqlite::Connection>>,
    pub base: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    /// The use cases' services (reminder sweeps are driven through them).
    pub services: warranty::application::Services,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_custom(configure, None).await
}

/// An app whose use cases read `clock` (the test moves it).
pub async fn spawn_at(
    clock: std::sync::Arc<warranty::ports::ManualClock>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_custom(configure, Some(clock)).await
}

pub async fn spawn_custom(
    configure: impl FnOnce(&mut Settings),
    clock: Option<std::sync::Arc<warranty::ports::ManualClock>>,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_tests(dir.path().to_owned());
    // Reader processes are the `warranty` binary (this process is a test runner).
    settings.ocr.reader_exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_warranty")));
    let backend = backend();
    if backend != Backend::Embedded {
        settings.invoices.invoice_store = warranty::config::InvoiceStoreKind::Blob;
        settings.invoices.blob_connection_string = Some(warranty::config::Secret::new(azurite_connection_string()));
        // One container per test app: tests run in parallel against one Azurite.
        settings.invoices.blob_container = format!("t{}", uuid::Uuid::new_v4().simple());
    }
    let (cosmos, bus) = if backend == Backend::Azure {
        let bus = service_bus(vec![]).await;
        settings.products.product_store = warranty::config::ProductStoreKind::Cosmos;
        settings.delivery.ocr_delivery = warranty::config::OcrDeliveryKind::Servicebus;
        settings.delivery.servicebus_connection_string = Some(warranty::config::Secret::new(bus.connection_string()));
        (Some(CosmosFixture::new().await), Some(bus))
    } else {
        (None, None)
    };
    configure(&mut settings);
    let blob_connection =
        settings.invoices.blob_connection_string.clone().map(|c| (c, settings.invoices.blob_container.clone()));
    let overrides = Overrides {
        cosmos_container: cosmos.as_ref().map(|c| c.container.clone()),
        clock: clock.map(|c| c as std::sync::Arc<dyn warranty::ports::Clock>),
    };
    let app = Application::build_with(&settings, overrides).await.expect("app builds");
    let port = app.port();
    let services = app.services();
    if let Some(bus) = &bus {
        // `ocr_dispatcher` means "deliver queued events" on every backend: here the loopback
        // host delivers what the namespace accepted.
        if settings.delivery.ocr_dispatcher {
            bus.start_delivering(port);
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        backend,
        blob_connection: (backend != Backend::Embedded)
            .then_some(blob_connection)
            .flatten()
            .map(|(cs, container)| (cs.expose().to_owned(), container)),
        cosmos,
        bus,
        outage: std::sync::Mutex::new(None),
        base: format!("http://127.0.0.1:{port}"),
        port,
        dir,
        client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        services,
        shutdown: Some(tx),
    }
}

pub fn token(user: &str) -> String {
    auth::dev_token(SECRET.as_bytes(), user, Duration::from_secs(600))
}

/// A one-page PDF whose text layer holds `lines` (Helvetica, one line each), written by hand so
/// the test says exactly what the document contains.
pub fn text_pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 11 Tf 14 TL 60 780 Td\n");
    for l in lines {
        content.push_str(&format!("({}) Tj T*\n", l.replace('(', "\\(").replace(')', "\\)")));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for o in offsets {
        pdf.extend(format!("{o:010} 00000 n \n").bytes());
    }
    pdf.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).bytes());
    pdf
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).expect("fixture")
}

/// A multipart/form-data body built by hand, byte for byte as a browser or OkHttp sends it.
pub struct Form {
    pub boundary: String,
    body: Vec<u8>,
}

impl Form {
    pub fn new() -> Self {
        Self { boundary: "----warrantyTestBoundary7MA4YWxkTrZu0gW".into(), body: Vec::new() }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!("--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n", self.boundary)
                .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, file_name: &str, content_type: &str, bytes: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }

    /// A valid registration for `serial` with the given invoice.
    pub fn registration(brand: &str, model: &str, serial: &str, date: &str, invoice: &[u8]) -> Self {
        Self::new()
            .text("brand", brand)
            .text("model", model)
            .text("serialNumber", serial)
            .text("purchaseDate", date)
            .file("invoice", "invoice.pdf", "application/pdf", invoice)
    }
}

/// POSTs `form` as multipart to `url` with `user`'s token (any server: in process or a child).
pub async fn post_form_to(client: &reqwest::Client, url: &str, user: &str, form: Form) -> reqwest::Response {
    let (ct, body) = form.finish();
    client.post(url).bearer_auth(token(user)).header("content-type", ct).body(body).send().await.expect("request sent")
}

impl TestApp {
    pub async fn post_form(&self, user: &str, form: Form) -> reqwest::Response {
        self.post_form_with(user, form, None).await
    }

    pub async fn post_form_with(&self, user: &str, form: Form, idempotency_key: Option<&str>) -> reqwest::Response {
        let (ct, body) = form.finish();
        let mut req = self
            .client
            .post(format!("{}/api/products", self.base))
            .bearer_auth(token(user))
            .header("content-type", ct)
            .body(body);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        req.send().await.expect("request sent")
    }

    /// POSTs `body` as JSON to `path` with `user`'s token.
    pub async fn post_json(&self, user: &str, path: &str, body: &serde_json::Value) -> reqwest::Response {
        let req = self.client.post(format!("{}{path}", self.base)).bearer_auth(token(user)).json(body);
        req.send().await.expect("request sent")
    }

    pub async fn put_json(&self, user: &str, path: &str, body: &serde_json::Value) -> reqwest::Response {
        let req = self.client.put(format!("{}{path}", self.base)).bearer_auth(token(user)).json(body);
        req.send().await.expect("request sent")
    }

    /// A JSON merge patch (`application/merge-patch+json`) to `path`, with `If-Match` if given.
    pub async fn merge_patch(&self, user: &str, path: &str, if_match: Option<&str>, body: &str) -> reqwest::Response {
        let mut req = self
            .client
            .patch(format!("{}{path}", self.base))
            .bearer_auth(token(user))
            .header("content-type", "application/merge-patch+json")
            .body(body.to_owned());
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(token(user)).send().await.expect("request sent")
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("warranty.sqlite3")).expect("db opens")
    }

    pub fn count(&self, table: &str) -> i64 {
        self.db().query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    /// Products stored, whichever store holds them.
    pub async fn product_count(&self) -> usize {
        match &self.cosmos {
            Some(c) => c.product_ids().await.len(),
            None => self.count("products") as usize,
        }
    }

    /// OCR events produced: rows of the embedded outbox, or messages the namespace accepted.
    pub async fn ocr_events(&self) -> Vec<serde_json::Value> {
        match &self.bus {
            Some(bus) => bus.bodies(),
            None => {
                let db = self.db();
                let mut stmt = db.prepare("SELECT body FROM ocr_queue ORDER BY message_id").unwrap();
                let rows: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
                rows.iter().map(|b| serde_json::from_str(b).unwrap()).collect()
            }
        }
    }

    /// The OCR event of a product.
    pub async fn ocr_event_for(&self, product_id: &str) -> serde_json::Value {
        self.ocr_events()
            .await
            .into_iter()
            .find(|e| e["productId"] == product_id)
            .unwrap_or_else(|| panic!("no OCR event for {product_id}"))
    }

    /// Removes a product behind the app's back.
    pub async fn delete_product_directly(&self, user: &str, id: &str) {
        match &self.cosmos {
            Some(c) => c.delete(user, id).await,
            None => assert_eq!(self.db().execute("DELETE FROM products WHERE id = ?1", [id]).unwrap(), 1),
        }
    }

    /// Makes the product store fail every request until [`TestApp::end_product_store_outage`]:
    /// the SQLite write lock held by another connection (writes time out after the busy
    /// timeout), or Cosmos DB answering 503 to everything.
    pub fn start_product_store_outage(&self) {
        match &self.cosmos {
            Some(c) => c.unavailable.enable(),
            None => {
                let blocker = self.db();
                blocker.execute_batch("BEGIN EXCLUSIVE; UPDATE products SET user_id = user_id;").unwrap();
                *self.outage.lock().unwrap() = Some(blocker);
            }
        }
    }

    pub fn end_product_store_outage(&self) {
        match &self.cosmos {
            Some(c) => c.unavailable.disable(),
            None => {
                if let Some(blocker) = self.outage.lock().unwrap().take() {
                    blocker.execute_batch("ROLLBACK").unwrap();
                }
            }
        }
    }

    pub fn invoices_root(&self) -> PathBuf {
        self.dir.path().join("invoices")
    }

    /// Deletes the blob container behind the app's back (a storage outage for the test).
    pub fn delete_blob_container(&self) {
        let (cs, container) = self.blob_connection.clone().expect("a blob backend");
        on_container(cs, container, |url| async move {
            let client = azure_storage_blob::BlobContainerClient::new(url, None, None).unwrap();
            client.delete(None).await.unwrap();
        });
    }

    /// Runs `f` with a SAS URL of the app's blob container (blob backends only).
    pub fn with_blob_container<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(azure_core::http::Url) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        let (cs, container) = self.blob_connection.clone().expect("a blob backend");
        on_container(cs, container, f)
    }

    /// The bytes stored under an invoice location, whichever backend holds them.
    pub fn read_invoice(&self, location: &str) -> Option<Vec<u8>> {
        let Some((cs, container)) = self.blob_connection.clone() else {
            return std::fs::read(self.invoices_root().join(location)).ok();
        };
        let location = location.to_owned();
        on_container(cs, container, move |url| async move {
            use warranty::ports::InvoiceStore;
            let store = warranty::adapters::azure::blob::BlobInvoiceStore::new(url, None).unwrap();
            store.read(&location).await.unwrap().map(|b| b.to_vec())
        })
    }

    /// Every stored invoice: files under the invoice root (committed and temporary), or the
    /// blobs of the container.
    pub fn invoice_files(&self) -> Vec<PathBuf> {
        if let Some((cs, container)) = self.blob_connection.clone() {
            // Listed from a thread of its own so this works from sync closures in any runtime.
            return on_container(cs, container, |url| async move {
                let store = warranty::adapters::azure::blob::BlobInvoiceStore::new(url, None).unwrap();
                store.list().await.unwrap().into_iter().map(PathBuf::from).collect()
            });
        }
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() { walk(&path, out) } else { out.push(path) }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.invoices_root(), &mut out);
        out
    }
}

/// Runs `f` with a SAS URL of the test app's container, on a thread and runtime of its own, so
/// it works from sync closures inside any test runtime.
fn on_container<T, F, Fut>(cs: String, container: String, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(azure_core::http::Url) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        let cs =
            warranty::adapters::azure::blob::sas::StorageAccount::parse(&warranty::config::Secret::new(cs)).unwrap();
        let url = cs.container_sas_url(&container, chrono::Utc::now() + chrono::Duration::hours(1)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(f(url.parse().unwrap()))
    })
    .join()
    .unwrap()
}

/// Serves `filter` on a free loopback port until the returned sender is dropped: the stand-in
/// for a remote service (identity provider, Service Bus, Document Intelligence).
/// Every request, whole, for the loopback stand-ins (host, gateway, hub, control plane):
/// method, full path, raw query (empty when none), headers and body.
pub fn whole_request() -> impl warp::Filter<
    Extract = (warp::http::Method, warp::path::FullPath, String, warp::http::HeaderMap, bytes::Bytes),
    Error = warp::Rejection,
> + Clone {
    use warp::Filter;
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
}

pub async fn serve_loopback<F>(filter: F) -> (u16, tokio::sync::oneshot::Sender<()>)
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, serve_listener(listener, filter))
}

/// Serves `filter` on a bound `listener` until the returned sender is dropped (for a stand-in
/// that must know its own address before its routes are built).
pub fn serve_listener<F>(listener: tokio::net::TcpListener, filter: F) -> tokio::sync::oneshot::Sender<()>
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(filter)
            .incoming(listener)
            .graceful(async {
                let _ = rx.await;
            })
            .run(),
    );
    tx
}

/// Polls the card (public API only) until its OCR status is final.
pub async fn final_ocr(app: &TestApp, user: &str, location: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let card: serde_json::Value = app.get(user, location).await.json().await.unwrap();
        let status = card["ocr"]["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "completed" | "needs_review" | "failed") {
            return card["ocr"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "OCR never finished: {card}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn problem(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: serde_json::Value = resp.json().await.expect("json body");
    assert_eq!(ct, "application/problem+json", "status {status}: {body}");
    (status, body)
}

/// Today's date in UTC as YYYY-MM-DD, offset by `days`.
pub fn day(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).format("%Y-%m-%d").to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Polls `/` as the Functions host does until the handler says its stores are connected (it
/// answers `/` from the moment it listens, "starting" until then).
pub async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(base).send().await
            && r.text().await.is_ok_and(|t| t.contains("handler ready"))
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the binary never became ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for `cond` with a deadline, checking after each yield. For state that settles
/// asynchronously (a background task removing a file after a disconnect).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
