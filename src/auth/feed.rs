//! Revocations made by the other gateways of a shared store, applied to this gateway's
//! in-memory sets as they arrive (the store's change feed, e.g. PostgreSQL's
//! LISTEN/NOTIFY), so the request path keeps checking tokens without a database round
//! trip and a logout on one gateway is refused on every other within the feed's delay.
//! After a reconnect or a lag the feed says `Resync`: the sets are reloaded from the
//! store before anything else is applied.

use tokio::sync::broadcast::error::RecvError;

use super::service::AuthService;
use crate::store::backend::Change;

impl AuthService {
    /// Applies the store's change feed until `stop` resolves; returns at once when the
    /// store has none (one gateway owns it).
    pub async fn follow_revocations(&self, stop: impl std::future::Future<Output = ()>) {
        let Some(mut feed) = self.store().subscribe() else {
            return;
        };
        tokio::pin!(stop);
        loop {
            let change = tokio::select! {
                () = &mut stop => return,
                change = feed.recv() => change,
            };
            match change {
                Ok(change) => self.apply_change(change).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "revocation feed lagged: reloading the revocations");
                    self.apply_change(Change::Resync).await;
                }
                Err(RecvError::Closed) => {
                    tracing::error!("the revocation feed ended");
                    return;
                }
            }
        }
    }

    /// One change from the feed.
    pub async fn apply_change(&self, change: Change) {
        tracing::debug!(?change, "revocation feed");
        match change {
            Change::Session { id, expires } => {
                self.revoked.sessions.insert(id, expires);
            }
            Change::User { id, after } => {
                self.revoked
                    .users
                    .entry(id)
                    .and_modify(|a| *a = (*a).max(after))
                    .or_insert(after);
            }
            Change::Jti { jti, exp } => {
                self.revoked.jti.insert(jti, exp);
            }
            Change::Resync => {
                // Until this succeeds the sets hold what they held; the store's own
                // retry brings another Resync.
                if let Err(e) = self.load_revocations().await {
                    tracing::warn!(error = %e, "reloading the revocations failed");
                }
            }
        }
    }
}
