//! Products and idempotent answers in Azure Cosmos DB (NoSQL API), through the official
//! `azure_data_cosmos` crate.
//!
//! One container (`products` by default), partitioned by `/userId`: everything a request
//! touches lives in the caller's partition, so every read is a point read or a single-partition
//! query, and a registration with an `Idempotency-Key` is one transactional batch.
//!
//! Documents (schema version [`SCHEMA_VERSION`]):
//! - `type: "product"`: the [`ProductRecord`] under `product`, a `serialKey` that the container's
//!   unique-key policy (`/serialKey`, per partition, so per user) keeps unique, a `sortKey` for
//!   newest-first paging, and — until the OCR event is confirmed published — `pendingOcr` with
//!   the event and `pendingOcrSince` (the marker: this store's outbox, see `application::outbox`).
//! - `type: "idempotency"`: the first answer to an `Idempotency-Key`, with its own `serialKey`
//!   so it never collides with a product's.
//! - `type: "user-record"`: one of the user's own records (settings, calendar feed, devices).
//! - `type: "reminder"`: an expiry reminder with its deliveries (see [`reminders`]).
//!
//! A product's `nextReminderAt` (range-indexed) is when its next reminder falls due; every
//! product write sets it to `""`, so the next sweep recomputes it.
//!
//! Every update is a read followed by a replace with `If-Match` on the read ETag; a `412` means
//! another writer won, and the update is re-read and re-applied. Throttling (`429`) and
//! unavailability (`503`) are retried by the SDK's own policy; what is left after that becomes
//! [`Unavailable`], which the API answers with `503 storage_unavailable`.

use async_trait::async_trait;
use azure_core::http::{Etag, StatusCode};
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{CosmosError, FeedScope, Query, TransactionalBatch};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::connection_string::ConnectionString;
use super::identity::Identity;
use crate::config::{ProductStoreSettings, StartupError};
use crate::domain::intake::{IntakeId, IntakeRecord};
use crate::domain::{OcrRequested, OcrState, ProductId, ProductRecord, Subject, UserId};
use crate::ports::{
    IdempotencyRecord, ListCursor, Outbox, OutboxMessage, ProductRepository, StoreError, StoredResponse, Unavailable,
};

const BACKEND: &str = "product store";

/// Bumped when a document's shape changes incompatibly; readers refuse versions they do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// How often an update is re-applied after losing an ETag race before giving up.
const MAX_CONFLICT_RETRIES: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    schema_version: u32,
    serial_key: String,
    sort_key: String,
    product: ProductRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_ocr: Option<OcrRequested>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_ocr_since: Option<String>,
    /// When the next expiry reminder falls due (range-indexed); `""` = written since the last
    /// sweep; absent = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_reminder_at: Option<String>,
    #[serde(default, rename = "_etag", skip_serializing)]
    etag: Option<String>,
}

/// A document type this adapter reads and updates with `If-Match`.
trait Stored: Serialize + serde::de::DeserializeOwned + Send + Sync {
    /// Its `type` field.
    const TYPE: &'static str;
    fn etag(&self) -> Option<&str>;
    /// Refuses a stored document this code cannot read.
    fn check(_id: &str, _doc: &serde_json::Value) -> Result<(), Unavailable> {
        Ok(())
    }
}

impl Stored for ProductDoc {
    const TYPE: &'static str = "product";

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    fn check(id: &str, doc: &serde_json::Value) -> Result<(), Unavailable> {
        let version = doc["schemaVersion"].as_u64().unwrap_or(0);
        if version != u64::from(SCHEMA_VERSION) {
            return Err(unavailable(format!("product {id} has unknown schema version {version}")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    schema_version: u32,
    serial_key: String,
    fingerprint: String,
    status: u16,
    location: Option<String>,
    body: String,
    expires_at: DateTime<Utc>,
    /// Seconds until Cosmos DB removes the document (needs the container's TTL switched on,
    /// `defaultTtl: -1`; expiry is also checked on read, so correctness never depends on it).
    ttl: i64,
}

/// An intake (invoice-first registration) in its owner's partition, with its reading event's
/// pending-publication marker while the event is not yet on the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntakeDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    schema_version: u32,
    serial_key: String,
    /// When the sweep next has work with it (range-indexed).
    sweep_at: String,
    intake: IntakeRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_ocr: Option<OcrRequested>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_ocr_since: Option<String>,
    #[serde(default, rename = "_etag", skip_serializing)]
    etag: Option<String>,
}

impl Stored for IntakeDoc {
    const TYPE: &'static str = "intake";

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

fn intake_doc(intake: &IntakeRecord, event: Option<&OcrRequested>) -> IntakeDoc {
    IntakeDoc {
        id: intake.id.to_string(),
        user_id: intake.user_id.0.clone(),
        doc_type: "intake".into(),
        schema_version: SCHEMA_VERSION,
        serial_key: format!("intake\u{1f}{}", intake.id),
        sweep_at: ts(intake.sweep_at()),
        intake: intake.clone(),
        pending_ocr: event.cloned(),
        pending_ocr_since: event.map(|e| ts(e.requested_at)),
        etag: None,
    }
}

fn idempotency_doc(user: &str, rec: &IdempotencyRecord, now: DateTime<Utc>) -> IdempotencyDoc {
    let id = idempotency_id(&rec.key);
    IdempotencyDoc {
        serial_key: format!("idempotency\u{1f}{id}"),
        id,
        user_id: user.to_owned(),
        doc_type: "idempotency".into(),
        schema_version: SCHEMA_VERSION,
        fingerprint: rec.response.fingerprint.clone(),
        status: rec.response.status,
        location: rec.response.location.clone(),
        body: rec.response.body.clone(),
        expires_at: rec.expires_at,
        ttl: (rec.expires_at - now).num_seconds().max(1),
    }
}

/// Sortable fixed-width timestamp: lexical order is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn sort_key(created_at: DateTime<Utc>, id: ProductId) -> String {
    format!("{}|{id}", ts(created_at))
}

/// Unique per user: the brand key and the serial number. The unit separator cannot occur in
/// either (both are validated text).
fn serial_key(p: &ProductRecord) -> String {
    p.uniqueness_key()
}

/// Idempotency keys may hold characters a Cosmos id may not (`/`, `\`, `?`, `#`): hash them.
fn idempotency_id(key: &str) -> String {
    format!("idem-{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::new(BACKEND, e)
}

fn status(e: &CosmosError) -> StatusCode {
    e.status().status_code()
}

fn is(e: &CosmosError, code: StatusCode) -> bool {
    status(e) == code
}

fn if_match(etag: &str) -> ItemWriteOptions {
    ItemWriteOptions::default().with_precondition(Precondition::IfMatch(Etag::from(etag.to_owned())))
}

/// Longest time one operation waits on throttling (429) before it is surfaced as unavailable.
/// The SDK's default is 30 s, made for batch jobs; a phone waiting on a registration has given up
/// long before, and the 503 it gets carries `Retry-After`.
pub const MAX_THROTTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The client-wide operation options this adapter is written for (production and tests alike).
pub fn operation_options() -> azure_data_cosmos::options::OperationOptions {
    use azure_data_cosmos::options::{OperationOptionsBuilder, ThrottlingRetryOptionsBuilder};
    OperationOptionsBuilder::new()
        .with_throttling_retry_options(
            ThrottlingRetryOptionsBuilder::new()
                .with_max_retry_count(9)
                .with_max_retry_wait_time(MAX_THROTTLE_WAIT)
                .build(),
        )
        .build()
}

/// How a transactional batch ended.
enum BatchOutcome {
    Done,
    /// Nothing was written; the status of the operation that failed it.
    Failed(StatusCode),
}

pub struct CosmosProductRepository {
    container: ContainerClient,
}

/// Where the products container is and how to reach it, checked from the settings alone (no
/// network): a misconfiguration stops start-up at once, an unreachable account does not.
#[derive(Clone)]
pub struct CosmosTarget {
    endpoint: String,
    auth: CosmosAuth,
    region: String,
    database: String,
    container: String,
}

#[derive(Clone)]
enum CosmosAuth {
    Credential(std::sync::Arc<dyn azure_core::credentials::TokenCredential>),
    Key(crate::config::Secret),
}

impl CosmosTarget {
    /// The target the settings name: managed identity in Azure, a key locally.
    pub fn from_settings(settings: &ProductStoreSettings, identity: &Identity) -> Result<Self, StartupError> {
        use azure_data_cosmos::AccountEndpoint;
        let err = |e: &dyn std::fmt::Display| StartupError::CosmosConfig(e.to_string());
        let (endpoint, auth) = if let Some(endpoint) = &settings.cosmos_endpoint {
            let credential = identity.credential().map_err(|e| err(&e))?;
            (endpoint.clone(), CosmosAuth::Credential(credential))
        } else if let Some(cs) = &settings.cosmos_connection_string {
            let cs = ConnectionString::parse(cs);
            let (Ok(endpoint), Ok(key)) = (cs.require("AccountEndpoint"), cs.secret("AccountKey")) else {
                return Err(err(&"the connection string needs AccountEndpoint and AccountKey"));
            };
            (endpoint.to_owned(), CosmosAuth::Key(key))
        } else {
            return Err(err(&"neither is set"));
        };
        endpoint.parse::<AccountEndpoint>().map_err(|e| err(&e))?;
        let region = settings
            .cosmos_region
            .clone()
            .or_else(|| std::env::var("REGION_NAME").ok())
            .unwrap_or_else(|| "East US".into());
        Ok(Self {
            endpoint,
            auth,
            region,
            database: settings.cosmos_database.clone(),
            container: settings.cosmos_container.clone(),
        })
    }

    /// Connects to the account and the container (network: account metadata, container
    /// properties). Called after the port is bound, and again until it succeeds.
    pub async fn connect(&self) -> Result<azure_data_cosmos::clients::ContainerClient, StartupError> {
        use azure_data_cosmos::{AccountEndpoint, AccountReference, CosmosClient, RoutingStrategy};
        let err = |e: &dyn std::fmt::Display| StartupError::CosmosConfig(e.to_string());
        let endpoint: AccountEndpoint = self.endpoint.parse().map_err(|e| err(&e))?;
        let account = match &self.auth {
            CosmosAuth::Credential(c) => AccountReference::with_credential(endpoint, c.clone()),
            CosmosAuth::Key(key) => AccountReference::with_authentication_key(
                endpoint,
                azure_core::credentials::Secret::new(key.expose().to_owned()),
            ),
        };
        let client = CosmosClient::builder()
            .with_default_operation_options(operation_options())
            .build(account, RoutingStrategy::ProximityTo(self.region.clone().into()))
            .await
            .map_err(|e| err(&e))?;
        // The database and container are infrastructure (Bicep): the app's identity may read and
        // write items but not create containers.
        client
            .database_client(self.database.as_str())
            .container_client(self.container.as_str(), None)
            .await
            .map_err(|e| err(&e))
    }
}

/// The single partition that held, per product, who owns it (verification lookups) before the
/// lookups were spread over buckets: still read, so links printed before keep working, and
/// emptied as they are used.
const LINK_OWNERS: &str = "~link-owners";

/// Verification lookups are spread over this many logical partitions, chosen by the product id:
/// each takes 1/4096 of the reads and of the storage (about 50 MB at a billion products, far
/// under a logical partition's 20 GB and 10,000 RU/s).
const LINK_BUCKETS: u16 = 4096;

/// The partition of product `id`'s owner lookup. UUIDv7's last bytes are random, so products
/// spread evenly; a product keeps its bucket for life.
fn link_bucket(id: ProductId) -> String {
    let b = id.as_bytes();
    format!("~links-{:03x}", u16::from_be_bytes([b[14], b[15]]) % LINK_BUCKETS)
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkOwnerDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    /// Its id: the unique key (`/serialKey`, per partition) counts a missing value as a value,
    /// so a bucket could otherwise hold one lookup only.
    #[serde(default)]
    serial_key: String,
    owner: String,
}

/// The id of one of a user's records (in the user's partition): never a product id (UUIDs).
fn user_record_id(key: &str) -> String {
    format!("user-record:{key}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRecordDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    /// Its id: the container's unique key (`/serialKey`, per partition) counts a missing value
    /// as one value, so every document carries its own.
    #[serde(default)]
    serial_key: String,
    value: serde_json::Value,
}

impl CosmosProductRepository {
    pub fn new(container: ContainerClient) -> Self {
        Self { container }
    }

    /// The owner recorded for product `pid` in partition `partition` (a bucket, or the old one).
    async fn link_owner(&self, partition: &str, pid: &str) -> Result<Option<String>, Unavailable> {
        match self.container.read_item(partition.to_owned(), pid, None).await {
            Ok(resp) => Ok(Some(resp.into_model::<LinkOwnerDoc>().map_err(unavailable)?.owner)),
            Err(e) if is(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Records who owns `product` in its verification bucket.
    async fn remember_owner(&self, product: &ProductRecord) -> Result<(), Unavailable> {
        let bucket = link_bucket(product.id);
        let doc = LinkOwnerDoc {
            id: product.id.to_string(),
            user_id: bucket.clone(),
            doc_type: "link-owner".into(),
            serial_key: format!("link-owner:{}", product.id),
            owner: product.user_id.as_str().to_owned(),
        };
        self.container.upsert_item(bucket, &doc.id, &doc, None).await.map(|_| ()).map_err(unavailable)
    }

    /// Deletes document `id` of `partition`; gone already is fine.
    async fn forget(&self, partition: &str, id: &str) -> Result<(), Unavailable> {
        match self.container.delete_item(partition.to_owned(), id, None).await {
            Ok(_) => Ok(()),
            Err(e) if is(&e, StatusCode::NotFound) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A document of type `T` by id; `None` when there is none (or it is of another type).
    async fn read_typed<T: Stored>(&self, user: &str, id: &str) -> Result<Option<T>, Unavailable> {
        match self.container.read_item(user.to_owned(), id, None).await {
            Ok(resp) => {
                let doc: serde_json::Value = resp.into_model().map_err(unavailable)?;
                if doc["type"] != T::TYPE {
                    return Ok(None);
                }
                T::check(id, &doc)?;
                serde_json::from_value(doc).map(Some).map_err(unavailable)
            }
            Err(e) if is(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_doc(&self, user: &str, id: &str) -> Result<Option<ProductDoc>, Unavailable> {
        self.read_typed(user, id).await
    }

    /// Re-reads the document and applies `change` until a replace with `If-Match` succeeds.
    /// `change` returns false to leave the document alone. Returns whether a change was stored.
    async fn update_typed<T: Stored>(
        &self,
        user: &str,
        id: &str,
        mut change: impl FnMut(&mut T) -> bool + Send,
    ) -> Result<bool, Unavailable> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(mut doc) = self.read_typed::<T>(user, id).await? else {
                return Ok(false);
            };
            if !change(&mut doc) {
                return Ok(false);
            }
            let etag = doc.etag().ok_or_else(|| unavailable("a stored document without an ETag"))?.to_owned();
            match self.container.replace_item(user.to_owned(), id, &doc, Some(if_match(&etag))).await {
                Ok(_) => return Ok(true),
                Err(e) if is(&e, StatusCode::PreconditionFailed) => continue,
                Err(e) if is(&e, StatusCode::NotFound) => return Ok(false),
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(unavailable(format!("{id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")))
    }

    /// [`update_typed`](Self::update_typed) for products.
    async fn update(
        &self,
        user: &str,
        id: &str,
        change: impl FnMut(&mut ProductDoc) -> bool + Send,
    ) -> Result<bool, Unavailable> {
        self.update_typed(user, id, change).await
    }

    /// Every result of `query` in `scope`.
    async fn query<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        query: Query,
        scope: FeedScope,
    ) -> Result<Vec<T>, Unavailable> {
        self.container
            .query_items::<T>(query, scope, None)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)
    }

    async fn existing_with_serial(&self, user: &str, serial_key: &str) -> Result<Option<ProductId>, Unavailable> {
        #[derive(Deserialize)]
        struct Id {
            id: ProductId,
        }
        let query = Query::from("SELECT c.id FROM c WHERE c.serialKey = @k")
            .with_parameter("@k", serial_key)
            .map_err(unavailable)?;
        let mut items = self
            .container
            .query_items::<Id>(query, FeedScope::partition(user.to_owned()), None)
            .await
            .map_err(unavailable)?;
        Ok(items.try_next().await.map_err(unavailable)?.map(|i| i.id))
    }

    /// Runs a transactional batch: done, or the status of the operation that failed it.
    async fn run_batch(&self, batch: TransactionalBatch) -> Result<BatchOutcome, Unavailable> {
        match self.container.execute_transactional_batch(batch, None).await {
            Ok(resp) if resp.status().is_success() => {
                let results = resp.into_model().map_err(unavailable)?;
                match results.results().iter().find(|r| !r.is_success()) {
                    None => Ok(BatchOutcome::Done),
                    Some(r) => Ok(BatchOutcome::Failed(StatusCode::from(r.status_code()))),
                }
            }
            // A failed batch reports the failing operation's status.
            Ok(resp) => Ok(BatchOutcome::Failed(resp.status().status_code())),
            Err(e) if is(&e, StatusCode::Conflict) || is(&e, StatusCode::PreconditionFailed) => {
                Ok(BatchOutcome::Failed(status(&e)))
            }
            Err(e) if is(&e, StatusCode::NotFound) => Ok(BatchOutcome::Failed(StatusCode::NotFound)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Tells a refused registration apart: the idempotency key was taken by a concurrent
    /// request, or the product already exists.
    async fn explain_conflict(&self, product: &ProductRecord, idempotency: Option<&IdempotencyRecord>) -> StoreError {
        let user = product.user_id.as_str();
        if let Some(rec) = idempotency {
            match self.container.read_item(user.to_owned(), &idempotency_id(&rec.key), None).await {
                Ok(_) => return StoreError::IdempotencyKeyTaken,
                Err(e) if is(&e, StatusCode::NotFound) => {}
                Err(e) => return unavailable(e).into(),
            }
        }
        match self.existing_with_serial(user, &serial_key(product)).await {
            Ok(existing) => StoreError::DuplicateProduct { existing },
            Err(e) => e.into(),
        }
    }
}

fn product_doc(product: &ProductRecord, event: Option<&OcrRequested>) -> ProductDoc {
    ProductDoc {
        id: product.id.to_string(),
        user_id: product.user_id.0.clone(),
        doc_type: "product".into(),
        schema_version: SCHEMA_VERSION,
        serial_key: serial_key(product),
        sort_key: sort_key(product.created_at, product.id),
        product: product.clone(),
        pending_ocr: event.cloned(),
        pending_ocr_since: event.map(|_| ts(product.created_at)),
        next_reminder_at: Some(String::new()),
        etag: None,
    }
}

#[async_trait]
impl ProductRepository for CosmosProductRepository {
    async fn invoice_location(&self, owner: Option<&UserId>, id: ProductId) -> Result<Option<String>, Unavailable> {
        #[derive(Deserialize)]
        struct Found {
            location: String,
        }
        // The file named its owner: one point read in the owner's partition.
        if let Some(owner) = owner {
            return Ok(self.read_doc(owner.as_str(), &id.to_string()).await?.map(|d| d.product.invoice.location));
        }
        // Files written before their owner was kept with them: found across partitions (by id,
        // indexed), for the look-back window after the upgrade only.
        let query =
            Query::from("SELECT c.product.invoice.location AS location FROM c WHERE c.type = 'product' AND c.id = @id")
                .with_parameter("@id", id.to_string())
                .map_err(unavailable)?;
        let found: Vec<Found> = self.query(query, FeedScope::full_container()).await?;
        Ok(found.into_iter().next().map(|f| f.location))
    }

    async fn user_record(&self, user: &UserId, key: &str) -> Result<Option<serde_json::Value>, Unavailable> {
        match self.container.read_item(user.as_str().to_owned(), &user_record_id(key), None).await {
            Ok(resp) => {
                let doc: UserRecordDoc = resp.into_model().map_err(unavailable)?;
                Ok(Some(doc.value))
            }
            Err(e) if is(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn user_records(&self, users: &[UserId], key: &str) -> Result<Vec<Option<serde_json::Value>>, Unavailable> {
        // Point reads in each user's partition, 32 at a time, answers in the order asked.
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(32) {
            for record in futures_util::future::join_all(chunk.iter().map(|u| self.user_record(u, key))).await {
                out.push(record?);
            }
        }
        Ok(out)
    }

    async fn put_user_record(&self, user: &UserId, key: &str, doc: &serde_json::Value) -> Result<(), Unavailable> {
        // In the user's partition, beside their products.
        let id = user_record_id(key);
        let record = UserRecordDoc {
            id: id.clone(),
            user_id: user.as_str().to_owned(),
            doc_type: "user-record".into(),
            serial_key: id.clone(),
            value: doc.clone(),
        };
        self.container.upsert_item(user.as_str().to_owned(), &id, &record, None).await.map(|_| ()).map_err(unavailable)
    }

    async fn delete_user_record(&self, user: &UserId, key: &str) -> Result<bool, Unavailable> {
        match self.container.delete_item(user.as_str().to_owned(), &user_record_id(key), None).await {
            Ok(_) => Ok(true),
            Err(e) if is(&e, StatusCode::NotFound) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn erase_user_data(&self, user: &UserId, keep: &str) -> Result<(), Unavailable> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        // Everything in the user's partition but products (erased one by one, with their files)
        // and the record kept: idempotent answers, user records, reminders with their deliveries.
        let query = Query::from("SELECT c.id FROM c WHERE c.type <> 'product' AND c.id <> @keep")
            .with_parameter("@keep", user_record_id(keep))
            .map_err(unavailable)?;
        let ids: Vec<Id> = self.query(query, FeedScope::partition(user.as_str().to_owned())).await?;
        for Id { id } in ids {
            match self.container.delete_item(user.as_str().to_owned(), &id, None).await {
                Ok(_) => {}
                Err(e) if is(&e, StatusCode::NotFound) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn users_with_record(&self, key: &str) -> Result<Vec<UserId>, Unavailable> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Owner {
            user_id: String,
        }
        // Across partitions, by id (indexed): erasures in progress are few.
        let query = Query::from("SELECT c.userId FROM c WHERE c.type = 'user-record' AND c.id = @id")
            .with_parameter("@id", user_record_id(key))
            .map_err(unavailable)?;
        let owners: Vec<Owner> = self.query(query, FeedScope::full_container()).await?;
        Ok(owners.into_iter().map(|o| UserId(o.user_id)).collect())
    }

    async fn find(&self, id: ProductId) -> Result<Option<ProductRecord>, Unavailable> {
        // The link names the product only. Its owner is in a small document of the product's
        // bucket, written when a card (and so a link) is issued: a verification is two point
        // reads. Links printed before the buckets find their owner in the old single partition
        // (then moved to the bucket), or, for a product never verified, by a cross-partition
        // query by id (indexed), once.
        let pid = id.to_string();
        let bucket = link_bucket(id);
        if let Some(owner) = self.link_owner(&bucket, &pid).await? {
            let found = self.read_doc(&owner, &pid).await?;
            if found.is_none() {
                // Left by a verification racing the product's deletion: it names no product.
                self.forget(&bucket, &pid).await?;
            }
            return Ok(found.map(|d| d.product));
        }
        let owner = match self.link_owner(LINK_OWNERS, &pid).await? {
            Some(owner) => owner,
            None => {
                let query = Query::from("SELECT * FROM c WHERE c.type = 'product' AND c.id = @id")
                    .with_parameter("@id", pid.clone())
                    .map_err(unavailable)?;
                let docs: Vec<ProductDoc> = self.query(query, FeedScope::full_container()).await?;
                let Some(doc) = docs.into_iter().next() else { return Ok(None) };
                doc.user_id
            }
        };
        let Some(doc) = self.read_doc(&owner, &pid).await? else { return Ok(None) };
        // A cache: failing to write it only costs the next lookup this again.
        if let Err(e) = self.remember_owner(&doc.product).await {
            tracing::warn!(product_id = %pid, error = %e, "could not remember a product's owner for verification");
        } else if let Err(e) = self.forget(LINK_OWNERS, &pid).await {
            tracing::warn!(product_id = %pid, error = %e, "could not remove a product's entry from the old lookup");
        }
        Ok(Some(doc.product))
    }

    async fn link_issued(&self, product: &ProductRecord) -> Result<(), Unavailable> {
        self.remember_owner(product).await
    }

    async fn insert_registration(
        &self,
        product: &ProductRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let user = product.user_id.as_str().to_owned();
        let doc = product_doc(product, Some(event));
        let outcome = match idempotency {
            None => self.container.create_item(user, &doc.id, &doc, None).await.map(|_| true),
            Some(rec) => {
                let idem = idempotency_doc(&user, rec, product.created_at);
                let batch = TransactionalBatch::new(user)
                    .create_item(&doc)
                    .and_then(|b| b.create_item(&idem))
                    .map_err(unavailable)?;
                match self.container.execute_transactional_batch(batch, None).await {
                    Ok(resp) if resp.status().is_success() => {
                        let results = resp.into_model().map_err(unavailable)?;
                        Ok(results.results().iter().all(|r| r.is_success()))
                    }
                    // A failed batch reports the failing operation's status.
                    Ok(resp) if resp.status().status_code() == StatusCode::Conflict => Ok(false),
                    Ok(resp) => Err(unavailable(format!("batch refused with {:?}", resp.status().status_code())))?,
                    Err(e) => Err(e),
                }
            }
        };
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.explain_conflict(product, idempotency).await),
            Err(e) if is(&e, StatusCode::Conflict) => Err(self.explain_conflict(product, idempotency).await),
            Err(e) => Err(unavailable(e).into()),
        }
    }

    async fn get(&self, user: &UserId, id: ProductId) -> Result<Option<ProductRecord>, Unavailable> {
        Ok(self.read_doc(user.as_str(), &id.to_string()).await?.map(|d| d.product))
    }

    async fn list(
        &self,
        user: &UserId,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<ProductRecord>, Unavailable> {
        // Keyset paging on `sortKey` (creation time, then id), newest first: stable under
        // concurrent inserts and never expiring, unlike a server continuation token.
        let before = after.map(|c| sort_key(c.created_at, c.id)).unwrap_or_else(|| "~".into());
        let query = Query::from(format!(
            "SELECT TOP {limit} * FROM c WHERE c.type = 'product' AND c.sortKey < @before ORDER BY c.sortKey DESC"
        ))
        .with_parameter("@before", before)
        .map_err(unavailable)?;
        let docs: Vec<ProductDoc> = self.query(query, FeedScope::partition(user.as_str().to_owned())).await?;
        Ok(docs.into_iter().take(limit).map(|d| d.product).collect())
    }

    async fn idempotent_response(
        &self,
        user: &UserId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredResponse>, Unavailable> {
        match self.container.read_item(user.as_str().to_owned(), &idempotency_id(key), None).await {
            Ok(resp) => {
                let doc: IdempotencyDoc = resp.into_model().map_err(unavailable)?;
                Ok((doc.expires_at > now).then_some(StoredResponse {
                    fingerprint: doc.fingerprint,
                    status: doc.status,
                    location: doc.location,
                    body: doc.body,
                }))
            }
            Err(e) if is(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn health(&self) -> Result<(), Unavailable> {
        self.container.read(None).await.map(|_| ()).map_err(unavailable)
    }

    async fn replace(
        &self,
        product: &ProductRecord,
        expected: u64,
        new_invoice: Option<&OcrRequested>,
    ) -> Result<(), StoreError> {
        let (user, id) = (product.user_id.as_str(), product.id.to_string());
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(mut doc) = self.read_doc(user, &id).await? else {
                return Err(StoreError::Gone);
            };
            if doc.product.revision != expected {
                return Err(StoreError::Stale);
            }
            // Unless the invoice changed, the stored OCR state is kept: the OCR handler may have
            // written it meanwhile. A new invoice's event rides on the document as the marker.
            let ocr = doc.product.ocr.clone();
            doc.product = product.clone();
            match new_invoice {
                None => doc.product.ocr = ocr,
                Some(event) => {
                    doc.pending_ocr = Some(event.clone());
                    doc.pending_ocr_since = Some(ts(event.requested_at));
                }
            }
            doc.serial_key = serial_key(product);
            doc.next_reminder_at = Some(String::new());
            let etag = doc.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            match self.container.replace_item(user.to_owned(), &id, &doc, Some(if_match(&etag))).await {
                Ok(_) => return Ok(()),
                // Another writer (the OCR handler, the relay) changed the document: re-read; if
                // it was a user change the revision check above refuses.
                Err(e) if is(&e, StatusCode::PreconditionFailed) => continue,
                Err(e) if is(&e, StatusCode::NotFound) => return Err(StoreError::Gone),
                Err(e) if is(&e, StatusCode::Conflict) => {
                    let existing = self.existing_with_serial(user, &serial_key(product)).await?;
                    return Err(StoreError::DuplicateProduct { existing });
                }
                Err(e) => return Err(unavailable(e).into()),
            }
        }
        Err(unavailable(format!("{id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")).into())
    }

    async fn delete(&self, user: &UserId, id: ProductId, expected: u64) -> Result<(), StoreError> {
        let bucket = link_bucket(id);
        let id = id.to_string();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(doc) = self.read_doc(user.as_str(), &id).await? else {
                return Err(StoreError::Gone);
            };
            if doc.product.revision != expected {
                return Err(StoreError::Stale);
            }
            // The owner lookups go first: a failure after them leaves a product whose next
            // verification records them again, never a lookup naming an erased user.
            self.forget(&bucket, &id).await?;
            self.forget(LINK_OWNERS, &id).await?;
            let etag = doc.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            // The pending-publication marker lives on the document: it goes with it.
            match self.container.delete_item(user.as_str().to_owned(), &id, Some(if_match(&etag))).await {
                Ok(_) => return Ok(()),
                Err(e) if is(&e, StatusCode::PreconditionFailed) => continue,
                Err(e) if is(&e, StatusCode::NotFound) => return Err(StoreError::Gone),
                Err(e) => return Err(unavailable(e).into()),
            }
        }
        Err(unavailable(format!("{id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")).into())
    }

    async fn update_ocr(&self, user: &UserId, id: ProductId, state: &OcrState) -> Result<bool, Unavailable> {
        self.update(user.as_str(), &id.to_string(), |doc| {
            if doc.product.invoice.version != state.invoice_version {
                return false;
            }
            doc.product.ocr = state.clone();
            true
        })
        .await
    }

    async fn insert_intake(
        &self,
        intake: &IntakeRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let user = intake.user_id.as_str().to_owned();
        let doc = intake_doc(intake, Some(event));
        let mut batch = TransactionalBatch::new(user.clone()).create_item(&doc).map_err(unavailable)?;
        if let Some(rec) = idempotency {
            batch = batch.create_item(idempotency_doc(&user, rec, intake.created_at)).map_err(unavailable)?;
        }
        match self.run_batch(batch).await? {
            BatchOutcome::Done => Ok(()),
            // The intake's id is new: a conflict is the idempotency key's.
            BatchOutcome::Failed(StatusCode::Conflict) => Err(StoreError::IdempotencyKeyTaken),
            BatchOutcome::Failed(code) => Err(unavailable(format!("intake batch refused with {code:?}")).into()),
        }
    }

    async fn get_intake(&self, user: &UserId, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable> {
        Ok(self.read_typed::<IntakeDoc>(user.as_str(), &id.to_string()).await?.map(|d| d.intake))
    }

    async fn find_intake(&self, owner: Option<&UserId>, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable> {
        if let Some(owner) = owner {
            return self.get_intake(owner, id).await;
        }
        let query = Query::from("SELECT * FROM c WHERE c.type = 'intake' AND c.id = @id")
            .with_parameter("@id", id.to_string())
            .map_err(unavailable)?;
        let docs: Vec<IntakeDoc> = self.query(query, FeedScope::full_container()).await?;
        Ok(docs.into_iter().next().map(|d| d.intake))
    }

    async fn update_intake(&self, intake: &IntakeRecord, expected: u64) -> Result<(), StoreError> {
        let (user, id) = (intake.user_id.as_str(), intake.id.to_string());
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(mut doc) = self.read_typed::<IntakeDoc>(user, &id).await? else {
                return Err(StoreError::Gone);
            };
            if doc.intake.revision != expected {
                return Err(StoreError::Stale);
            }
            doc.intake = intake.clone();
            doc.sweep_at = ts(intake.sweep_at());
            let etag = doc.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            match self.container.replace_item(user.to_owned(), &id, &doc, Some(if_match(&etag))).await {
                Ok(_) => return Ok(()),
                // The relay cleared the marker meanwhile: re-read.
                Err(e) if is(&e, StatusCode::PreconditionFailed) => continue,
                Err(e) if is(&e, StatusCode::NotFound) => return Err(StoreError::Gone),
                Err(e) => return Err(unavailable(e).into()),
            }
        }
        Err(unavailable(format!("{id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")).into())
    }

    async fn insert_from_intake(
        &self,
        product: &ProductRecord,
        intake: &IntakeRecord,
        expected: u64,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let (user, intake_id) = (product.user_id.as_str().to_owned(), intake.id.to_string());
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(mut stored) = self.read_typed::<IntakeDoc>(&user, &intake_id).await? else {
                return Err(StoreError::Gone);
            };
            if stored.intake.revision != expected {
                return Err(StoreError::Stale);
            }
            let etag = stored.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            stored.intake = intake.clone();
            stored.sweep_at = ts(intake.sweep_at());
            let precondition = azure_data_cosmos::options::BatchReplaceOptions::default()
                .with_precondition(Precondition::IfMatch(Etag::from(etag)));
            let mut batch = TransactionalBatch::new(user.clone())
                .replace_item(intake_id.clone(), &stored, Some(precondition))
                .and_then(|b| b.create_item(product_doc(product, None)))
                .map_err(unavailable)?;
            if let Some(rec) = idempotency {
                batch = batch.create_item(idempotency_doc(&user, rec, product.created_at)).map_err(unavailable)?;
            }
            match self.run_batch(batch).await? {
                BatchOutcome::Done => return Ok(()),
                // The intake changed meanwhile (the relay's marker): re-read.
                BatchOutcome::Failed(StatusCode::PreconditionFailed) => continue,
                BatchOutcome::Failed(StatusCode::NotFound) => return Err(StoreError::Gone),
                BatchOutcome::Failed(StatusCode::Conflict) => {
                    return Err(self.explain_conflict(product, idempotency).await);
                }
                BatchOutcome::Failed(code) => {
                    return Err(unavailable(format!("registration batch refused with {code:?}")).into());
                }
            }
        }
        Err(unavailable(format!("{intake_id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")).into())
    }

    async fn delete_intake(&self, user: &UserId, id: IntakeId, expected: u64) -> Result<(), StoreError> {
        let id = id.to_string();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(doc) = self.read_typed::<IntakeDoc>(user.as_str(), &id).await? else {
                return Err(StoreError::Gone);
            };
            if doc.intake.revision != expected {
                return Err(StoreError::Stale);
            }
            let etag = doc.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            // Its marker lives on the document: it goes with it.
            match self.container.delete_item(user.as_str().to_owned(), &id, Some(if_match(&etag))).await {
                Ok(_) => return Ok(()),
                Err(e) if is(&e, StatusCode::PreconditionFailed) => continue,
                Err(e) if is(&e, StatusCode::NotFound) => return Err(StoreError::Gone),
                Err(e) => return Err(unavailable(e).into()),
            }
        }
        Err(unavailable(format!("{id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")).into())
    }

    async fn intakes_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<IntakeRecord>, Unavailable> {
        // Across partitions (the sweep acts for every user), on the range-indexed `sweepAt`:
        // only intakes past their day (or tombstones past their month) match.
        let query = Query::from(format!(
            "SELECT TOP {limit} * FROM c WHERE c.type = 'intake' AND c.sweepAt <= @now ORDER BY c.sweepAt"
        ))
        .with_parameter("@now", ts(now))
        .map_err(unavailable)?;
        let mut docs: Vec<IntakeDoc> = self.query(query, FeedScope::full_container()).await?;
        docs.sort_by(|a, b| a.sweep_at.cmp(&b.sweep_at));
        Ok(docs.into_iter().take(limit).map(|d| d.intake).collect())
    }

    async fn intakes_of(&self, user: &UserId) -> Result<Vec<IntakeRecord>, Unavailable> {
        let query = Query::from("SELECT * FROM c WHERE c.type = 'intake'");
        let mut docs: Vec<IntakeDoc> = self.query(query, FeedScope::partition(user.as_str().to_owned())).await?;
        docs.sort_by_key(|d| d.intake.id);
        Ok(docs.into_iter().map(|d| d.intake).collect())
    }
}

#[path = "cosmos_reminders.rs"]
mod reminders;

/// The markers, read and cleared.
impl CosmosProductRepository {
    async fn pending(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<OcrRequested>, Unavailable> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Pending {
            pending_ocr: OcrRequested,
        }
        // Across partitions: the sweeper acts for every user. Only marked documents match, and
        // a marker lives for the few milliseconds between the write and the publication.
        let query = Query::from(format!(
            "SELECT TOP {limit} c.pendingOcr FROM c WHERE c.type IN ('product', 'intake') AND c.pendingOcrSince < @before"
        ))
        .with_parameter("@before", ts(before))
        .map_err(unavailable)?;
        let mut found: Vec<OcrRequested> = self
            .container
            .query_items::<Pending>(query, FeedScope::full_container(), None)
            .await
            .map_err(unavailable)?
            .map_ok(|p| p.pending_ocr)
            .try_collect()
            .await
            .map_err(unavailable)?;
        found.sort_by_key(|e| e.requested_at);
        found.truncate(limit);
        Ok(found)
    }

    async fn mark_published(&self, event: &OcrRequested) -> Result<(), Unavailable> {
        let (user, id) = (event.user_id.as_str(), event.product_id.to_string());
        let ours = |pending: &Option<OcrRequested>| pending.as_ref().map(|p| &p.message_id) == Some(&event.message_id);
        let cleared = match event.subject {
            Subject::Product => {
                self.update(user, &id, |doc| {
                    if !ours(&doc.pending_ocr) {
                        return false;
                    }
                    doc.pending_ocr = None;
                    doc.pending_ocr_since = None;
                    true
                })
                .await
            }
            Subject::Intake => {
                self.update_typed::<IntakeDoc>(user, &id, |doc| {
                    if !ours(&doc.pending_ocr) {
                        return false;
                    }
                    doc.pending_ocr = None;
                    doc.pending_ocr_since = None;
                    true
                })
                .await
            }
        };
        cleared.map(|_| ())
    }
}

/// The pending-publication markers are the Cosmos DB store's outbox: written in the product's
/// document, cleared once Service Bus took the event. A marker has no lock and no delivery
/// count: until cleared it is found again by the next drain.
#[async_trait]
impl Outbox for CosmosProductRepository {
    async fn claim(
        &self,
        min_age: std::time::Duration,
        _lock: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, Unavailable> {
        let before = Utc::now() - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        Ok(self.pending(before, limit).await?.iter().map(OutboxMessage::for_event).collect())
    }

    async fn delivered(&self, message: &OutboxMessage) -> Result<(), Unavailable> {
        let event = message.event().map_err(unavailable)?;
        self.mark_published(&event).await
    }

    async fn retry_at(&self, _: &OutboxMessage, _: DateTime<Utc>, _: &str) -> Result<(), Unavailable> {
        // The marker stays; the next drain finds it.
        Ok(())
    }

    async fn dead_letter(&self, message: &OutboxMessage, reason: &str) -> Result<(), Unavailable> {
        // Markers are not counted, so never dead-lettered here; Service Bus dead-letters.
        tracing::error!(message_id = %message.message_id, reason, "a marker asked to be dead-lettered stays");
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, Unavailable> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_time_then_id() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T10:00:00.5Z").unwrap().to_utc();
        let a = sort_key(t, uuid::Uuid::from_u128(1));
        let b = sort_key(t, uuid::Uuid::from_u128(2));
        let c = sort_key(t + chrono::Duration::nanoseconds(1), uuid::Uuid::from_u128(0));
        let d = sort_key(t + chrono::Duration::seconds(10), uuid::Uuid::from_u128(0));
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert!(d.as_str() < "~", "the first page's bound is above every key");
    }

    #[test]
    fn idempotency_ids_are_valid_cosmos_ids_for_any_key() {
        for key in ["a/b", "x\\y", "q?#", "ünïcødé", ""] {
            let id = idempotency_id(key);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{id}");
            assert_eq!(id.len(), 5 + 64);
        }
        assert_ne!(idempotency_id("a"), idempotency_id("b"));
    }
}
