//! A streaming ZIP writer (PKWARE APPNOTE 6.3): entries are written one after another with their
//! sizes and CRC-32 in a data descriptor after the data, so nothing is buffered but the entry's
//! last chunk and the central directory (one small record per entry). ZIP64 records are written
//! when the archive outgrows the 32-bit fields (offsets past 4 GiB, more than 65,535 entries).
//!
//! The writer produces bytes; the caller sends them wherever it likes (an HTTP body, a file).

use std::io::Write;

use flate2::Crc;
use flate2::write::DeflateEncoder;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// Bit 3: sizes and CRC follow the data. Bit 11: names are UTF-8.
const FLAGS: u16 = (1 << 3) | (1 << 11);
/// 4.5: ZIP64.
const VERSION: u16 = 45;
/// Largest entry this writer takes (its descriptor holds 32-bit sizes).
pub const MAX_ENTRY: u64 = 0xFFFF_FFFE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// As is (files that are compressed already: PDF, JPEG, PNG).
    Stored,
    /// Deflate (text).
    Deflated,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Self::Stored => 0,
            Self::Deflated => 8,
        }
    }
}

struct Central {
    name: String,
    method: Method,
    crc: u32,
    compressed: u64,
    size: u64,
    offset: u64,
    dos_time: u16,
    dos_date: u16,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("entry {0} is larger than this writer takes")]
    TooLarge(String),
    #[error("no entry is open")]
    NoEntry,
}

/// The archive being written. `start`, then `write` any number of times, then `finish` an entry;
/// each returns the bytes to send next. `close` returns the central directory.
pub struct ZipWriter {
    offset: u64,
    entries: Vec<Central>,
    current: Option<Open>,
    dos_time: u16,
    dos_date: u16,
}

struct Open {
    name: String,
    method: Method,
    crc: Crc,
    size: u64,
    compressed: u64,
    offset: u64,
    deflate: Option<DeflateEncoder<Vec<u8>>>,
}

/// MS-DOS date and time of `t` (the format's own, local to nobody: UTC here).
fn dos(t: chrono::DateTime<chrono::Utc>) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let year = t.year().clamp(1980, 2107) as u16;
    let date = ((year - 1980) << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    (time, date)
}

impl ZipWriter {
    /// An empty archive whose entries are dated `at`.
    pub fn new(at: chrono::DateTime<chrono::Utc>) -> Self {
        let (dos_time, dos_date) = dos(at);
        Self { offset: 0, entries: Vec::new(), current: None, dos_time, dos_date }
    }

    /// Opens entry `name` and returns its local header.
    pub fn start(&mut self, name: &str, method: Method) -> Vec<u8> {
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&FLAGS.to_le_bytes());
        h.extend_from_slice(&method.code().to_le_bytes());
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&[0; 12]); // CRC and sizes: in the data descriptor
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        self.current = Some(Open {
            name: name.to_owned(),
            method,
            crc: Crc::new(),
            size: 0,
            compressed: 0,
            offset: self.offset,
            deflate: (method == Method::Deflated)
                .then(|| DeflateEncoder::new(Vec::new(), flate2::Compression::default())),
        });
        self.offset += h.len() as u64;
        h
    }

    /// Adds `data` to the open entry; returns the bytes to send (maybe none yet, when
    /// deflating).
    pub fn write(&mut self, data: &[u8]) -> Result<Vec<u8>, ZipError> {
        let open = self.current.as_mut().ok_or(ZipError::NoEntry)?;
        open.crc.update(data);
        open.size += data.len() as u64;
        if open.size > MAX_ENTRY {
            return Err(ZipError::TooLarge(open.name.clone()));
        }
        let out = match &mut open.deflate {
            None => data.to_vec(),
            Some(enc) => {
                enc.write_all(data).expect("writing to memory");
                std::mem::take(enc.get_mut())
            }
        };
        open.compressed += out.len() as u64;
        self.offset += out.len() as u64;
        Ok(out)
    }

    /// Closes the open entry: the rest of its data and its data descriptor.
    pub fn finish(&mut self) -> Result<Vec<u8>, ZipError> {
        let mut open = self.current.take().ok_or(ZipError::NoEntry)?;
        let mut out = match open.deflate.take() {
            None => Vec::new(),
            Some(enc) => enc.finish().expect("writing to memory"),
        };
        open.compressed += out.len() as u64;
        if open.compressed > MAX_ENTRY {
            return Err(ZipError::TooLarge(open.name));
        }
        let crc = open.crc.sum();
        out.extend_from_slice(&DATA_DESCRIPTOR.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(open.compressed as u32).to_le_bytes());
        out.extend_from_slice(&(open.size as u32).to_le_bytes());
        // The deflate tail and the descriptor: neither was counted yet.
        self.offset += out.len() as u64;
        self.entries.push(Central {
            name: open.name,
            method: open.method,
            crc,
            compressed: open.compressed,
            size: open.size,
            offset: open.offset,
            dos_time: self.dos_time,
            dos_date: self.dos_date,
        });
        Ok(out)
    }

    /// The central directory and its end records.
    pub fn close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let start = self.offset;
        for e in &self.entries {
            let big_offset = e.offset >= 0xFFFF_FFFF;
            let mut extra = Vec::new();
            if big_offset {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&8u16.to_le_bytes());
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            out.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
            out.extend_from_slice(&(VERSION | (3 << 8)).to_le_bytes()); // made by: Unix
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&FLAGS.to_le_bytes());
            out.extend_from_slice(&e.method.code().to_le_bytes());
            out.extend_from_slice(&e.dos_time.to_le_bytes());
            out.extend_from_slice(&e.dos_date.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&(e.compressed as u32).to_le_bytes());
            out.extend_from_slice(&(e.size as u32).to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // comment
            out.extend_from_slice(&0u16.to_le_bytes()); // disk
            out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // rw-r--r-- file
            let offset32 = if big_offset { 0xFFFF_FFFF } else { e.offset as u32 };
            out.extend_from_slice(&offset32.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
            out.extend_from_slice(&extra);
        }
        let size = out.len() as u64;
        let count = self.entries.len() as u64;
        let zip64 = start >= 0xFFFF_FFFF || size >= 0xFFFF_FFFF || count >= 0xFFFF;
        if zip64 {
            let record = start + size;
            out.extend_from_slice(&ZIP64_END_OF_CENTRAL.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&(VERSION | (3 << 8)).to_le_bytes());
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&record.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        let clamp16 = |n: u64| if zip64 && n >= 0xFFFF { 0xFFFF } else { n as u16 };
        let clamp32 = |n: u64| if zip64 && n >= 0xFFFF_FFFF { 0xFFFF_FFFF } else { n as u32 };
        out.extend_from_slice(&END_OF_CENTRAL.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&clamp16(count).to_le_bytes());
        out.extend_from_slice(&clamp16(count).to_le_bytes());
        out.extend_from_slice(&clamp32(size).to_le_bytes());
        out.extend_from_slice(&clamp32(start).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, Method, &[u8])]) -> Vec<u8> {
        let mut zip = ZipWriter::new("2027-03-01T10:00:00Z".parse().unwrap());
        let mut out = Vec::new();
        for (name, method, data) in entries {
            out.extend(zip.start(name, *method));
            for chunk in data.chunks(7) {
                out.extend(zip.write(chunk).unwrap());
            }
            out.extend(zip.finish().unwrap());
        }
        out.extend(zip.close());
        out
    }

    /// Python's `zipfile` (a reader this code did not write) lists and CRC-checks the archive.
    fn python_reads(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; \
                 print(len(z.infolist()), z.infolist()[0].filename, z.read(z.infolist()[-1]).decode()[:40])",
            ])
            .arg(&path)
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn stored_and_deflated_entries_read_back() {
        let text = "Größe, taille, size: ".repeat(500);
        let bytes = archive(&[
            ("invoices/a.pdf", Method::Stored, b"%PDF-1.7 not really"),
            ("empty.txt", Method::Deflated, b""),
            ("products.json", Method::Deflated, text.as_bytes()),
        ]);
        assert_eq!(python_reads(&bytes), "3 invoices/a.pdf Größe, taille, size: Größe, taille, size");
        assert!(bytes.len() < text.len() / 5, "text is deflated");
    }

    #[test]
    fn more_than_65535_entries_get_zip64_records() {
        let names: Vec<String> = (0..70_000).map(|n| format!("f{n}")).collect();
        let entries: Vec<(&str, Method, &[u8])> =
            names.iter().map(|n| (n.as_str(), Method::Stored, b"x".as_slice())).collect();
        let bytes = archive(&entries);
        assert!(bytes.windows(4).any(|w| w == ZIP64_END_OF_CENTRAL.to_le_bytes()));
        assert_eq!(python_reads(&bytes), "70000 f0 x");
    }
}
