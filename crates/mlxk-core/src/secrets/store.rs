//! The keyring behind [`SecretStore`]: keyring-core with one store crate per OS.
//!
//! The platform store is opened once per process and kept; we hold it ourselves instead of
//! installing it as keyring-core's process-wide default, so a test's mock store and the real
//! one never replace each other. Keyring calls block (on Linux a D-Bus round trip): in async
//! code call them from `spawn_blocking`.

use std::sync::{Arc, OnceLock};

use keyring_core::api::CredentialStore;
use keyring_core::{Entry, Error as KeyringError};

use super::{Secret, SecretError, SecretKind};

/// The keyring service every MLX Knife secret is stored under.
pub const KEYRING_SERVICE: &str = "mlx-knife";

/// The longest secret we store (a Hugging Face token is 37 characters).
const MAX_SECRET_LEN: usize = 4096;

/// Get, set and delete MLX Knife's secrets in a keyring.
#[derive(Clone)]
pub struct SecretStore {
    store: Arc<CredentialStore>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("vendor", &self.store.vendor())
            .finish()
    }
}

static PLATFORM_STORE: OnceLock<Arc<CredentialStore>> = OnceLock::new();

impl SecretStore {
    /// The OS keyring: the login Keychain on macOS, the Secret Service (over D-Bus) on Linux
    /// and other Unix systems. Opened on first use and then reused; when it cannot be reached
    /// this is [`SecretError::Unavailable`], and a later call tries again.
    pub fn platform() -> Result<SecretStore, SecretError> {
        if let Some(store) = PLATFORM_STORE.get() {
            return Ok(SecretStore::with_store(Arc::clone(store)));
        }
        let store = open_platform_store()?;
        Ok(SecretStore::with_store(Arc::clone(
            PLATFORM_STORE.get_or_init(|| store),
        )))
    }

    /// Any keyring-core store, e.g. `keyring_core::mock::Store` in tests.
    pub fn with_store(store: Arc<CredentialStore>) -> SecretStore {
        SecretStore { store }
    }

    /// The stored secret, or `None` when there is none.
    pub fn get(&self, kind: SecretKind) -> Result<Option<Secret>, SecretError> {
        match self.entry(kind)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(describe(kind, e)),
        }
    }

    /// Stores `secret`, replacing what was there.
    pub fn set(&self, kind: SecretKind, secret: &Secret) -> Result<(), SecretError> {
        check_storable(secret)?;
        self.entry(kind)?
            .set_password(secret.expose())
            .map_err(|e| describe(kind, e))
    }

    /// Deletes the secret; `false` when there was none.
    pub fn delete(&self, kind: SecretKind) -> Result<bool, SecretError> {
        match self.entry(kind)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(describe(kind, e)),
        }
    }

    fn entry(&self, kind: SecretKind) -> Result<Entry, SecretError> {
        self.store
            .build(KEYRING_SERVICE, kind.keyring_user(), None)
            .map_err(|e| describe(kind, e))
    }
}

/// Secrets travel in HTTP headers: non-empty visible ASCII without spaces.
fn check_storable(secret: &Secret) -> Result<(), SecretError> {
    let value = secret.expose();
    if value.is_empty() {
        return Err(SecretError::Invalid("it is empty".into()));
    }
    if value.len() > MAX_SECRET_LEN {
        return Err(SecretError::Invalid(format!(
            "it is longer than {MAX_SECRET_LEN} characters"
        )));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::Invalid(
            "it contains spaces, control or non-ASCII characters".into(),
        ));
    }
    Ok(())
}

/// Our words for keyring-core's errors. Only the platform's own message is passed on (a D-Bus
/// or Keychain error, which never holds the secret); data-carrying variants are not printed.
fn describe(kind: SecretKind, error: KeyringError) -> SecretError {
    let what = kind.describe();
    match error {
        KeyringError::NoStorageAccess(e) => SecretError::Unavailable(format!(
            "access to {what} was refused (is the keyring locked?): {e}"
        )),
        KeyringError::NoDefaultStore => SecretError::Unavailable("no keyring is set up".into()),
        KeyringError::PlatformFailure(e) => SecretError::Failed(format!("{what}: {e}")),
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => SecretError::Failed(
            format!("the keyring entry of {what} is not valid text; log in again"),
        ),
        KeyringError::Ambiguous(entries) => SecretError::Failed(format!(
            "{} keyring entries match {what} (service {KEYRING_SERVICE}, user {}); delete them and store it again",
            entries.len(),
            kind.keyring_user()
        )),
        KeyringError::TooLong(field, limit) => SecretError::Invalid(format!(
            "the keyring allows at most {limit} characters in '{field}'"
        )),
        KeyringError::Invalid(field, why) => SecretError::Invalid(format!("'{field}': {why}")),
        other => SecretError::Failed(format!("{what}: {other}")),
    }
}

#[cfg(target_os = "macos")]
fn open_platform_store() -> Result<Arc<CredentialStore>, SecretError> {
    let store = apple_native_keyring_store::keychain::Store::new()
        .map_err(|e| SecretError::Unavailable(format!("cannot open the Keychain: {e}")))?;
    Ok(store)
}

#[cfg(all(unix, not(target_os = "macos")))]
fn open_platform_store() -> Result<Arc<CredentialStore>, SecretError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| {
        SecretError::Unavailable(format!(
            "cannot reach the Secret Service over D-Bus (is a keyring such as gnome-keyring running in this session?): {e}"
        ))
    })?;
    Ok(store)
}

#[cfg(not(unix))]
fn open_platform_store() -> Result<Arc<CredentialStore>, SecretError> {
    Err(SecretError::Unavailable(
        "MLX Knife has no keyring support on this platform".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> SecretStore {
        SecretStore::with_store(keyring_core::mock::Store::new().unwrap())
    }

    #[test]
    fn set_get_delete_round_trip() {
        let store = mock();
        let token = Secret::new("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH");
        assert_eq!(store.get(SecretKind::HubToken).unwrap(), None);
        store.set(SecretKind::HubToken, &token).unwrap();
        assert_eq!(store.get(SecretKind::HubToken).unwrap(), Some(token));
        assert_eq!(store.get(SecretKind::ServerApiKey).unwrap(), None);

        let replacement = Secret::new("hf_second");
        store.set(SecretKind::HubToken, &replacement).unwrap();
        assert_eq!(store.get(SecretKind::HubToken).unwrap(), Some(replacement));

        assert!(store.delete(SecretKind::HubToken).unwrap());
        assert_eq!(store.get(SecretKind::HubToken).unwrap(), None);
        assert!(!store.delete(SecretKind::HubToken).unwrap());
    }

    #[test]
    fn kinds_do_not_share_an_entry() {
        let store = mock();
        store
            .set(SecretKind::ServerApiKey, &Secret::new("local-key"))
            .unwrap();
        store
            .set(SecretKind::HubToken, &Secret::new("hf_token"))
            .unwrap();
        assert!(store.delete(SecretKind::HubToken).unwrap());
        assert_eq!(
            store.get(SecretKind::ServerApiKey).unwrap(),
            Some(Secret::new("local-key"))
        );
    }

    #[test]
    fn refuses_values_a_header_cannot_carry() {
        let store = mock();
        for bad in ["", "hf_a b", "hf_a\n", "hf_ä"] {
            let err = store
                .set(SecretKind::HubToken, &Secret::new(bad))
                .unwrap_err();
            assert_eq!(err.kind(), "invalid_secret", "{bad:?}");
        }
        assert_eq!(store.get(SecretKind::HubToken).unwrap(), None);
    }

    #[test]
    fn keyring_failures_are_typed_and_never_hold_the_secret() {
        let store = mock();
        let entry = store.entry(SecretKind::HubToken).unwrap();
        let cred = entry
            .as_any()
            .downcast_ref::<keyring_core::mock::Cred>()
            .unwrap();
        cred.set_error(KeyringError::NoStorageAccess("locked".into()));
        let err = store.get(SecretKind::HubToken).unwrap_err();
        assert_eq!(err.kind(), "keyring_unavailable");

        cred.set_error(KeyringError::BadEncoding(b"hf_secret\xff".to_vec()));
        let err = store.get(SecretKind::HubToken).unwrap_err();
        assert_eq!(err.kind(), "keyring_error");
        assert!(!format!("{err} {err:?}").contains("hf_secret"), "{err:?}");
    }
}
