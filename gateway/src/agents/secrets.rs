//! The secrets an agent's environment gets at each start: looked up by name in the store.

use hostctl::api::Secrets;

use crate::store::{Store, StoreError};

/// Why the secrets an agent needs cannot be handed to it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret '{0}' is not set")]
    Unset(String),
    #[error("secret '{0}' is not text")]
    NotText(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The values of the secrets `names`, each of which must be set.
pub async fn values(store: &Store, names: &[String]) -> Result<Secrets, SecretError> {
    let mut secrets = Secrets::default();
    for name in names {
        let value = store
            .secret_value(name)
            .await?
            .ok_or_else(|| SecretError::Unset(name.clone()))?;
        let value = String::from_utf8(value).map_err(|_| SecretError::NotText(name.clone()))?;
        secrets.0.insert(name.clone(), value);
    }
    Ok(secrets)
}
