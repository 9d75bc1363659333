//! Idle sessions (`[tokens] idle_timeout`): a session whose tokens have not been used for
//! that long is ended.
//!
//! Each live session has one [`Activity`] in memory: its last-used second, an atomic the
//! request path stores into (relaxed) through the verified token it already holds, so
//! tracking costs no lookup, lock or allocation per request, and the check is one
//! comparison. A refresh counts as use. The minutely sweep writes the times that changed
//! to the store in one batch (so a restart keeps them) and ends the sessions idle for
//! too long: revoked, forgotten, and audited once as `session_expired`. Requests with an
//! idle token are refused from the moment it is idle, before the sweep comes.
//!
//! The map holds one entry per session that has been used since start-up (or was stored
//! as used); entries go when their session ends or turns idle. When the timeout is off,
//! nothing is tracked.
//!
//! Gateways sharing a store share the times through it: each sweep saves this gateway's
//! and then takes in the others' (the later time wins), before it ends anything. A
//! session used only on another gateway is known here as used within two sweeps.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::activity::Activity;
use super::flow::AuthEvent;
use super::service::AuthService;
use crate::audit::EventKind;
use crate::store::StoreError;

impl AuthService {
    /// Whether the idle timeout is on.
    pub fn idle_timeout(&self) -> Option<u64> {
        (self.idle.timeout > 0).then_some(self.idle.timeout)
    }

    /// Notes that session `sid` was used now (a sign-in or a refresh).
    pub(super) fn session_used(&self, sid: &str) {
        self.idle.used(sid, self.clock.now());
    }

    /// For a refresh of session `sid` whose current refresh token was issued at
    /// `issued`: `Some(event)` when the session was idle too long and this call ended
    /// it, `Some(None)` when it was idle but ended by someone else, `None` when it is
    /// live.
    pub(super) async fn end_if_idle(&self, sid: &str, issued: u64) -> Result<Option<Option<AuthEvent>>, StoreError> {
        if self.idle.timeout == 0 {
            return Ok(None);
        }
        let now = self.clock.now();
        if !self.idle.is_idle(sid, now, issued) {
            return Ok(None);
        }
        if !self.idle.map.contains_key(sid) {
            // Not tracked: track it as idle, so exactly one caller ends it below.
            self.idle
                .map
                .entry(sid.to_owned())
                .or_insert_with(|| Arc::new(Activity::new(issued, 0)));
        }
        self.end_idle(sid, now).await.map(Some)
    }

    /// Ends session `sid` if it is still tracked and idle at `now`: the caller that
    /// removes it from the map ends it, so it is ended (and audited) once.
    async fn end_idle(&self, sid: &str, now: u64) -> Result<Option<AuthEvent>, StoreError> {
        let timeout = self.idle.timeout;
        let removed = self.idle.map.remove_if(sid, |_, a| {
            now.saturating_sub(a.last.load(Ordering::Relaxed)) >= timeout
        });
        let Some((_, activity)) = removed else {
            return Ok(None);
        };
        self.store.remove_activity(sid).await?;
        let Some(session) = self.store.session(sid).await? else {
            return Ok(None);
        };
        if session.revoked || session.expires <= now || self.revoked.sessions.contains_key(sid) {
            return Ok(None);
        }
        self.revoke_session(&session).await?;
        let idle_for = now.saturating_sub(activity.last.load(Ordering::Relaxed));
        Ok(Some(AuthEvent {
            event: EventKind::SessionExpired,
            user_id: Some(session.user_id),
            email: None,
            reason: Some(format!("unused for {idle_for} s (idle_timeout {timeout} s)")),
        }))
    }

    /// Forgets the activity of a session that has ended.
    pub(super) async fn forget_activity(&self, sid: &str) -> Result<(), StoreError> {
        if self.idle.timeout > 0 && self.idle.map.remove(sid).is_some() {
            self.store.remove_activity(sid).await?;
        }
        Ok(())
    }

    /// Writes the last-used times that changed since the last call, in one batch.
    pub async fn save_activity(&self) -> Result<(), StoreError> {
        if self.idle.timeout == 0 {
            return Ok(());
        }
        let mut changed = Vec::new();
        for entry in &self.idle.map {
            let last = entry.last.load(Ordering::Relaxed);
            if entry.saved.swap(last, Ordering::Relaxed) != last {
                changed.push((entry.key().clone(), last));
            }
        }
        self.store.put_activity(&changed).await
    }

    /// Part of the sweep: saves the activity and ends the sessions idle too long, each
    /// audited once.
    pub(super) async fn sweep_idle(&self) {
        if self.idle.timeout == 0 {
            return;
        }
        if let Err(e) = self.save_activity().await {
            tracing::warn!(error = %e, "saving session activity failed");
        }
        if self.store.sled().is_none() {
            self.merge_activity().await;
        }
        let now = self.clock.now();
        let idle: Vec<String> = self
            .idle
            .map
            .iter()
            .filter(|e| now.saturating_sub(e.last.load(Ordering::Relaxed)) >= self.idle.timeout)
            .map(|e| e.key().clone())
            .collect();
        for sid in idle {
            match self.end_idle(&sid, now).await {
                Ok(Some(event)) => {
                    self.audit.record(event.to_audit(None, None));
                    self.events.count(event.event);
                    tracing::info!(
                        target: "portcullis::audit",
                        event = event.event.name(),
                        user = event.user_id.as_deref().unwrap_or("-"),
                        "security event"
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "ending an idle session failed"),
            }
        }
    }

    /// With a shared store, takes in the uses the other gateways saved: a session in use on
    /// another gateway is not idle here, though this gateway has not seen it for a while.
    async fn merge_activity(&self) {
        match self.store.activity().await {
            Ok(times) => {
                for (sid, last) in times {
                    let activity = self
                        .idle
                        .map
                        .entry(sid)
                        .or_insert_with(|| Arc::new(Activity::new(last, last)))
                        .clone();
                    activity.last.fetch_max(last, Ordering::Relaxed);
                    activity.saved.fetch_max(last, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the other gateways' session activity failed"),
        }
    }

    /// Loads the stored last-used times (at start-up), when the timeout is on.
    pub(super) async fn load_activity(&self) -> Result<(), StoreError> {
        if self.idle.timeout == 0 {
            return Ok(());
        }
        for (sid, last) in self.store.activity().await? {
            self.idle.map.insert(sid, Arc::new(Activity::new(last, last)));
        }
        Ok(())
    }
}
