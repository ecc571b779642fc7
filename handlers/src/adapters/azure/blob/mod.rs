//! Invoices in Azure Blob Storage, with the official `azure_storage_blob` crate.
//!
//! Uploads are streamed as blocks (`Put Block`, 1 MiB each) and made visible atomically with
//! `Put Block List` on commit, so at most one block per upload is held in memory and a blob
//! never exists half-written. An aborted upload leaves only uncommitted blocks, which the
//! service discards after seven days; no blob is created. The SHA-256 and the content type are
//! stored with the blob, and so is its owner (metadata `owner`): reconciliation reads a listed
//! invoice's product with one point read in its owner's partition.
//!
//! Auth: a managed identity (Entra token) in Azure; locally (Azurite) a SAS in the container URL,
//! signed with the account key from a connection string (see [`sas`]).
//!
//! Names: `{hour written, UTC}/{stem}.{ext}`, for example
//! `2026-12-06T05/0193b6a0-….v1.pdf`. Reconciliation lists the hours of its window, one prefix
//! each ([`InvoiceStore::written_between`]), so its cost follows the invoices written in the window
//! and never the container's total. (Blobs named before this scheme, without an hour, are not
//! listed: they are older than any window once the window has passed since the deployment.)

pub mod sas;

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{RequestContent, StatusCode, Url};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::clients::BlockBlobClient;
use azure_storage_blob::models::{BlockBlobClientCommitBlockListOptions, BlockLookupList};
use bytes::Bytes;

use super::identity::Identity;
use crate::config::{InvoiceStoreSettings, StartupError};
use crate::domain::UserId;
use crate::ports::{InvoiceStore, InvoiceUpload, Unavailable, Written};

const BACKEND: &str = "invoice store (blob)";
/// Size of one staged block.
pub const BLOCK_SIZE: usize = 1024 * 1024;

fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::new(BACKEND, e)
}

fn status(e: &azure_core::Error) -> Option<StatusCode> {
    e.http_status()
}

/// Block buffers all uploads of this process may hold at once (1 MiB each): memory under many
/// simultaneous uploads is bounded by construction, and an upload that finds none free waits
/// (its client is slowed by TCP back-pressure) rather than growing the process.
pub const BLOCK_BUDGET: usize = 16;

/// Longest wait for a block buffer before the upload fails with 503.
const BLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct BlobInvoiceStore {
    container: Arc<BlobContainerClient>,
    budget: Arc<tokio::sync::Semaphore>,
}

impl BlobInvoiceStore {
    /// `container_url` may carry a SAS (then `credential` is `None`).
    pub fn new(container_url: Url, credential: Option<Arc<dyn TokenCredential>>) -> Result<Self, Unavailable> {
        let container = BlobContainerClient::new(container_url, credential, None).map_err(unavailable)?;
        Ok(Self { container: Arc::new(container), budget: Arc::new(tokio::sync::Semaphore::new(BLOCK_BUDGET)) })
    }

    /// The store the settings describe (its container created if missing): the managed
    /// identity with `InvoiceStorage__blobServiceUri`, or a SAS signed from a connection string
    /// (local use only).
    pub async fn from_settings(settings: &InvoiceStoreSettings, identity: &Identity) -> Result<Self, StartupError> {
        let store = Self::configured(settings, identity)?;
        store.ensure_container().await?;
        Ok(store)
    }

    /// The store the settings describe, checked without touching the network (start-up binds
    /// its port first, then calls [`Self::ensure_container`] until the account answers).
    pub fn configured(settings: &InvoiceStoreSettings, identity: &Identity) -> Result<Self, StartupError> {
        let container = &settings.blob_container;
        let store = if let Some(uri) = &settings.blob_service_uri {
            // Production: the app's managed identity; no key anywhere.
            let url = Url::parse(&format!("{}/{container}", uri.trim_end_matches('/')))
                .map_err(|e| StartupError::BlobConfig(e.to_string()))?;
            let credential = identity.credential().map_err(StartupError::BlobConfig)?;
            Self::new(url, Some(credential))?
        } else if let Some(cs) = &settings.blob_connection_string {
            let account = sas::StorageAccount::parse(cs).map_err(StartupError::BlobConfig)?;
            // A SAS valid for a year, signed at start-up; restarting re-signs it.
            let signed = account
                .container_sas_url(container, chrono::Utc::now() + chrono::Duration::days(365))
                .map_err(StartupError::BlobConfig)?;
            let url = Url::parse(&signed).map_err(|e| StartupError::BlobConfig(e.to_string()))?;
            Self::new(url, None)?
        } else {
            return Err(StartupError::BlobConfig("neither is set".into()));
        };
        Ok(store)
    }

    /// Creates the (private) container if it does not exist.
    pub async fn ensure_container(&self) -> Result<(), Unavailable> {
        match self.container.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Names of all blobs (tests and operators).
    pub async fn list(&self) -> Result<Vec<String>, Unavailable> {
        use futures_util::TryStreamExt;
        let mut pager = self.container.list_blobs(None).map_err(unavailable)?;
        let mut names = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(unavailable)? {
            if let Some(name) = item.name {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// The metadata entry naming a blob's owner: the user id in unpadded base64url (metadata values
/// travel as HTTP header values, which a user id's characters need not all fit).
const OWNER: &str = "owner";

fn encode_owner(owner: &UserId) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(owner.as_str())
}

fn decode_owner(value: &str) -> Option<UserId> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok()?;
    String::from_utf8(bytes).ok().map(UserId)
}

struct BlobUpload {
    client: BlockBlobClient,
    location: String,
    owner: String,
    content_type: &'static str,
    /// The block being filled; handed to the request without a copy when full. Allocated only
    /// while `permit` is held.
    buf: Vec<u8>,
    blocks: Vec<Vec<u8>>,
    hasher: sha2::Sha256,
    budget: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl BlobUpload {
    /// A block buffer from the process's budget, waited for at most [`BLOCK_WAIT`].
    async fn reserve(&mut self) -> Result<(), Unavailable> {
        if self.permit.is_some() {
            return Ok(());
        }
        let permit = tokio::time::timeout(BLOCK_WAIT, self.budget.clone().acquire_owned())
            .await
            .map_err(|_| Unavailable::busy(BACKEND, "every upload buffer is in use"))?
            .map_err(unavailable)?;
        self.permit = Some(permit);
        self.buf = Vec::with_capacity(BLOCK_SIZE);
        Ok(())
    }

    async fn stage(&mut self, data: Vec<u8>) -> Result<(), Unavailable> {
        // Block ids must all have the same length within a blob.
        let id = format!("block-{:06}", self.blocks.len()).into_bytes();
        let len = data.len() as u64;
        self.client.stage_block(&id, len, RequestContent::from(data), None).await.map_err(unavailable)?;
        self.blocks.push(id);
        Ok(())
    }
}

#[async_trait]
impl InvoiceUpload for BlobUpload {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), Unavailable> {
        use sha2::Digest;
        self.hasher.update(chunk);
        let mut rest = chunk;
        while !rest.is_empty() {
            self.reserve().await?;
            let room = BLOCK_SIZE - self.buf.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == BLOCK_SIZE {
                let block = std::mem::take(&mut self.buf);
                self.stage(block).await?;
                // The buffer went with the request: give its place back.
                self.permit = None;
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<String, Unavailable> {
        use sha2::Digest;
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.stage(rest).await?;
        }
        self.permit = None;
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let list = BlockLookupList { latest: Some(std::mem::take(&mut self.blocks)), ..Default::default() };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(self.content_type.to_owned()),
            metadata: Some([("sha256".to_owned(), sha), (OWNER.to_owned(), self.owner.clone())].into_iter().collect()),
            ..Default::default()
        };
        let body = RequestContent::try_from(list).map_err(unavailable)?;
        self.client.commit_block_list(body, Some(options)).await.map_err(unavailable)?;
        Ok(self.location.clone())
    }

    async fn abort(self: Box<Self>) {
        // Nothing was committed: no blob exists; staged blocks expire on their own.
    }
}

/// The name prefix of the blobs written in the hour of `t` (UTC): `2026-12-06T05/`.
pub fn hour_prefix(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H/").to_string()
}

/// The hours from the one holding `from` to the one holding `to` (none when `to` < `from`).
fn hours_between(
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> impl Iterator<Item = chrono::DateTime<chrono::Utc>> {
    use chrono::DurationRound;
    let hour = chrono::Duration::hours(1);
    let first = from.duration_trunc(hour).unwrap_or(from);
    std::iter::successors(Some(first), move |h| Some(*h + hour)).take_while(move |h| *h <= to)
}

fn content_type_of(ext: &str) -> &'static str {
    match ext {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

#[async_trait]
impl InvoiceStore for BlobInvoiceStore {
    async fn written_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Written>, Unavailable> {
        use futures_util::TryStreamExt;
        let mut found = Vec::new();
        // One listing per hour of the window, and the hour on each side: a name's hour comes
        // from the writing instance's clock, the last-modified time from the service's.
        for hour in hours_between(from - chrono::Duration::hours(1), to + chrono::Duration::hours(1)) {
            let options = azure_storage_blob::models::BlobContainerClientListBlobsOptions {
                prefix: Some(hour_prefix(hour)),
                include: Some(vec![azure_storage_blob::models::ListBlobsIncludeItem::Metadata]),
                ..Default::default()
            };
            let mut pager = self.container.list_blobs(Some(options)).map_err(unavailable)?;
            while let Some(item) = pager.try_next().await.map_err(unavailable)? {
                let modified = item
                    .properties
                    .as_ref()
                    .and_then(|p| p.last_modified)
                    .and_then(|t| chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()));
                if let (Some(name), Some(modified)) = (item.name, modified)
                    && modified >= from
                    && modified <= to
                {
                    let owner = item.metadata.and_then(|m| m.values?.remove(OWNER)).and_then(|v| decode_owner(&v));
                    found.push(Written { location: name, owner });
                }
            }
        }
        Ok(found)
    }

    async fn begin_named(&self, owner: &UserId, stem: &str, ext: &str) -> Result<Box<dyn InvoiceUpload>, Unavailable> {
        let location = format!("{}{stem}.{ext}", hour_prefix(chrono::Utc::now()));
        let client = self.container.blob_client(&location).block_blob_client();
        Ok(Box::new(BlobUpload {
            client,
            location,
            owner: encode_owner(owner),
            content_type: content_type_of(ext),
            buf: Vec::new(),
            blocks: Vec::new(),
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            budget: self.budget.clone(),
            permit: None,
        }))
    }

    async fn delete(&self, location: &str) -> Result<(), Unavailable> {
        match self.container.blob_client(location).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn open(&self, location: &str) -> Result<Option<crate::ports::ChunkStream>, Unavailable> {
        use futures_util::StreamExt;
        // One range request at a time, 1 MiB each: the export holds one chunk of one blob (the
        // SDK's default downloads 8 or more partitions at once).
        let options = azure_storage_blob::models::BlobClientDownloadOptions {
            parallel: std::num::NonZero::new(1),
            partition_size: std::num::NonZero::new(1024 * 1024),
            ..Default::default()
        };
        match self.container.blob_client(location).download(Some(options)).await {
            Ok(resp) => Ok(Some(Box::pin(resp.body.map(|chunk| chunk.map_err(unavailable))))),
            Err(e) if status(&e) == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read(&self, location: &str) -> Result<Option<Bytes>, Unavailable> {
        match self.container.blob_client(location).download(None).await {
            Ok(resp) => resp.body.collect().await.map(|b| Some(Bytes::from(b.to_vec()))).map_err(unavailable),
            Err(e) if status(&e) == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn health(&self) -> Result<(), Unavailable> {
        self.container.get_properties(None).await.map(|_| ()).map_err(unavailable)
    }
}
