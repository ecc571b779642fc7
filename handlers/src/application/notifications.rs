//! A user's notification settings: lead times, time zone, hour of delivery, channels.

use serde::Serialize;

use super::{Error, Services};
use crate::domain::UserId;
use crate::domain::reminders::{Channel, NotificationSettings, SettingsError};

/// The user record holding them.
pub const RECORD: &str = "notification-settings";
/// The user record holding the webhook signing secret.
const WEBHOOK_SECRET: &str = "webhook-secret";

/// The settings as their owner sees them: with the webhook's signing secret while the webhook
/// channel is on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    #[serde(flatten)]
    pub settings: NotificationSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// The user's settings, or the defaults when they never set any.
pub async fn get(services: &Services, user: &UserId) -> Result<NotificationSettings, crate::ports::Unavailable> {
    super::record_or_default(RECORD, services.products.user_record(user, RECORD).await?)
}

/// The user's settings with the webhook secret, if the webhook is on.
pub async fn view(services: &Services, user: &UserId) -> Result<SettingsView, Error> {
    let settings = get(services, user).await?;
    let webhook_secret =
        if settings.channels.contains(&Channel::Webhook) { webhook_secret(services, user, true).await? } else { None };
    Ok(SettingsView { settings, webhook_secret })
}

/// Replaces the user's settings with the ones `doc` describes (absent fields: defaults), and
/// marks the user's products so the next sweep reschedules their reminders.
pub async fn put(services: &Services, user: &UserId, doc: &serde_json::Value) -> Result<SettingsView, Error> {
    let settings = NotificationSettings::from_json(doc).map_err(|e| match e {
        SettingsError::Malformed(detail) => Error::PatchInvalid(detail),
        SettingsError::Invalid(errors) => Error::Invalid(errors),
    })?;
    let stored = serde_json::to_value(&settings).expect("settings serialise");
    services.products.put_user_record(user, RECORD, &stored).await?;
    services.reminders.store.reschedule_user(user).await?;
    view(services, user).await
}

/// The user's webhook signing secret (`whsec_` + base64 of 32 random bytes, the Standard
/// Webhooks form); made on first use when `create`.
pub async fn webhook_secret(
    services: &Services,
    user: &UserId,
    create: bool,
) -> Result<Option<String>, crate::ports::Unavailable> {
    if let Some(doc) = services.products.user_record(user, WEBHOOK_SECRET).await?
        && let Some(s) = doc.get("secret").and_then(|s| s.as_str())
    {
        return Ok(Some(s.to_owned()));
    }
    if !create {
        return Ok(None);
    }
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| crate::ports::Unavailable::new("random source", e))?;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    services.products.put_user_record(user, WEBHOOK_SECRET, &serde_json::json!({ "secret": secret })).await?;
    Ok(Some(secret))
}
