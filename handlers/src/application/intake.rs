//! Receiving an invoice while it streams in: magic-byte check on the first bytes, the size cap
//! on every chunk, SHA-256 as it goes. Nothing is buffered beyond the first few bytes.

use super::Error;
use sha2::{Digest, Sha256};

use crate::domain::invoice::{SNIFF_BYTES, display_file_name};
use crate::domain::{INVOICE_MAX_BYTES, InvoiceKind, ProductId, Sniffed, UserId};
use crate::ports::{InvoiceStore, InvoiceUpload};

/// An invoice fully received but not yet committed to its final location.
pub struct ReceivedInvoice {
    pub kind: InvoiceKind,
    pub size_bytes: u64,
    pub sha256: String,
    pub crc32: u32,
    pub file_name: String,
    pub version: u32,
    pub(crate) upload: Box<dyn InvoiceUpload>,
}

impl ReceivedInvoice {
    pub async fn abort(self) {
        self.upload.abort().await;
    }

    /// Commits the upload and returns what a product keeps of it.
    pub async fn commit(self) -> Result<crate::domain::InvoiceRef, Error> {
        let location = self.upload.commit().await?;
        Ok(crate::domain::InvoiceRef {
            file_name: self.file_name,
            kind: self.kind,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            crc32: Some(self.crc32),
            location,
            version: self.version,
        })
    }
}

/// Result of a finished intake: a file, or "the part was empty".
pub enum Finished {
    Received(ReceivedInvoice),
    Empty,
}

pub struct InvoiceIntake<'a> {
    store: &'a dyn InvoiceStore,
    owner: &'a UserId,
    product: ProductId,
    version: u32,
    client_name: Option<String>,
    head: Vec<u8>,
    kind: Option<InvoiceKind>,
    upload: Option<Box<dyn InvoiceUpload>>,
    size: u64,
    hasher: Sha256,
    crc: crc32fast::Hasher,
    /// The file's name without extension, when it is not the product's invoice.
    stem: Option<String>,
}

impl<'a> InvoiceIntake<'a> {
    pub fn new(
        store: &'a dyn InvoiceStore,
        owner: &'a UserId,
        product: ProductId,
        client_name: Option<String>,
    ) -> Self {
        Self {
            store,
            owner,
            product,
            version: 1,
            client_name,
            head: Vec::with_capacity(SNIFF_BYTES),
            kind: None,
            upload: None,
            size: 0,
            hasher: Sha256::new(),
            crc: crc32fast::Hasher::new(),
            stem: None,
        }
    }

    /// Receives the proof document of a coverage (`{product}.proof-{coverage}.{ext}`) rather
    /// than an invoice; the same type and size rules apply.
    pub fn for_proof(mut self, coverage: uuid::Uuid) -> Self {
        self.stem = Some(format!("{}.proof-{coverage}", self.product));
        self
    }

    /// Receives an intake's invoice (`{intake}.intake.{ext}`; `product` is the intake's id).
    pub fn for_intake(mut self) -> Self {
        self.stem = Some(format!("{}.intake", self.product));
        self
    }

    /// Receives version `version` of the product's invoice (a replacement), not the first.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Feeds the next chunk. On error the partial upload is already removed.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let result = self.push_inner(chunk).await;
        if result.is_err() {
            self.discard().await;
        }
        result
    }

    async fn push_inner(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        if self.size >= INVOICE_MAX_BYTES {
            return Err(Error::InvoiceTooLarge);
        }
        self.hasher.update(chunk);
        self.crc.update(chunk);
        if self.upload.is_none() {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            match InvoiceKind::sniff(&self.head) {
                Sniffed::Unsupported => return Err(Error::InvoiceUnsupported),
                Sniffed::NeedMore => return Ok(()),
                Sniffed::Kind(kind) => {
                    let mut upload = match &self.stem {
                        Some(stem) => self.store.begin_named(self.owner, stem, kind.extension()).await?,
                        None => self.store.begin(self.owner, self.product, self.version, kind.extension()).await?,
                    };
                    self.kind = Some(kind);
                    // The head bytes seen so far, then whatever of this chunk came after them.
                    let already = self.head.len() - take;
                    upload.write(&self.head[..already]).await?;
                    upload.write(chunk).await?;
                    self.upload = Some(upload);
                    return Ok(());
                }
            }
        }
        if let Some(upload) = self.upload.as_mut() {
            upload.write(chunk).await?;
        }
        Ok(())
    }

    /// The part ended.
    pub async fn finish(mut self) -> Result<Finished, Error> {
        if self.size == 0 {
            return Ok(Finished::Empty);
        }
        let (Some(kind), Some(upload)) = (self.kind, self.upload.take()) else {
            // Fewer bytes than a signature: whatever it is, it is not an invoice we accept.
            return Err(Error::InvoiceUnsupported);
        };
        Ok(Finished::Received(ReceivedInvoice {
            kind,
            size_bytes: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            crc32: self.crc.finalize(),
            file_name: display_file_name(self.client_name.as_deref(), kind),
            version: self.version,
            upload,
        }))
    }

    /// Gives up: removes whatever was written.
    pub async fn discard(&mut self) {
        if let Some(upload) = self.upload.take() {
            upload.abort().await;
        }
    }
}
