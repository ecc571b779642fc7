//! The app's identity in Azure: one `TokenCredential` every Azure adapter takes.

use std::sync::{Arc, OnceLock};

use azure_core::credentials::TokenCredential;

use crate::config::IdentitySettings;

/// The managed identity, created on first use (most configurations never need one) and then
/// shared: the user-assigned one named by `AZURE_CLIENT_ID`, else the system-assigned one.
pub struct Identity {
    client_id: Option<String>,
    credential: OnceLock<Result<Arc<dyn TokenCredential>, String>>,
}

impl Identity {
    pub fn new(settings: &IdentitySettings) -> Self {
        Self { client_id: settings.managed_identity_client_id.clone(), credential: OnceLock::new() }
    }

    pub fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        self.credential.get_or_init(|| managed_identity(self.client_id.as_deref())).clone()
    }
}

/// A managed identity credential: user-assigned when `client_id` is given.
pub fn managed_identity(client_id: Option<&str>) -> Result<Arc<dyn TokenCredential>, String> {
    use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
    let options = client_id.map(|id| ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId(id.to_owned())),
        ..Default::default()
    });
    let credential: Arc<dyn TokenCredential> = ManagedIdentityCredential::new(options).map_err(|e| e.to_string())?;
    Ok(credential)
}
