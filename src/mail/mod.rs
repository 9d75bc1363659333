//! Outgoing mail: what the auth flows hand over with `AuthService::mail`, and how it
//! leaves.
//!
//! Without `[email.smtp]`, messages are files in the `[email] outbox` ([`outbox`]). With
//! it, each message is built with lettre ([`message`]) and made durable before the flow
//! goes on: in the spool under `data_dir` ([`spool`]) with the embedded store, or with a
//! shared store (PostgreSQL) in the spool every gateway of it shares ([`shared`]), so
//! that a message outlives the gateway that made it and is sent by exactly one. One
//! background task per gateway ([`sender`]) delivers it ([`queue`]: either spool), retries
//! with backoff, and removes a message only once the mail server accepted it (or refused
//! it for good).

pub mod message;
pub mod outbox;
pub mod queue;
pub mod sender;
pub mod shared;
pub mod spool;

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::store::Store;

pub use self::outbox::Outbox;
pub use self::queue::Queue;
pub use self::shared::SharedSpool;
pub use self::spool::{Spool, SpoolError};

/// Where the auth flows' mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// `[email] outbox`: files for someone else to send.
    Outbox(Outbox),
    /// `[email.smtp]` with the embedded store: the spool in `data_dir` this gateway's
    /// sender delivers.
    Spool(Arc<Spool>),
    /// `[email.smtp]` with a shared store: the spool every gateway's sender delivers.
    Shared(Arc<SharedSpool>),
}

impl Mailer {
    /// The mailer `config` asks for; with SMTP, the spool of `store` when it is shared
    /// by several gateways, or else opens the spool (`data_dir/spool`).
    pub fn new(config: &Config, clock: SharedClock, store: &Store) -> std::io::Result<Self> {
        match &config.email.smtp {
            Some(smtp) if store.sled().is_none() => {
                let left = spooled_files(&config.server.data_dir);
                if left > 0 {
                    tracing::warn!(
                        messages = left,
                        "mail waits in data_dir/spool from a run on the embedded store: with a shared store it is not sent (its links are for the embedded store's accounts)"
                    );
                }
                Ok(Self::Shared(Arc::new(SharedSpool::new(
                    store.clone(),
                    smtp.from.clone(),
                    clock,
                    smtp.spool_max,
                ))))
            }
            Some(smtp) => {
                let dir = config.server.data_dir.join("spool");
                Ok(Self::Spool(Arc::new(Spool::open(
                    &dir,
                    smtp.from.clone(),
                    clock,
                    smtp.spool_max,
                )?)))
            }
            None => {
                let left = spooled_files(&config.server.data_dir);
                if left > 0 {
                    tracing::warn!(
                        messages = left,
                        "mail waits in the spool but [email.smtp] is not set: it is sent once SMTP is configured again"
                    );
                }
                let domain = config.server.public_url.host().unwrap_or("localhost").to_owned();
                Ok(Self::Outbox(Outbox::new(
                    config.email.outbox.clone(),
                    config.email.from.to_string(),
                    domain,
                    clock,
                )))
            }
        }
    }

    /// Makes one message durable: in the outbox or the file spool (on the blocking
    /// pool, never on a connection worker), or in the shared spool (a database round
    /// trip). `to` has been validated.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SpoolError> {
        let owned = || (to.to_owned(), subject.to_owned(), body.to_owned());
        match self {
            Self::Shared(s) => s.put(to, subject, body).await.map(|_| ()),
            Self::Outbox(o) => {
                let (o, (to, subject, body)) = (o.clone(), owned());
                blocking(move || o.send(&to, &subject, &body).map(|_| ()).map_err(SpoolError::Io)).await
            }
            Self::Spool(s) => {
                let (s, (to, subject, body)) = (s.clone(), owned());
                blocking(move || s.put(&to, &subject, &body).map(|_| ())).await
            }
        }
    }

    /// The file spool, when mail goes over SMTP with the embedded store.
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        match self {
            Self::Spool(s) => Some(s),
            Self::Outbox(_) | Self::Shared(_) => None,
        }
    }

    /// What the sender delivers, when mail goes over SMTP.
    pub fn queue(&self) -> Option<Queue> {
        match self {
            Self::Spool(s) => Some(s.clone().into()),
            Self::Shared(s) => Some(s.clone().into()),
            Self::Outbox(_) => None,
        }
    }
}

/// Runs a write of the outbox or the file spool on the blocking pool.
async fn blocking(write: impl FnOnce() -> Result<(), SpoolError> + Send + 'static) -> Result<(), SpoolError> {
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| SpoolError::Io(std::io::Error::other(format!("the mail task failed: {e}"))))?
}

/// How many messages wait in `data_dir/spool`.
fn spooled_files(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("spool"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// A random message id: 128 bits, hex.
pub(crate) fn random_id() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
