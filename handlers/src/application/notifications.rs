//! A user's notification settings: lead times, time zone, hour of delivery, channels.

use super::{Error, Services};
use crate::domain::UserId;
use crate::domain::reminders::{NotificationSettings, SettingsError};

/// The user record holding them.
const RECORD: &str = "notification-settings";

/// The user's settings, or the defaults when they never set any.
pub async fn get(services: &Services, user: &UserId) -> Result<NotificationSettings, Error> {
    match services.products.user_record(user, RECORD).await? {
        None => Ok(NotificationSettings::default()),
        Some(doc) => serde_json::from_value(doc).map_err(|e| {
            crate::ports::Unavailable::new("product store", format!("stored notification settings are unreadable: {e}"))
                .into()
        }),
    }
}

/// Replaces the user's settings with the ones `doc` describes (absent fields: defaults).
pub async fn put(services: &Services, user: &UserId, doc: &serde_json::Value) -> Result<NotificationSettings, Error> {
    let settings = NotificationSettings::from_json(doc).map_err(|e| match e {
        SettingsError::Malformed(detail) => Error::PatchInvalid(detail),
        SettingsError::Invalid(errors) => Error::Invalid(errors),
    })?;
    let stored = serde_json::to_value(&settings).expect("settings serialise");
    services.products.put_user_record(user, RECORD, &stored).await?;
    Ok(settings)
}
