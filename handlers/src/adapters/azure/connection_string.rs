//! `Key=Value;…` connection strings (Storage, Cosmos DB, Service Bus), for local use only: in
//! Azure the app authenticates with its managed identity and holds no key.

use crate::config::Secret;

/// The parsed pairs. Keys compare case-insensitively; values that hold key material come out
/// as [`Secret`]s, and `Debug` never shows a value.
#[derive(Clone)]
pub struct ConnectionString {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, _)| k)).finish()
    }
}

impl ConnectionString {
    pub fn parse(s: &Secret) -> Self {
        let pairs = s
            .expose()
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
            .collect();
        Self { pairs }
    }

    /// A non-secret part (an endpoint, an account or key name).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("the connection string has no {key}"))
    }

    /// A part that is key material.
    pub fn secret(&self, key: &str) -> Result<Secret, String> {
        self.require(key).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_found_case_insensitively_and_never_printed() {
        let cs = ConnectionString::parse(&Secret::new(
            "Endpoint=sb://ns.servicebus.windows.net/; SharedAccessKeyName=send;sharedaccesskey=c2VjcmV0=;",
        ));
        assert_eq!(cs.get("endpoint"), Some("sb://ns.servicebus.windows.net/"));
        assert_eq!(cs.secret("SharedAccessKey").unwrap().expose(), "c2VjcmV0=", "a `=` inside a value is kept");
        assert!(cs.require("AccountKey").unwrap_err().contains("AccountKey"));
        assert!(!format!("{cs:?}").contains("c2VjcmV0"));
    }
}
