//! Reminders POSTed to a user's own HTTPS endpoint, signed the Standard Webhooks way:
//! `webhook-id` (the reminder id, for deduplication), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,{base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")}`, where the
//! secret is the bytes of the user's `whsec_…` value.
//!
//! Server-side request forgery: the host is resolved here, every address it resolves to must be
//! a public unicast one (never loopback, private, link-local, shared, multicast or reserved),
//! and the connection goes to exactly those addresses — a DNS answer that changes between the
//! check and the connection cannot redirect it. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::json;

use super::{retry_after, unreachable};
use crate::ports::{Notifier, Reminder, SendFailure};

/// The `webhook-signature` value for `body` sent as message `id` at `timestamp`.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the webhook secret is not base64".to_owned())?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// Whether a webhook may be sent to `ip`: public unicast only.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: reaches IPv4 behind it
                || (s[0] == 0x2002) // 6to4: embeds an IPv4 address
                || (s[0..6] == [0, 0, 0, 0, 0, 0])) // IPv4-compatible
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// Sends reminders to webhooks.
pub struct WebhookNotifier {
    timeout: std::time::Duration,
}

impl Default for WebhookNotifier {
    fn default() -> Self {
        Self { timeout: std::time::Duration::from_secs(10) }
    }
}

impl WebhookNotifier {
    /// The addresses `url` may be sent to, or why it may not be.
    async fn resolve(url: &reqwest::Url) -> Result<(String, Vec<SocketAddr>), SendFailure> {
        if url.scheme() != "https" {
            return Err(SendFailure::Permanent("ssrf_refused: the webhook URL is not https".into()));
        }
        let host = url.host_str().ok_or_else(|| SendFailure::Permanent("the webhook URL has no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| SendFailure::Transient {
                    reason: format!("the webhook host did not resolve: {e}"),
                    retry_after: None,
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(SendFailure::Transient { reason: "the webhook host has no address".into(), retry_after: None });
        }
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(SendFailure::Permanent(format!(
                "ssrf_refused: the webhook host resolves to {}, which is not a public address",
                bad.ip()
            )));
        }
        Ok((bare.to_owned(), addrs))
    }
}

/// The JSON a webhook receives.
pub fn payload(reminder: &Reminder) -> serde_json::Value {
    json!({
        "type": "warranty.reminder",
        "id": reminder.id,
        "productId": reminder.product_id,
        "coverageId": reminder.coverage_id,
        "title": reminder.title,
        "body": reminder.body,
        "expiresOn": reminder.expires_on,
        "leadDays": reminder.lead_days,
        "dueAt": reminder.due_at,
    })
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, to: &str, reminder: &Reminder, secret: Option<&str>) -> Result<(), SendFailure> {
        let url = reqwest::Url::parse(to).map_err(|_| SendFailure::Permanent("the webhook URL is not a URL".into()))?;
        let (host, addrs) = Self::resolve(&url).await?;
        let secret = secret.ok_or_else(|| SendFailure::Permanent("no webhook secret".into()))?;
        let body = payload(reminder).to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let sig = signature(secret, &reminder.id, timestamp, &body).map_err(SendFailure::Permanent)?;
        let client = reqwest::Client::builder()
            .resolve_to_addrs(&host, &addrs)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .build()
            .map_err(|e| SendFailure::Transient { reason: e.to_string(), retry_after: None })?;
        let resp = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("webhook-id", &reminder.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable("the webhook", e))?;
        let status = resp.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            // The receiver says it wants no more: stop, do not retry.
            410 => Err(SendFailure::Gone(format!("the webhook answered {status}"))),
            408 | 425 | 429 | 500..=599 => Err(SendFailure::Transient {
                reason: format!("the webhook answered {status}"),
                retry_after: retry_after(&resp),
            }),
            _ => Err(SendFailure::Permanent(format!("the webhook answered {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The example in the Standard Webhooks specification.
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn only_public_unicast_addresses_are_allowed() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }
}
