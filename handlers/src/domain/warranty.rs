//! When a warranty ends.
//!
//! Rule (the civil-law month rule, as in EU Regulation 1182/71 art. 3(2)(c) and BGB §188(3)):
//! a warranty of N months bought on day D ends on day D of the month N months later. When that
//! month has no day D (bought 31 January, or 29 February with 12 months), it ends on the last
//! day of that month. The warranty is active up to and including its end date.

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;

/// The last day covered by a warranty of `months` months bought on `purchase`.
///
/// `chrono`'s month arithmetic already clamps to the last day of the target month; this
/// function exists to name the rule and pin it down with tests.
pub fn expiry_date(purchase: NaiveDate, months: u32) -> NaiveDate {
    purchase.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WarrantyStatus {
    Active,
    Expired,
}

impl WarrantyStatus {
    /// `today` is the UTC calendar date: the card says "expired" from the day after the end date.
    pub fn on(expires_on: NaiveDate, today: NaiveDate) -> Self {
        if today <= expires_on { Self::Active } else { Self::Expired }
    }
}

/// Whether `date` is the last day of its month (used by tests and by callers that print rules).
pub fn is_month_end(date: NaiveDate) -> bool {
    date.succ_opt().is_none_or(|next| next.month() != date.month())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn same_day_n_months_later() {
        assert_eq!(expiry_date(d(2024, 3, 15), 24), d(2026, 3, 15));
        assert_eq!(expiry_date(d(2024, 11, 30), 3), d(2025, 2, 28));
    }

    #[test]
    fn month_ends_clamp_to_the_last_day_of_the_target_month() {
        assert_eq!(expiry_date(d(2025, 1, 31), 1), d(2025, 2, 28));
        assert_eq!(expiry_date(d(2027, 1, 31), 13), d(2028, 2, 29));
        assert_eq!(expiry_date(d(2025, 3, 31), 1), d(2025, 4, 30));
    }

    #[test]
    fn leap_day_purchases() {
        assert_eq!(expiry_date(d(2024, 2, 29), 12), d(2025, 2, 28));
        assert_eq!(expiry_date(d(2024, 2, 29), 48), d(2028, 2, 29));
        assert_eq!(expiry_date(d(2024, 2, 29), 24), d(2026, 2, 28));
    }

    #[test]
    fn active_through_the_end_date_inclusive() {
        let end = d(2026, 3, 15);
        assert_eq!(WarrantyStatus::on(end, d(2026, 3, 14)), WarrantyStatus::Active);
        assert_eq!(WarrantyStatus::on(end, end), WarrantyStatus::Active);
        assert_eq!(WarrantyStatus::on(end, d(2026, 3, 16)), WarrantyStatus::Expired);
    }

    proptest! {
        #[test]
        fn expiry_is_in_the_right_month_on_the_same_or_clamped_day(
            days in 0i64..40_000, months in 0u32..121
        ) {
            let purchase = d(1970, 1, 1) + chrono::Duration::days(days);
            let end = expiry_date(purchase, months);
            let total = purchase.year() * 12 + purchase.month0() as i32 + months as i32;
            prop_assert_eq!(end.year(), total.div_euclid(12));
            prop_assert_eq!(end.month0() as i32, total.rem_euclid(12));
            if end.day() != purchase.day() {
                prop_assert!(end.day() < purchase.day());
                prop_assert!(is_month_end(end));
            }
            prop_assert!(end >= purchase);
        }
    }
}
