//! [`Store`]: the handle every part of the gateway holds. It is a [`Backend`] (through
//! `Deref`, so `store.user(id).await` calls the backend), plus the conveniences that are
//! pure combinations of the backend's methods.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use super::backend::Backend;
use super::sealed::SecretKey;
use super::sled::SledStore;
use super::{Result, StoreError, User};

/// The store, cheap to clone: one backend shared by every clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The same backend, when it is sled: for what only sled has (its files, the tests
    /// that change them offline).
    sled: Option<SledStore>,
}

impl Store {
    /// A store over any backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend, sled: None }
    }

    /// Opens (or creates) the embedded sled database under `data_dir/db`, with the secret
    /// key from `PORTCULLIS_SECRET_KEY` or `data_dir/keys/secret.key` (made on first
    /// start). A database holding TOTP secrets in clear is migrated first.
    pub fn open(data_dir: &Path) -> Result<Self> {
        SledStore::open(data_dir).map(Self::from)
    }

    /// Like [`Store::open`], with the secret key given.
    pub fn open_with_key(data_dir: &Path, key: SecretKey) -> Result<Self> {
        SledStore::open_with_key(data_dir, key).map(Self::from)
    }

    /// A throwaway in-memory sled database, for tests.
    pub fn temporary() -> Result<Self> {
        SledStore::temporary().map(Self::from)
    }

    /// The sled backend, when this store is one.
    pub fn sled(&self) -> Option<&SledStore> {
        self.sled.as_ref()
    }

    /// The backend itself, to share with another handle.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Applies `change` to a user and stores the result, atomically: a change made by
    /// someone else in between is never lost (the change is applied again on top of it).
    pub async fn update_user(&self, id: &str, mut change: impl FnMut(&mut User) + Send) -> Result<User> {
        self.try_update_user(id, |u| {
            change(u);
            true
        })
        .await?
        .ok_or(StoreError::NoSuchUser)
    }

    /// Like [`Store::update_user`], but `change` may decline (return false) on the state
    /// it sees, and then nothing is written: `Ok(None)`. A missing user is an error.
    pub async fn try_update_user(
        &self,
        id: &str,
        mut change: impl FnMut(&mut User) -> bool + Send,
    ) -> Result<Option<User>> {
        self.backend.try_update_user(id, &mut change).await
    }

    /// Whether `email` is locked at `now_ms`; the end of the lock when it is.
    pub async fn locked_until(&self, email: &str, now_ms: u64) -> Result<Option<u64>> {
        let f = self.backend.failures(email).await?;
        Ok((f.locked_until_ms > now_ms).then_some(f.locked_until_ms))
    }
}

impl From<SledStore> for Store {
    fn from(sled: SledStore) -> Self {
        Self {
            backend: Arc::new(sled.clone()),
            sled: Some(sled),
        }
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.backend
    }
}
