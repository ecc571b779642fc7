//! Azure Notification Hubs over its REST API (api-version 2015-01).
//!
//! - `PUT {hub}/installations/{id}`: an installation with the platform (`fcmv1`, `apns`), the
//!   device's push channel, the user's tag and one template, `reminder`, whose placeholders
//!   (`$(title)`, `$(body)`, `$(productId)`, `$(reminderId)`) a send fills in.
//! - `DELETE {hub}/installations/{id}`.
//! - `POST {hub}/messages/` with `ServiceBusNotification-Format: template` and
//!   `ServiceBusNotification-Tags: $InstallationId:{id}`: one send per device, so each device's
//!   delivery is retried (or dropped when the device is gone) on its own without sending twice
//!   to the others.
//!
//! Authorization is a SAS token from the hub's connection string: Notification Hubs' runtime
//! operations (installations, sends) accept only SAS, not Microsoft Entra ID, so the app cannot
//! use its managed identity here; the connection string (a `Listen,Send` rule, never `Manage`)
//! comes from Key Vault through an app-setting reference.

use async_trait::async_trait;
use serde_json::json;

use super::{retry_after, unreachable};
use crate::adapters::azure::servicebus::SasKey;
use crate::config::Secret;
use crate::ports::{Installation, Notifier, PushRegistry, Reminder, SendFailure};

pub const API_VERSION: &str = "2015-01";

/// The template each installation registers, per platform.
fn template(platform: &str) -> serde_json::Value {
    match platform {
        "apns" => json!({
            "aps": { "alert": { "title": "$(title)", "body": "$(body)" }, "sound": "default" },
            "productId": "$(productId)",
            "reminderId": "$(reminderId)"
        }),
        _ => json!({
            "message": {
                "notification": { "title": "$(title)", "body": "$(body)" },
                "data": { "productId": "$(productId)", "reminderId": "$(reminderId)" }
            }
        }),
    }
}

pub struct NotificationHub {
    /// `https://{namespace}.servicebus.windows.net/{hub}` (or a loopback URL in tests).
    hub_url: String,
    key: SasKey,
    client: reqwest::Client,
}

impl NotificationHub {
    /// From the hub's connection string (`Endpoint=sb://{namespace}.servicebus.windows.net/;
    /// SharedAccessKeyName=…;SharedAccessKey=…`) and its name. An `http://` or `https://`
    /// endpoint is taken as it is (a loopback server in tests).
    pub fn new(connection_string: &Secret, hub: &str) -> Result<Self, String> {
        let key = SasKey::parse(connection_string)?;
        let endpoint = key.endpoint.trim_end_matches('/');
        let base = match endpoint.strip_prefix("sb://") {
            Some(host) => format!("https://{host}"),
            None if endpoint.starts_with("https://") || endpoint.starts_with("http://") => endpoint.to_owned(),
            None => return Err(format!("the hub endpoint {endpoint} is not sb://, https:// or http://")),
        };
        if hub.is_empty() || !hub.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err("the notification hub name is missing or not a hub name".into());
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { hub_url: format!("{base}/{hub}"), key, client })
    }

    fn authorization(&self) -> String {
        // The token is scoped to the hub; an hour is the documented usual lifetime.
        self.key.token(&self.hub_url.to_lowercase(), chrono::Utc::now().timestamp() + 3600)
    }

    fn installation_url(&self, id: &str) -> String {
        format!("{}/installations/{id}?api-version={API_VERSION}", self.hub_url)
    }
}

/// What a hub answer means for the caller.
fn outcome(what: &str, status: reqwest::StatusCode, resp: &reqwest::Response) -> Result<(), SendFailure> {
    match status.as_u16() {
        200..=299 => Ok(()),
        404 | 410 => Err(SendFailure::Gone(format!("{what}: the hub answered {status}: the installation is gone"))),
        // 403 is the hub's "quota exceeded": like throttling, it passes.
        429 | 403 | 408 | 500..=599 => Err(SendFailure::Transient {
            reason: format!("{what}: the hub answered {status}"),
            retry_after: retry_after(resp),
        }),
        _ => Err(SendFailure::Permanent(format!("{what}: the hub refused the request ({status})"))),
    }
}

#[async_trait]
impl Notifier for NotificationHub {
    async fn send(&self, to: &str, reminder: &Reminder, _secret: Option<&str>) -> Result<(), SendFailure> {
        let body = json!({
            "title": reminder.title,
            "body": reminder.body,
            "productId": reminder.product_id.to_string(),
            "reminderId": reminder.id,
        });
        let resp = self
            .client
            .post(format!("{}/messages/?api-version={API_VERSION}", self.hub_url))
            .header("Authorization", self.authorization())
            .header("Content-Type", "application/json;charset=utf-8")
            .header("ServiceBusNotification-Format", "template")
            .header("ServiceBusNotification-Tags", format!("$InstallationId:{to}"))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| unreachable("Notification Hubs", e))?;
        outcome("send", resp.status(), &resp)
    }
}

#[async_trait]
impl PushRegistry for NotificationHub {
    async fn install(&self, installation: &Installation) -> Result<(), SendFailure> {
        let body = json!({
            "installationId": installation.id,
            "platform": installation.platform,
            "pushChannel": installation.push_channel,
            "tags": [crate::application::reminders::user_tag(&installation.user_id)],
            "templates": {
                "reminder": { "body": template(&installation.platform).to_string() }
            }
        });
        let resp = self
            .client
            .put(self.installation_url(&installation.id))
            .header("Authorization", self.authorization())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| unreachable("Notification Hubs", e))?;
        // A 404 on an upsert is not "gone": the hub itself is missing.
        match resp.status().as_u16() {
            404 | 410 => Err(SendFailure::Permanent(format!("install: the hub answered {}", resp.status()))),
            _ => outcome("install", resp.status(), &resp),
        }
    }

    async fn uninstall(&self, id: &str) -> Result<(), SendFailure> {
        let resp = self
            .client
            .delete(self.installation_url(id))
            .header("Authorization", self.authorization())
            .send()
            .await
            .map_err(|e| unreachable("Notification Hubs", e))?;
        outcome("uninstall", resp.status(), &resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_url_comes_from_the_connection_string() {
        let cs = Secret::new("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=k");
        let hub = NotificationHub::new(&cs, "warranty").unwrap();
        assert_eq!(hub.hub_url, "https://ns.servicebus.windows.net/warranty");
        assert!(
            hub.authorization()
                .starts_with("SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Fwarranty&sig=")
        );
        assert!(NotificationHub::new(&cs, "").is_err());
        assert!(NotificationHub::new(&cs, "a/b").is_err());
    }

    #[test]
    fn templates_carry_every_placeholder() {
        for p in ["fcmv1", "apns"] {
            let t = template(p).to_string();
            for v in ["$(title)", "$(body)", "$(productId)", "$(reminderId)"] {
                assert!(t.contains(v), "{p}: {v}");
            }
        }
    }
}
