//! The page a phone's browser shows when someone scans the card's QR code: server-rendered,
//! no script, readable at a glance — covered today or not, until when, and each coverage.

use chrono::NaiveDate;

/// One coverage row of the page.
pub struct PageCoverage {
    pub label: &'static str,
    pub provider: Option<String>,
    pub starts_on: NaiveDate,
    pub expires_on: Option<NaiveDate>,
    pub status: &'static str,
}

pub struct PageView {
    pub brand: String,
    pub model: String,
    pub masked_serial: String,
    pub covered_today: bool,
    pub covered_until: Option<NaiveDate>,
    pub checked_on: NaiveDate,
    pub coverages: Vec<PageCoverage>,
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1b1d21}\
main{max-width:34rem;margin:0 auto;padding:1.25rem}\
.verdict{border-radius:.75rem;padding:1.25rem;color:#fff;margin-bottom:1rem}\
.yes{background:#17803d}.no{background:#b42318}\
.verdict h1{font-size:1.6rem;margin:0 0 .25rem}.verdict p{margin:0;font-size:1.1rem}\
section{background:#fff;border-radius:.75rem;padding:1rem 1.25rem;margin-bottom:1rem}\
h2{font-size:1.3rem;margin:0}.model{margin:.2rem 0 .6rem;color:#444}\
dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem}dt{color:#666}dd{margin:0}\
ul{list-style:none;margin:0;padding:0}li{padding:.6rem 0;border-top:1px solid #eee}li:first-child{border-top:0}\
.status{float:right;font-weight:600}.active{color:#17803d}.expired{color:#b42318}.upcoming{color:#8a6100}\
footer{color:#666;font-size:.85rem;text-align:center}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>",
        esc(title)
    )
}

/// The verification page of a valid link.
pub fn render(view: &PageView) -> String {
    let (class, headline, detail) = if view.covered_today {
        let until = match view.covered_until {
            Some(d) => format!("until {d}"),
            None => "for life".to_owned(),
        };
        ("yes", "Covered today", until)
    } else {
        ("no", "Not covered today", "No coverage is active on this date.".to_owned())
    };
    let mut rows = String::new();
    for c in &view.coverages {
        let provider = c.provider.as_deref().map(|p| format!(" · {}", esc(p))).unwrap_or_default();
        let term = match c.expires_on {
            Some(end) => format!("{} to {end}", c.starts_on),
            None => format!("from {}, for life", c.starts_on),
        };
        rows.push_str(&format!(
            "<li><span class=\"status {status}\">{status}</span><strong>{label}</strong>{provider}<br>{term}</li>",
            status = c.status,
            label = esc(c.label),
        ));
    }
    let body = format!(
        "<div class=\"verdict {class}\"><h1>{headline}</h1><p>{}</p></div>\
<section><h2>{}</h2><p class=\"model\">{}</p><dl><dt>Serial number</dt><dd>{}</dd><dt>Checked on</dt><dd>{}</dd></dl></section>\
<section><h2>Coverages</h2><ul>{rows}</ul></section>\
<footer>Verified by the warranty service. The owner's details are not shown.</footer>",
        esc(&detail),
        esc(&view.brand),
        esc(&view.model),
        esc(&view.masked_serial),
        view.checked_on,
    );
    page(&format!("{headline} — {} {}", view.brand, view.model), &body)
}

/// The page of a link that is not valid (tampered, expired or revoked).
pub fn not_valid() -> String {
    page(
        "Link not valid",
        "<div class=\"verdict no\"><h1>This link is not valid</h1><p>It may have expired or been withdrawn by the owner.</p></div>\
<footer>Ask the owner for a new warranty card.</footer>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_users_is_escaped() {
        let html = render(&PageView {
            brand: "<script>alert(1)</script>".into(),
            model: "A & B".into(),
            masked_serial: "••••1234".into(),
            covered_today: true,
            covered_until: None,
            checked_on: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            coverages: vec![],
        });
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;") && html.contains("A &amp; B"));
        assert!(html.contains("for life"));
    }
}
