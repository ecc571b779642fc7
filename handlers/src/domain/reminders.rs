//! Expiry reminders: the user's preferences, when a reminder is due, and its identity.
//!
//! A reminder is due at the user's hour of delivery, in the user's time zone, `lead` days before
//! a coverage's expiry. Its id is derived from the coverage, the expiry date and the lead time,
//! so whoever computes it — a rerun, a second instance, a redelivery — computes the same one,
//! and a coverage whose expiry moves gets reminders for its new date.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::FieldError;

pub const DEFAULT_LEAD_DAYS: [u32; 2] = [30, 7];
pub const DEFAULT_HOUR: u8 = 9;
pub const MAX_LEAD_TIMES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Push,
    Feed,
    Webhook,
}

impl Channel {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "push" => Some(Self::Push),
            "feed" => Some(Self::Feed),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// How and when a user wants to be reminded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSettings {
    /// Days before an expiry, distinct, largest first.
    pub lead_days: Vec<u32>,
    /// IANA time zone name.
    pub time_zone: String,
    /// Local hour of delivery, 0–23.
    pub hour: u8,
    /// Where reminders go; `feed` is always included.
    pub channels: Vec<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            lead_days: DEFAULT_LEAD_DAYS.to_vec(),
            time_zone: "UTC".into(),
            hour: DEFAULT_HOUR,
            channels: vec![Channel::Push, Channel::Feed],
            webhook_url: None,
        }
    }
}

/// The longest lead time, in days.
pub const MAX_LEAD_DAYS: u32 = 365;

/// Lead times as given (1 to 5 values, each `min`–365 days), distinct and largest first; `None`
/// when they break a rule. Reminders take 1–365; the calendar feed's alarms also 0 (the day).
pub fn lead_days(days: &[i64], min: u32) -> Option<Vec<u32>> {
    if days.is_empty() || days.len() > MAX_LEAD_TIMES {
        return None;
    }
    let mut out: Vec<u32> = days
        .iter()
        .map(|d| u32::try_from(*d).ok().filter(|d| (min..=MAX_LEAD_DAYS).contains(d)))
        .collect::<Option<_>>()?;
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.dedup();
    Some(out)
}

/// Why a settings document was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SettingsError {
    /// 400: not a JSON object of settings.
    Malformed(String),
    /// 422: one entry per offending field.
    Invalid(Vec<FieldError>),
}

const FIELDS: [&str; 5] = ["leadDays", "timeZone", "hour", "channels", "webhookUrl"];

impl NotificationSettings {
    /// The settings a PUT document describes (absent fields take their defaults), validated:
    /// 1–5 lead times of 1–365 days, a known IANA zone, an hour 0–23, known channels, and an
    /// `https` webhook URL exactly when the `webhook` channel is on.
    pub fn from_json(doc: &Value) -> Result<Self, SettingsError> {
        let obj = doc.as_object().ok_or_else(|| SettingsError::Malformed("The body must be a JSON object.".into()))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(SettingsError::Malformed(format!("`{unknown}` is not a notification setting.")));
        }
        let mut s = Self::default();
        let mut errors = Vec::new();
        if let Some(v) = obj.get("leadDays") {
            let given: Option<Vec<i64>> = v.as_array().and_then(|a| a.iter().map(Value::as_i64).collect());
            match given.and_then(|d| lead_days(&d, 1)) {
                Some(d) => s.lead_days = d,
                None => errors.push(FieldError::new(
                    "leadDays",
                    "lead_days_invalid",
                    "give 1 to 5 lead times, each 1 to 365 days",
                )),
            }
        }
        if let Some(v) = obj.get("timeZone") {
            match v.as_str().filter(|z| z.parse::<Tz>().is_ok()) {
                Some(z) => s.time_zone = z.to_owned(),
                None => errors.push(FieldError::new(
                    "timeZone",
                    "time_zone_invalid",
                    "an IANA time zone name, for example Europe/Berlin",
                )),
            }
        }
        if let Some(v) = obj.get("hour") {
            match v.as_u64().filter(|h| *h <= 23) {
                Some(h) => s.hour = h as u8,
                None => errors.push(FieldError::new("hour", "hour_invalid", "the local hour of delivery, 0 to 23")),
            }
        }
        if let Some(v) = obj.get("channels") {
            let channels: Option<Vec<Channel>> =
                v.as_array().and_then(|a| a.iter().map(|c| c.as_str().and_then(Channel::parse)).collect());
            match channels {
                Some(mut c) => {
                    c.push(Channel::Feed); // always on
                    c.sort_unstable();
                    c.dedup();
                    s.channels = c;
                }
                None => {
                    errors.push(FieldError::new("channels", "channel_invalid", "channels are push, feed and webhook"))
                }
            }
        }
        match obj.get("webhookUrl") {
            None | Some(Value::Null) => {}
            Some(Value::String(url)) if is_https_url(url) => s.webhook_url = Some(url.clone()),
            Some(_) => errors.push(FieldError::new(
                "webhookUrl",
                "webhook_url_invalid",
                "an https:// URL of at most 2,000 characters",
            )),
        }
        if errors.is_empty() && s.channels.contains(&Channel::Webhook) && s.webhook_url.is_none() {
            errors.push(FieldError::new("webhookUrl", "webhook_url_invalid", "the webhook channel needs `webhookUrl`"));
        }
        if errors.is_empty() { Ok(s) } else { Err(SettingsError::Invalid(errors)) }
    }

    pub fn zone(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }
}

/// An absolute `https` URL with a host, no credentials, at most 2,000 characters. (Where it
/// resolves is checked when a webhook is sent: never loopback, private or link-local.)
fn is_https_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    url.len() <= 2000 && !authority.is_empty() && !authority.contains('@') && !url.chars().any(char::is_whitespace)
}

/// When the reminder `lead` days before `expires_on` is due: the user's `hour` that day in
/// `zone`. A local time that does not exist (a DST gap) moves to the first instant after the
/// gap; one that exists twice (a DST fold) is the earlier.
pub fn due_at(expires_on: NaiveDate, lead: u32, zone: Tz, hour: u8) -> DateTime<Utc> {
    let day = expires_on - Duration::days(i64::from(lead));
    let local = day.and_time(NaiveTime::from_hms_opt(u32::from(hour.min(23)), 0, 0).expect("a valid hour"));
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first local minute after it.
            let mut probe = local;
            loop {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) = zone.from_local_datetime(&probe) {
                    return t.with_timezone(&Utc);
                }
            }
        }
    }
}

/// The one id of the reminder for (`coverage`, `expires_on`, `lead`).
pub fn reminder_id(coverage: Uuid, expires_on: NaiveDate, lead: u32) -> String {
    let digest = Sha256::digest(format!("reminder\u{1f}{coverage}\u{1f}{expires_on}\u{1f}{lead}"));
    format!("rem-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn due_at_the_users_hour_in_their_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(due_at(d(2027, 1, 31), 7, berlin, 9), utc("2027-01-24T08:00:00Z"), "winter, UTC+1");
        assert_eq!(due_at(d(2027, 7, 31), 30, berlin, 9), utc("2027-07-01T07:00:00Z"), "summer, UTC+2");
        // Crossing midnight: Auckland's 9:00 is the previous day in UTC.
        let auckland: Tz = "Pacific/Auckland".parse().unwrap();
        assert_eq!(due_at(d(2027, 3, 10), 1, auckland, 9), utc("2027-03-08T20:00:00Z"));
        // A leap day as the reminder day.
        assert_eq!(due_at(d(2028, 3, 7), 7, Tz::UTC, 0), utc("2028-02-29T00:00:00Z"));
    }

    #[test]
    fn dst_gaps_move_forward_and_folds_take_the_earlier() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2027-03-28 02:00 does not exist in Berlin: 03:00 CEST = 01:00 UTC.
        assert_eq!(due_at(d(2027, 3, 29), 1, berlin, 2), utc("2027-03-28T01:00:00Z"));
        // 2027-10-31 02:00 exists twice: the first is 02:00 CEST = 00:00 UTC.
        assert_eq!(due_at(d(2027, 11, 1), 1, berlin, 2), utc("2027-10-31T00:00:00Z"));
    }

    #[test]
    fn reminder_ids_are_stable_and_differ_by_date_and_lead() {
        let c = Uuid::now_v7();
        assert_eq!(reminder_id(c, d(2027, 1, 1), 7), reminder_id(c, d(2027, 1, 1), 7));
        assert_ne!(reminder_id(c, d(2027, 1, 1), 7), reminder_id(c, d(2027, 1, 2), 7), "a moved expiry");
        assert_ne!(reminder_id(c, d(2027, 1, 1), 7), reminder_id(c, d(2027, 1, 1), 30));
        assert_ne!(reminder_id(c, d(2027, 1, 1), 7), reminder_id(Uuid::now_v7(), d(2027, 1, 1), 7));
    }

    #[test]
    fn settings_are_validated_field_by_field() {
        let s = NotificationSettings::from_json(
            &json!({"leadDays": [7, 30, 7], "timeZone": "Europe/Berlin", "hour": 18, "channels": ["push"]}),
        )
        .unwrap();
        assert_eq!((s.lead_days, s.hour, s.channels), (vec![30, 7], 18, vec![Channel::Push, Channel::Feed]));
        assert_eq!(NotificationSettings::from_json(&json!({})).unwrap(), NotificationSettings::default());
        let codes = |doc: Value| match NotificationSettings::from_json(&doc) {
            Err(SettingsError::Invalid(e)) => e.iter().map(|e| e.code).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            codes(json!({"leadDays": [0], "timeZone": "Mars/Olympus", "hour": 24, "channels": ["sms"]})),
            ["lead_days_invalid", "time_zone_invalid", "hour_invalid", "channel_invalid"]
        );
        assert_eq!(codes(json!({"leadDays": [1, 2, 3, 4, 5, 6]})), ["lead_days_invalid"]);
        assert_eq!(codes(json!({"channels": ["webhook"]})), ["webhook_url_invalid"]);
        assert_eq!(codes(json!({"webhookUrl": "http://example.com/hook"})), ["webhook_url_invalid"]);
        assert_eq!(codes(json!({"webhookUrl": "https://user:pw@example.com/"})), ["webhook_url_invalid"]);
        assert!(
            NotificationSettings::from_json(
                &json!({"channels": ["webhook"], "webhookUrl": "https://example.com/hook"})
            )
            .is_ok()
        );
        assert!(matches!(NotificationSettings::from_json(&json!({"sound": true})), Err(SettingsError::Malformed(_))));
    }
}
