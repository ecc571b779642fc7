//! Tesseract (Debian `tesseract-ocr`) and poppler's `pdftoppm`, run as processes.
//!
//! The CLI's TSV output gives every word with its box and confidence, which is all we need;
//! the Rust bindings would need libclang and bindgen at build time. Every run has a timeout
//! (the process is killed when it expires or when the caller goes away), one OCR thread
//! (`OMP_THREAD_LIMIT=1`, so one invoice cannot take both cores), and inputs are checked
//! against page and pixel limits before anything is rendered.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::domain::extraction::TextLine;
use crate::ports::ReadError;

#[derive(Debug, Clone)]
pub struct TesseractConfig {
    pub tesseract: PathBuf,
    pub pdftoppm: PathBuf,
    /// `deu+fra+eng`: the invoice languages we read (German first: it keeps umlauts that the
    /// English model drops).
    pub languages: String,
    pub timeout: Duration,
    pub dpi: u32,
    /// Scratch space for rendered pages; one subdirectory per run, removed afterwards.
    pub scratch: PathBuf,
}

impl TesseractConfig {
    /// The service's defaults (binaries on PATH, `deu+fra+eng`, 60 s, 200 dpi): the same
    /// values as the settings' defaults, for the benchmark and the corpus test.
    pub fn defaults(scratch: PathBuf) -> Self {
        Self {
            tesseract: "tesseract".into(),
            pdftoppm: "pdftoppm".into(),
            languages: "deu+fra+eng".into(),
            timeout: Duration::from_secs(60),
            dpi: 200,
            scratch,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tesseract {
    cfg: TesseractConfig,
    version: String,
}

async fn run(cmd: &mut Command, timeout: Duration, what: &str) -> Result<std::process::Output, ReadError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| ReadError::EngineUnavailable(format!("cannot start {what}: {e}")))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(ReadError::Transient(format!("{what} failed: {e}"))),
        // Dropping the future kills the process (kill_on_drop).
        Err(_) => Err(ReadError::permanent("ocr_timeout", format!("{what} took longer than {timeout:?}"))),
    }
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Tesseract {
    /// Probes the binaries. `Err` says what is missing (reported by `/api/health`).
    pub async fn probe(cfg: TesseractConfig) -> Result<Self, String> {
        let out = run(Command::new(&cfg.tesseract).arg("--version"), Duration::from_secs(10), "tesseract")
            .await
            .map_err(|e| e.to_string())?;
        let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("tesseract").trim().to_owned();
        let langs = run(Command::new(&cfg.tesseract).arg("--list-langs"), Duration::from_secs(10), "tesseract")
            .await
            .map_err(|e| e.to_string())?;
        let listed = String::from_utf8_lossy(&langs.stdout).to_string();
        for lang in cfg.languages.split('+') {
            if !listed.lines().any(|l| l.trim() == lang) {
                return Err(format!("tesseract language data `{lang}` is not installed (tesseract-ocr-{lang})"));
            }
        }
        run(Command::new(&cfg.pdftoppm).arg("-v"), Duration::from_secs(10), "pdftoppm")
            .await
            .map_err(|e| format!("{e} (poppler-utils)"))?;
        std::fs::create_dir_all(&cfg.scratch).map_err(|e| format!("scratch dir: {e}"))?;
        Ok(Self { cfg, version })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    fn scratch(&self) -> Result<Scratch, ReadError> {
        let dir = self.cfg.scratch.join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| ReadError::Transient(format!("scratch dir: {e}")))?;
        Ok(Scratch(dir))
    }

    /// OCR of one image file.
    async fn image_file(&self, path: &Path) -> Result<Vec<TextLine>, ReadError> {
        let out = run(
            Command::new(&self.cfg.tesseract)
                .arg(path)
                .arg("stdout")
                .args(["-l", &self.cfg.languages, "--psm", "4", "tsv"])
                .env("OMP_THREAD_LIMIT", "1"),
            self.cfg.timeout,
            "tesseract",
        )
        .await?;
        if !out.status.success() {
            return Err(ReadError::permanent(
                "invoice_unreadable",
                format!("tesseract could not read the image: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        Ok(parse_tsv(&String::from_utf8_lossy(&out.stdout)))
    }

    /// OCR of a JPEG or PNG.
    pub async fn image(&self, bytes: &[u8], ext: &str) -> Result<Vec<TextLine>, ReadError> {
        let dir = self.scratch()?;
        let path = dir.0.join(format!("invoice.{ext}"));
        tokio::fs::write(&path, bytes).await.map_err(|e| ReadError::Transient(e.to_string()))?;
        self.image_file(&path).await
    }

    /// Renders the first `pages` pages of a PDF and reads each.
    pub async fn pdf(&self, bytes: &[u8], pages: usize) -> Result<(Vec<TextLine>, u32), ReadError> {
        let dir = self.scratch()?;
        let pdf = dir.0.join("invoice.pdf");
        tokio::fs::write(&pdf, bytes).await.map_err(|e| ReadError::Transient(e.to_string()))?;
        let out = run(
            Command::new(&self.cfg.pdftoppm)
                .args(["-r", &self.cfg.dpi.to_string(), "-gray", "-png", "-f", "1", "-l", &pages.to_string()])
                .arg(&pdf)
                .arg(dir.0.join("page")),
            self.cfg.timeout,
            "pdftoppm",
        )
        .await?;
        if !out.status.success() {
            return Err(ReadError::permanent(
                "invoice_unreadable",
                format!("the PDF could not be rendered: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
        let mut rendered: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .map_err(|e| ReadError::Transient(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        rendered.sort();
        let mut lines = Vec::new();
        for page in &rendered {
            lines.extend(self.image_file(page).await?);
        }
        Ok((lines, rendered.len() as u32))
    }
}

/// Tesseract TSV: level, page, block, par, line, word, left, top, width, height, conf, text.
/// Words (level 5) are joined into their lines; a line's confidence is its words' mean.
pub fn parse_tsv(tsv: &str) -> Vec<TextLine> {
    /// (page, block, paragraph, line) and the line's words with their confidences.
    type Line = ((u32, u32, u32, u32), Vec<(String, f32)>);
    let mut lines: Vec<Line> = Vec::new();
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            continue;
        }
        let word = cols[11].trim();
        let Ok(conf) = cols[10].parse::<f32>() else { continue };
        if word.is_empty() || conf < 0.0 {
            continue;
        }
        let key = (
            cols[1].parse().unwrap_or(0),
            cols[2].parse().unwrap_or(0),
            cols[3].parse().unwrap_or(0),
            cols[4].parse().unwrap_or(0),
        );
        match lines.last_mut() {
            Some((k, words)) if *k == key => words.push((word.to_owned(), conf)),
            _ => lines.push((key, vec![(word.to_owned(), conf)])),
        }
    }
    lines
        .into_iter()
        .map(|(_, words)| {
            let conf = words.iter().map(|(_, c)| c).sum::<f32>() / words.len() as f32 / 100.0;
            TextLine::new(words.into_iter().map(|(w, _)| w).collect::<Vec<_>>().join(" "), conf)
        })
        .collect()
}

/// Width and height of a PNG or JPEG from its header, without decoding it.
pub fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) && bytes.len() >= 24 {
        let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((w, h));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        while i + 9 < bytes.len() {
            if bytes[i] != 0xFF {
                i += 1;
                continue;
            }
            let marker = bytes[i + 1];
            let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
            if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u32;
                let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u32;
                return Some((w, h));
            }
            i += 2 + len;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words_become_lines_with_mean_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t10\t50\t10\t90\tTotal\n\
                   5\t1\t1\t1\t1\t2\t70\t10\t50\t10\t80\t12.00\n\
                   5\t1\t1\t1\t2\t1\t10\t30\t50\t10\t95\tVAT\n";
        let lines = parse_tsv(tsv);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "Total 12.00");
        assert!((lines[0].confidence - 0.85).abs() < 1e-6);
        assert_eq!(lines[1].text, "VAT");
    }

    #[test]
    fn image_sizes_come_from_headers() {
        let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.png")).unwrap();
        assert_eq!(image_dimensions(&png), Some((600, 300)));
        let jpg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.jpg")).unwrap();
        assert_eq!(image_dimensions(&jpg), Some((600, 300)));
        assert_eq!(image_dimensions(b"garbage"), None);
    }
}
