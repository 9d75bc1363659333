//! The tasks that run beside the requests: the admin socket, the sweeper, the audit
//! checkpoints, the reaper of idle upstream connections, the mail sender, and the
//! follower of the store's revocation feed. Each ends when the gateway starts draining.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::service::AuthService;
use crate::config::Config;
use crate::listener::Lifecycle;
use crate::pipeline::Pipeline;

/// Serves the admin socket until shutdown, then removes its file.
pub(super) fn spawn_admin(
    tasks: &mut JoinSet<()>,
    admin: tokio::net::UnixListener,
    inner: &Pipeline,
    config: &Config,
    stop: &watch::Sender<Lifecycle>,
) {
    let auth = inner.auth_shared().clone();
    let mut admin_stop = stop.subscribe();
    let admin_path = crate::admin::socket_path(&config.server.data_dir);
    tasks.spawn(async move {
        tokio::select! {
            () = crate::admin::serve_socket(admin, auth) => {}
            _ = admin_stop.changed() => {}
        }
        let _ = std::fs::remove_file(admin_path);
    });
}

/// Every minute: expired tokens, sessions and attempts, idle limiter keys, and audit
/// records past `[audit] retain`, in a task of its own (the backend runs its long
/// pruning off the runtime's threads).
pub(super) fn spawn_sweeper(tasks: &mut JoinSet<()>, inner: &Arc<Pipeline>, stop: &watch::Sender<Lifecycle>) {
    let sweeper = inner.clone();
    let mut sweep_stop = stop.subscribe();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let auth = sweeper.auth_shared().clone();
                    let retain = sweeper.config().audit_retain;
                    let swept = tokio::spawn(async move {
                        auth.sweep().await;
                        prune_audit(&auth, retain).await;
                    });
                    sweeper.evict_idle();
                    if let Err(e) = swept.await {
                        tracing::error!(error = %e, "the sweep failed");
                    }
                }
                _ = sweep_stop.changed() => return,
            }
        }
    });
}

/// Signs a checkpoint of the audit chain every [`crate::audit::CHECKPOINT_EVERY`].
pub(super) fn spawn_checkpoints(tasks: &mut JoinSet<()>, inner: &Arc<Pipeline>, stop: &watch::Sender<Lifecycle>) {
    let anchor = inner.clone();
    let mut anchor_stop = stop.subscribe();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(crate::audit::CHECKPOINT_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => checkpoint_audit(anchor.auth()).await,
                _ = anchor_stop.changed() => return,
            }
        }
    });
}

/// Upstream connections idle too long are closed on a timer, not only when a request
/// next looks at the pool.
pub(super) fn spawn_reaper(tasks: &mut JoinSet<()>, inner: &Arc<Pipeline>, stop: &watch::Sender<Lifecycle>) {
    let reaper = inner.clone();
    let mut reap_stop = stop.subscribe();
    let reap_every =
        (inner.config().limits.upstream_idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
    tasks.spawn(async move {
        let mut every = tokio::time::interval(reap_every);
        loop {
            tokio::select! {
                _ = every.tick() => reaper.upstreams().reap(),
                _ = reap_stop.changed() => return,
            }
        }
    });
}

/// Delivers the mail spool over SMTP until shutdown (see [`crate::mail::sender`]): the
/// gateway's own, or the one a shared store keeps. It stops at once when the drain
/// begins: what it has not delivered stays in the spool.
pub(super) fn spawn_mail_sender(
    tasks: &mut JoinSet<()>,
    inner: &Arc<Pipeline>,
    tls: lettre::transport::smtp::client::Tls,
    stop: &watch::Sender<Lifecycle>,
) {
    let auth = inner.auth();
    let (Some(queue), Some(smtp)) = (auth.mailer().queue(), inner.config().email.smtp.clone()) else {
        return;
    };
    let mut mail_stop = stop.subscribe();
    tasks.spawn(crate::mail::sender::run(
        queue,
        crate::mail::sender::transport(&smtp, tls),
        smtp,
        auth.audit().clone(),
        async move {
            let _ = mail_stop.changed().await;
        },
    ));
}

/// Drops audit records older than `retain`; the chain stays verifiable.
pub(super) async fn prune_audit(auth: &AuthService, retain: Option<Duration>) {
    if let Some(retain) = retain {
        let now = auth.clock().now_ms();
        let cutoff = now.saturating_sub(u64::try_from(retain.as_millis()).unwrap_or(u64::MAX));
        match crate::audit::prune(auth.store(), cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned old audit records"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit trail"),
        }
    }
}

/// Signs a checkpoint of the audit chain's head, when it moved since the last one.
pub(super) async fn checkpoint_audit(auth: &AuthService) {
    let now = auth.clock().now_ms();
    match crate::audit::sign_checkpoint(auth.store(), auth.keys(), now).await {
        Ok(Some(c)) => tracing::debug!(seq = c.seq, "audit checkpoint signed"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
    }
}

/// Applies the revocations other gateways of a shared store make, until shutdown (see
/// `crate::auth::feed`); ends at once with a store no other gateway shares.
pub(super) fn spawn_feed(tasks: &mut JoinSet<()>, inner: &Arc<Pipeline>, stop: &watch::Sender<Lifecycle>) {
    let (follower, mut feed_stop) = (inner.auth_shared().clone(), stop.subscribe());
    tasks.spawn(async move {
        follower
            .follow_revocations(async move {
                let _ = feed_stop.changed().await;
            })
            .await;
    });
}
