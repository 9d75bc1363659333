//! The spool every gateway of a shared store delivers: the store's `mail_spool`
//! ([`Backend::mail_put`](crate::store::backend::Backend::mail_put) and the claims
//! beside it), used instead of the file spool when the store is not the embedded one.
//!
//! A message is the same bytes [`message::build`] makes for the file spool, put in the
//! database before [`SharedSpool::put`] returns: once the API has answered, the message
//! survives the gateway. Any gateway's sender may then claim it, for [`LEASE`]: the one
//! that claimed it sends it and removes it (or gives up on it); a sender that fails for
//! now puts it back, due after its backoff; a sender that dies leaves it to whichever
//! gateway claims it once the lease has run out. The spool holds at most `spool_max`
//! messages across every gateway.

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use lettre::message::Mailbox;
use tokio::sync::Notify;

use super::message;
use super::spool::SpoolError;
use crate::clock::SharedClock;
use crate::store::backend::ClaimedMail;
use crate::store::{Store, StoreError};

/// How long a claimed message is kept from every other sender: longer than the sender
/// lets one delivery take ([`super::sender`] bounds it), so a message is sent by one
/// gateway at a time.
pub const LEASE: Duration = Duration::from_secs(5 * 60);

/// How often an idle sender looks for messages it was not woken for: those another
/// gateway put and could not send, and those whose lease ran out.
pub const POLL: Duration = Duration::from_secs(3);

/// The most removals of delivered messages kept for when the database is back.
const UNSETTLED_MAX: usize = 1024;

/// The shared spool, as one gateway sees it.
pub struct SharedSpool {
    store: Store,
    from: Mailbox,
    clock: SharedClock,
    max: usize,
    /// Wakes this gateway's sender when this gateway puts a message.
    wake: Notify,
    /// Messages delivered (or given up) whose removal the database did not take: still
    /// claimed, so no one sends them again while [`SharedSpool::settle`] retries.
    unsettled: Mutex<Vec<String>>,
}

impl SharedSpool {
    pub fn new(store: Store, from: Mailbox, clock: SharedClock, max: usize) -> Self {
        Self {
            store,
            from,
            clock,
            max,
            wake: Notify::new(),
            unsettled: Mutex::new(Vec::new()),
        }
    }

    /// Builds one message and puts it in the shared spool, then wakes this gateway's
    /// sender. Returns the message's id. [`SpoolError::Full`] when the spool holds
    /// `spool_max` messages; [`SpoolError::Store`] when the database cannot take it.
    pub async fn put(&self, to: &str, subject: &str, body: &str) -> Result<String, SpoolError> {
        let id = super::random_id();
        let now = self.clock.now_ms();
        let date = UNIX_EPOCH + Duration::from_millis(now);
        let bytes = message::build(&self.from, to, subject, body, date, &id).map_err(SpoolError::Message)?;
        if !self.store.mail_put(&id, &bytes, self.max, now).await? {
            return Err(SpoolError::Full(self.max));
        }
        self.wake.notify_one();
        Ok(id)
    }

    /// Claims the next message due, for [`LEASE`]; after retrying the removals the
    /// database did not take before (an error then is the claim's error).
    pub async fn claim(&self) -> Result<Option<ClaimedMail>, StoreError> {
        self.settle().await?;
        let now = self.clock.now_ms();
        let lease = u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX);
        Ok(self.store.mail_claim(now, lease, 1).await?.pop())
    }

    /// Removes a claimed message: delivered, or given up on. When the database does not
    /// take it, the removal is kept and retried before the next claim (the message stays
    /// claimed meanwhile); `false` then.
    pub async fn remove(&self, id: &str) -> bool {
        match self.store.mail_done(id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(message_id = id, error = %e, "cannot remove a message from the shared mail spool; will retry");
                let mut unsettled = self.unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if unsettled.len() < UNSETTLED_MAX {
                    unsettled.push(id.to_owned());
                }
                false
            }
        }
    }

    /// Puts a claimed message back, due again after `wait` (now, for one not tried).
    /// Should the database not take it, the lease brings the message back.
    pub async fn retry(&self, id: &str, wait: Duration) {
        let at = self
            .clock
            .now_ms()
            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        if let Err(e) = self.store.mail_retry(id, at).await {
            tracing::warn!(message_id = id, error = %e, "cannot put a message back in the shared mail spool; it is tried again when its lease ends");
        }
    }

    /// Retries the removals the database did not take.
    async fn settle(&self) -> Result<(), StoreError> {
        loop {
            let next = self
                .unsettled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last()
                .cloned();
            let Some(id) = next else { return Ok(()) };
            self.store.mail_done(&id).await?;
            let mut unsettled = self.unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            unsettled.retain(|u| *u != id);
        }
    }

    /// Waits until this gateway puts a message, or [`POLL`] has passed.
    pub async fn idle(&self) {
        let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
    }
}
