//! The calendar feed (RFC 5545): one all-day event per coverage expiry, with an alarm at each
//! of the user's lead times. Lifetime coverages have no expiry and no event.

use chrono::{DateTime, NaiveDate, Utc};

/// One coverage expiry.
pub struct Expiry {
    /// Stable across feed fetches, so calendar apps update an event rather than duplicate it.
    pub uid: String,
    pub product: String,
    pub coverage: String,
    pub provider: Option<String>,
    pub serial_masked: String,
    pub expires_on: NaiveDate,
}

/// TEXT escaping (RFC 5545 §3.3.11).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A content line folded at 75 octets (never inside a UTF-8 sequence), CRLF-terminated.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

fn date(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// The whole feed.
pub fn render(expiries: &[Expiry], lead_days: &[u32], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Warranty registration backend//Warranty expiries//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Warranty expiries",
        "REFRESH-INTERVAL;VALUE=DURATION:PT12H",
        "X-PUBLISHED-TTL:PT12H",
    ] {
        line(&mut out, l);
    }
    for e in expiries {
        let by = e.provider.as_deref().map(|p| format!(" by {p}")).unwrap_or_default();
        let summary = format!("{} ends: {}", e.coverage, e.product);
        let description = format!(
            "The {}{by} for {} (serial {}) covers up to and including {}.",
            e.coverage.to_lowercase(),
            e.product,
            e.serial_masked,
            e.expires_on
        );
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", text(&e.uid)));
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(&mut out, &format!("DTSTART;VALUE=DATE:{}", date(e.expires_on)));
        line(&mut out, &format!("DTEND;VALUE=DATE:{}", date(e.expires_on.succ_opt().unwrap_or(e.expires_on))));
        line(&mut out, &format!("SUMMARY:{}", text(&summary)));
        line(&mut out, &format!("DESCRIPTION:{}", text(&description)));
        line(&mut out, "TRANSP:TRANSPARENT");
        for days in lead_days {
            line(&mut out, "BEGIN:VALARM");
            line(&mut out, "ACTION:DISPLAY");
            line(&mut out, &format!("TRIGGER:-P{days}D"));
            line(&mut out, &format!("DESCRIPTION:{}", text(&format!("{summary} in {days} days"))));
            line(&mut out, "END:VALARM");
        }
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_and_text_is_escaped() {
        let e = Expiry {
            uid: "u1@warranty".into(),
            product: "Ünïcødé, the; product\\".repeat(5),
            coverage: "Extended warranty".into(),
            provider: Some("A, B".into()),
            serial_masked: "••••1234".into(),
            expires_on: NaiveDate::from_ymd_opt(2028, 2, 29).unwrap(),
        };
        let ics = render(&[e], &[30, 7], Utc::now());
        for l in ics.split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains("SUMMARY:Extended warranty ends: Ünïcødé\\, the\\; product\\\\"));
        assert!(unfolded.contains("DTSTART;VALUE=DATE:20280229\r\nDTEND;VALUE=DATE:20280301"));
        assert_eq!(unfolded.matches("BEGIN:VALARM").count(), 2);
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
    }
}
