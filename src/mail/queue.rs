//! What the sender delivers: the gateway's own file spool ([`Spool`]) or the spool
//! every gateway of a shared store delivers ([`SharedSpool`]), behind the few steps the
//! sender's one loop takes (see [`super::sender`]).

use std::sync::Arc;
use std::time::Duration;

use super::message::{self, Spooled};
use super::shared::SharedSpool;
use super::spool::{message_id, Spool};

/// A spool the sender delivers.
#[derive(Clone)]
pub enum Queue {
    /// `data_dir/spool`: this gateway's messages.
    Local(Arc<Spool>),
    /// The store's spool, claimed one message at a time.
    Shared(Arc<SharedSpool>),
}

impl From<Arc<Spool>> for Queue {
    fn from(spool: Arc<Spool>) -> Self {
        Self::Local(spool)
    }
}

impl From<Arc<SharedSpool>> for Queue {
    fn from(spool: Arc<SharedSpool>) -> Self {
        Self::Shared(spool)
    }
}

/// One message to deliver: a file's name, or a claimed message of the shared spool.
pub struct Item {
    name: String,
    /// The claimed message (shared spool only).
    claimed: Option<Vec<u8>>,
}

impl Item {
    /// The message's id, for logs.
    pub fn id(&self) -> &str {
        match self.claimed {
            Some(_) => &self.name,
            None => message_id(&self.name),
        }
    }
}

impl Queue {
    /// The messages to deliver now, oldest first: every file of the local spool, or the
    /// next message claimed from the shared one. `Err` (logged by the caller) when the
    /// spool cannot be read.
    pub async fn next(&self) -> Result<Vec<Item>, String> {
        match self {
            Self::Local(spool) => {
                let spool = spool.clone();
                match tokio::task::spawn_blocking(move || spool.list()).await {
                    Ok(Ok(names)) => Ok(names.into_iter().map(|name| Item { name, claimed: None }).collect()),
                    Ok(Err(e)) => Err(format!("cannot read the mail spool: {e}")),
                    Err(e) => Err(format!("the mail spool task failed: {e}")),
                }
            }
            Self::Shared(spool) => match spool.claim().await {
                Ok(claimed) => Ok(claimed
                    .into_iter()
                    .map(|m| Item {
                        name: m.id,
                        claimed: Some(m.message),
                    })
                    .collect()),
                Err(e) => Err(format!("cannot claim mail from the shared spool: {e}")),
            },
        }
    }

    /// Reads one message: `Ok(None)` when it is gone (delivered meanwhile), `Err` when it
    /// is unreadable and could never be sent.
    pub async fn read(&self, item: &Item) -> Result<Option<Spooled>, String> {
        match (self, &item.claimed) {
            (Self::Local(spool), _) => {
                let (spool, name) = (spool.clone(), item.name.clone());
                match tokio::task::spawn_blocking(move || spool.read(&name)).await {
                    Ok(read) => read.map_err(|e| e.to_string()),
                    // Not the message's fault: it stays, for the next round.
                    Err(e) => {
                        tracing::error!(error = %e, "the mail spool task failed");
                        Ok(None)
                    }
                }
            }
            (Self::Shared(_), Some(bytes)) => message::parse(bytes)
                .map(Some)
                .ok_or_else(|| "not a spooled message".to_owned()),
            (Self::Shared(_), None) => Ok(None),
        }
    }

    /// Removes a message: delivered, or given up on. `false` when it could not be (the
    /// caller waits before going on, rather than sending it again at once).
    pub async fn remove(&self, item: &Item) -> bool {
        match self {
            Self::Local(spool) => {
                let (spool, name) = (spool.clone(), item.name.clone());
                match tokio::task::spawn_blocking(move || spool.remove(&name)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::error!(message_id = item.id(), error = %e, "cannot remove a message from the mail spool");
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the mail spool task failed");
                        false
                    }
                }
            }
            Self::Shared(spool) => spool.remove(&item.name).await,
        }
    }

    /// Keeps a message that failed for now, to be tried again after `wait`: a file stays
    /// where it is; a claimed message goes back to the shared spool, due after `wait`,
    /// for whichever gateway claims it then.
    pub async fn keep(&self, item: &Item, wait: Duration) {
        if let Self::Shared(spool) = self {
            spool.retry(&item.name, wait).await;
        }
    }

    /// Waits for work: until a message is spooled here, and for the shared spool at most
    /// [`super::shared::POLL`] (other gateways' messages, run-out leases).
    pub async fn idle(&self) {
        match self {
            Self::Local(spool) => spool.spooled().await,
            Self::Shared(spool) => spool.idle().await,
        }
    }
}
