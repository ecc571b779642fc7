//! Invoice files: what we accept and how we recognise it.

/// An invoice must be strictly smaller than this (10 MiB).
pub const INVOICE_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// How many leading bytes [`InvoiceKind::sniff`] needs to decide.
pub const SNIFF_BYTES: usize = 8;

/// The invoice formats we accept, recognised by their magic bytes, never by the client's file
/// name or declared content type (an `.exe` renamed `.pdf` is still an `.exe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceKind {
    Pdf,
    Jpeg,
    Png,
}

/// Outcome of looking at the first bytes of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Kind(InvoiceKind),
    /// Not enough bytes yet to decide.
    NeedMore,
    Unsupported,
}

impl InvoiceKind {
    /// PDF: `%PDF-` (ISO 32000-2 §7.5.2). JPEG: SOI marker `FF D8` followed by another marker
    /// `FF`. PNG: the eight-byte signature of RFC 2083 §3.1.
    pub fn sniff(head: &[u8]) -> Sniffed {
        const SIGNATURES: [(&[u8], InvoiceKind); 3] = [
            (b"%PDF-", InvoiceKind::Pdf),
            (&[0xFF, 0xD8, 0xFF], InvoiceKind::Jpeg),
            (&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A], InvoiceKind::Png),
        ];
        let mut undecided = false;
        for (sig, kind) in SIGNATURES {
            let n = head.len().min(sig.len());
            if head[..n] == sig[..n] {
                if n == sig.len() {
                    return Sniffed::Kind(kind);
                }
                undecided = true;
            }
        }
        if undecided { Sniffed::NeedMore } else { Sniffed::Unsupported }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Jpeg => "jpg",
            Self::Png => "png",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct {
            "application/pdf" => Some(Self::Pdf),
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            _ => None,
        }
    }
}

/// The file name shown back to the user: the last path segment of what the client sent,
/// without control characters, at most 200 characters. It is only ever displayed; stored
/// objects are named from ids.
pub fn display_file_name(client_name: Option<&str>, kind: InvoiceKind) -> String {
    let base = client_name
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(""))
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|n| n.trim().trim_start_matches('.').to_owned())
        .unwrap_or_default();
    if base.is_empty() {
        return format!("invoice.{}", kind.extension());
    }
    base.chars().take(200).collect()
}

/// Where the invoice went and what it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceRef {
    pub file_name: String,
    pub kind: InvoiceKind,
    pub size_bytes: u64,
    pub sha256: String,
    /// CRC-32 of the bytes, computed with the SHA-256 as they arrived: what the reader checks the
    /// stored file against before reading it (a tenth of a SHA-256 pass). Absent on invoices
    /// stored before it existed, which are checked by their SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    /// Store-specific location (a relative path, a blob name). Never shown to clients.
    pub location: String,
    /// Bumped when the invoice is replaced; part of the OCR message id.
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_three_formats_by_magic_bytes() {
        assert_eq!(InvoiceKind::sniff(b"%PDF-1.7\n"), Sniffed::Kind(InvoiceKind::Pdf));
        assert_eq!(InvoiceKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Sniffed::Kind(InvoiceKind::Jpeg));
        assert_eq!(
            InvoiceKind::sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0]),
            Sniffed::Kind(InvoiceKind::Png)
        );
    }

    #[test]
    fn refuses_executables_archives_and_text() {
        assert_eq!(InvoiceKind::sniff(b"MZ\x90\x00\x03\x00\x00\x00"), Sniffed::Unsupported);
        assert_eq!(InvoiceKind::sniff(b"\x7fELF\x02\x01\x01\x00"), Sniffed::Unsupported);
        assert_eq!(InvoiceKind::sniff(b"PK\x03\x04\x14\x00\x06\x00"), Sniffed::Unsupported);
        assert_eq!(InvoiceKind::sniff(b"<html><body>"), Sniffed::Unsupported);
        assert_eq!(InvoiceKind::sniff(b" %PDF-1.7"), Sniffed::Unsupported);
    }

    #[test]
    fn waits_for_enough_bytes_on_a_prefix() {
        assert_eq!(InvoiceKind::sniff(b""), Sniffed::NeedMore);
        assert_eq!(InvoiceKind::sniff(b"%PD"), Sniffed::NeedMore);
        assert_eq!(InvoiceKind::sniff(&[0x89, b'P']), Sniffed::NeedMore);
        assert_eq!(InvoiceKind::sniff(&[0xFF]), Sniffed::NeedMore);
    }

    #[test]
    fn display_names_are_sanitised() {
        assert_eq!(display_file_name(Some("../../etc/passwd"), InvoiceKind::Pdf), "passwd");
        assert_eq!(display_file_name(Some("C:\\Users\\me\\bill.pdf"), InvoiceKind::Pdf), "bill.pdf");
        assert_eq!(display_file_name(Some("a\u{0}b\nc.png"), InvoiceKind::Png), "abc.png");
        assert_eq!(display_file_name(None, InvoiceKind::Jpeg), "invoice.jpg");
        assert_eq!(display_file_name(Some(".."), InvoiceKind::Pdf), "invoice.pdf");
        assert_eq!(display_file_name(Some(&"x".repeat(500)), InvoiceKind::Pdf).len(), 200);
    }
}
