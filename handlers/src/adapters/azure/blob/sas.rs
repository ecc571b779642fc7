//! Account SAS signing, for local use against Azurite (or an account key in development).
//!
//! `azure_storage_blob` authenticates with an Entra token or with a SAS already in the URL; it
//! has no shared-key policy. Production uses a managed identity; this module exists so the
//! emulator can be reached with its well-known development key. String-to-sign per the
//! "Create an account SAS" REST reference (service version 2020-12-06 and later).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

use crate::adapters::azure::connection_string::ConnectionString;
use crate::config::Secret;

/// A storage account from a connection string (`AccountName`, `AccountKey`, `BlobEndpoint`, …).
/// The key is a [`Secret`]: `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct StorageAccount {
    pub account_name: String,
    account_key: Secret,
    pub blob_endpoint: String,
}

/// Azurite's documented development account.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl StorageAccount {
    /// Parses `Key=Value;…`. `UseDevelopmentStorage=true` means Azurite on 127.0.0.1:10000.
    pub fn parse(s: &Secret) -> Result<Self, String> {
        let cs = ConnectionString::parse(s);
        if cs.get("UseDevelopmentStorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self {
                account_name: DEV_ACCOUNT.into(),
                account_key: Secret::new(DEV_KEY),
                blob_endpoint: format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"),
            });
        }
        let account_name = cs.require("AccountName")?.to_owned();
        let account_key = cs.secret("AccountKey")?;
        let blob_endpoint = cs.get("BlobEndpoint").map(str::to_owned).unwrap_or_else(|| {
            let protocol = cs.get("DefaultEndpointsProtocol").unwrap_or("https");
            let suffix = cs.get("EndpointSuffix").unwrap_or("core.windows.net");
            format!("{protocol}://{account_name}.blob.{suffix}")
        });
        Ok(Self { account_name, account_key, blob_endpoint: blob_endpoint.trim_end_matches('/').to_owned() })
    }

    /// The container URL with an account SAS (blob service; service, container and object
    /// resources; read, add, create, write, delete, list) valid until `expiry`.
    pub fn container_sas_url(&self, container: &str, expiry: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
        let version = "2022-11-02";
        let (permissions, services, resource_types, protocol) = ("rwdlac", "b", "sco", "https,http");
        let se = expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let string_to_sign = format!(
            "{}\n{permissions}\n{services}\n{resource_types}\n\n{se}\n\n{protocol}\n{version}\n\n",
            self.account_name
        );
        let key = STANDARD.decode(self.account_key.expose()).map_err(|_| "the account key is not base64".to_owned())?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(string_to_sign.as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let query = serde_urlencoded::to_string([
            ("sv", version),
            ("ss", services),
            ("srt", resource_types),
            ("sp", permissions),
            ("se", se.as_str()),
            ("spr", protocol),
            ("sig", sig.as_str()),
        ])
        .map_err(|e| e.to_string())?;
        Ok(format!("{}/{container}?{query}", self.blob_endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse() {
        let dev = StorageAccount::parse(&Secret::new("UseDevelopmentStorage=true")).unwrap();
        assert_eq!(dev.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let c = StorageAccount::parse(&Secret::new(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        ))
        .unwrap();
        assert_eq!(c.blob_endpoint, "https://acct.blob.core.windows.net");
        assert!(!format!("{c:?}").contains("a2V5"), "the account key never prints");
        assert!(StorageAccount::parse(&Secret::new("AccountName=x")).is_err());
    }

    #[test]
    fn sas_urls_carry_the_signed_fields() {
        let c = StorageAccount::parse(&Secret::new("UseDevelopmentStorage=true")).unwrap();
        let url = c.container_sas_url("invoices", chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap()).unwrap();
        assert!(url.starts_with("http://127.0.0.1:10000/devstoreaccount1/invoices?sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-03-17T17%3A46%3A40Z"), "{url}");
        assert!(url.contains("&sig="));
    }
}
