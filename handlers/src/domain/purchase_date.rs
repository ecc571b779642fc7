//! The day the consumer bought the product.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::FieldError;

/// The oldest purchase we accept, in years. Older than this is almost certainly a typo
/// (1924 for 2024) and no warranty that long exists.
pub const MAX_AGE_YEARS: i32 = 50;

/// A calendar date (no time zone: it is the date printed on the invoice), not in the future and
/// not absurdly old.
/// Stored as the plain date; read back as it was stored (no "future" check: time has moved on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PurchaseDate(NaiveDate);

impl PurchaseDate {
    /// Parses `YYYY-MM-DD` and checks it against `now`.
    ///
    /// "Not in the future" compares with the latest calendar date anywhere on Earth: UTC+14
    /// (Line Islands). A consumer in Kiribati who bought something this morning is already on
    /// tomorrow's UTC date and must not be refused.
    pub fn parse(raw: Option<&str>, now: DateTime<Utc>) -> Result<Self, FieldError> {
        const FIELD: &str = "purchaseDate";
        let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
            return Err(FieldError::new(FIELD, "purchase_date_missing", "`purchaseDate` is required"));
        };
        // chrono's %Y accepts signs and more than four digits; insist on the documented shape.
        let shaped = raw.len() == 10
            && raw.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        let date = shaped.then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()).flatten().ok_or_else(|| {
            FieldError::new(
                FIELD,
                "purchase_date_invalid",
                format!("`{raw}` is not a calendar date in the form YYYY-MM-DD"),
            )
        })?;
        let latest = latest_date_on_earth(now);
        if date > latest {
            return Err(FieldError::new(
                FIELD,
                "purchase_date_in_future",
                format!("the purchase date {date} is in the future"),
            ));
        }
        let earliest =
            latest.checked_sub_months(chrono::Months::new(12 * MAX_AGE_YEARS as u32)).unwrap_or(NaiveDate::MIN);
        if date < earliest {
            return Err(FieldError::new(
                FIELD,
                "purchase_date_too_old",
                format!("the purchase date {date} is more than {MAX_AGE_YEARS} years ago"),
            ));
        }
        Ok(Self(date))
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }
}

impl std::fmt::Display for PurchaseDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The calendar date in UTC+14 at instant `now`.
pub fn latest_date_on_earth(now: DateTime<Utc>) -> NaiveDate {
    (now + Duration::hours(14)).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn accepts_today_and_past() {
        let now = at(2026, 11, 24, 9);
        assert_eq!(
            PurchaseDate::parse(Some("2026-11-24"), now).unwrap().date(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
        );
        assert!(PurchaseDate::parse(Some(" 2020-02-29 "), now).is_ok());
    }

    #[test]
    fn tomorrow_utc_is_accepted_once_it_is_tomorrow_in_kiribati() {
        // 10:00 UTC on the 24th is 00:00 on the 25th at UTC+14.
        assert!(PurchaseDate::parse(Some("2026-11-25"), at(2026, 11, 24, 10)).is_ok());
        let e = PurchaseDate::parse(Some("2026-11-25"), at(2026, 11, 24, 9)).unwrap_err();
        assert_eq!(e.code, "purchase_date_in_future");
        let e = PurchaseDate::parse(Some("2026-11-26"), at(2026, 11, 24, 23)).unwrap_err();
        assert_eq!(e.code, "purchase_date_in_future");
    }

    #[test]
    fn refuses_non_dates_and_other_shapes() {
        let now = at(2026, 11, 24, 9);
        for raw in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024/01/01",
            "+2024-01-01",
            "2024-1-01",
            "01.02.2024",
            "yesterday",
            "2024-01-01T00:00:00Z",
        ] {
            let e = PurchaseDate::parse(Some(raw), now).unwrap_err();
            assert_eq!(e.code, "purchase_date_invalid", "{raw}");
        }
        assert_eq!(PurchaseDate::parse(None, now).unwrap_err().code, "purchase_date_missing");
        assert_eq!(PurchaseDate::parse(Some(""), now).unwrap_err().code, "purchase_date_missing");
    }

    #[test]
    fn refuses_absurdly_old_dates() {
        let now = at(2026, 11, 24, 9);
        assert!(PurchaseDate::parse(Some("1976-11-24"), now).is_ok());
        let e = PurchaseDate::parse(Some("1976-11-23"), now).unwrap_err();
        assert_eq!(e.code, "purchase_date_too_old");
        assert_eq!(PurchaseDate::parse(Some("0001-01-01"), now).unwrap_err().code, "purchase_date_too_old");
    }

    proptest! {
        #[test]
        fn every_past_date_within_fifty_years_round_trips(days_ago in 0i64..(49 * 365)) {
            let now = at(2026, 11, 24, 9);
            let date = now.date_naive() - Duration::days(days_ago);
            let parsed = PurchaseDate::parse(Some(&date.format("%Y-%m-%d").to_string()), now).unwrap();
            prop_assert_eq!(parsed.date(), date);
        }

        #[test]
        fn every_date_after_the_latest_on_earth_is_refused(days_ahead in 1i64..5000, hour in 0u32..24) {
            let now = at(2026, 11, 24, hour);
            let date = latest_date_on_earth(now) + Duration::days(days_ahead);
            let e = PurchaseDate::parse(Some(&date.format("%Y-%m-%d").to_string()), now).unwrap_err();
            prop_assert_eq!(e.code, "purchase_date_in_future");
        }
    }
}
