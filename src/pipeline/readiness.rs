//! `GET /readyz`: whether the store and every upstream are reachable, as found by one
//! background task ([`run`]), never by the request itself.
//!
//! The store is probed by a write, a read back and a flush; an upstream by a TCP
//! connection; each within [`PROBE_TIMEOUT`]. The task probes only while someone
//! watches: from the first `/readyz` on, every [`PROBE_EVERY`], until nobody has asked
//! for [`WATCH`] (so an upstream sees no probe traffic from a gateway nobody checks).
//! The answer is 200 `ready` when every check passed in a probe at most [`MAX_AGE`] old,
//! and 503 `not_ready` otherwise, naming the checks and a one-word state each (no
//! address, no error text: those go to the log). A request that finds no fresh probe
//! (the first, or the first after a quiet spell) wakes the task and waits for its probe,
//! at most [`WAIT`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Response, StatusCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::auth::service::AuthService;
use crate::config::Upstream;
use crate::error::json_response;
use crate::upstream::body::GatewayBody;

/// How often the probes run while someone watches.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long one probe may take before its check fails as `timeout`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The oldest probe `/readyz` reports on; older, it answers 503 `stale`.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// How long the probes go on after the last `/readyz`.
pub const WATCH: Duration = Duration::from_secs(300);
/// The longest a request waits for a fresh probe.
pub const WAIT: Duration = Duration::from_millis(1500);

/// What the last probe found.
#[derive(Default)]
struct Report {
    /// When it finished; `None` before the first.
    at: Option<Instant>,
    /// `store` and `upstream:NAME`, each `ok` or why not.
    checks: BTreeMap<String, &'static str>,
}

/// The readiness of the gateway, as the probe task last found it.
pub struct Readiness {
    report: ArcSwap<Report>,
    /// Wakes the probe task when a request finds no fresh probe.
    wake: Notify,
    /// Tells waiting requests a probe finished.
    updated: Notify,
    /// When `/readyz` was last asked: milliseconds after `since`.
    asked_ms: AtomicU64,
    since: Instant,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            report: ArcSwap::default(),
            wake: Notify::new(),
            updated: Notify::new(),
            asked_ms: AtomicU64::new(0),
            since: Instant::now(),
        }
    }
}

fn is_fresh(report: &Report) -> bool {
    report.at.is_some_and(|at| at.elapsed() <= MAX_AGE)
}

impl Readiness {
    /// The answer to `GET /readyz`: the last probe's findings when fresh; else the task
    /// is woken and its probe awaited (at most [`WAIT`]).
    pub async fn answer(&self) -> Response<GatewayBody> {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.asked_ms.store(ms, Ordering::Relaxed);
        if !is_fresh(&self.report.load()) {
            let updated = self.updated.notified();
            tokio::pin!(updated);
            updated.as_mut().enable();
            self.wake.notify_one();
            let _ = tokio::time::timeout(WAIT, updated).await;
        }
        self.render()
    }

    /// Someone asked within [`WATCH`].
    fn watched(&self) -> bool {
        let asked = Duration::from_millis(self.asked_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(asked) <= WATCH
    }

    /// The answer the last probe gives.
    fn render(&self) -> Response<GatewayBody> {
        let report = self.report.load();
        let fresh = is_fresh(&report);
        let mut checks: serde_json::Map<String, serde_json::Value> =
            report.checks.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        if !fresh {
            let why = if report.at.is_some() { "stale" } else { "pending" };
            checks.insert("probe".into(), why.into());
        }
        let ready = fresh && report.checks.values().all(|v| *v == "ok");
        let (status, word) = if ready {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        };
        let mut resp = json_response(status, &serde_json::json!({ "status": word, "checks": checks }));
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    /// Runs every probe once, at once, and publishes what they found.
    pub async fn probe(&self, auth: &Arc<AuthService>, upstreams: &[Upstream]) {
        let store = {
            let now_ms = auth.clock().now_ms();
            async move {
                match tokio::time::timeout(PROBE_TIMEOUT, auth.store().probe(now_ms)).await {
                    Ok(Ok(())) => "ok",
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "readiness: the store probe failed");
                        "error"
                    }
                    Err(_) => "timeout",
                }
            }
        };
        let connects = upstreams.iter().map(|u| async move {
            let addr = format!("{}:{}", u.authority.host(), u.port());
            let state = match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => "ok",
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %u.name, %addr, error = %e, "readiness: upstream unreachable");
                    "unreachable"
                }
                Err(_) => {
                    tracing::warn!(upstream = %u.name, %addr, "readiness: upstream connect timed out");
                    "timeout"
                }
            };
            (format!("upstream:{}", u.name), state)
        });
        let (store, upstream_states) = tokio::join!(store, futures_util::future::join_all(connects));
        let mut checks: BTreeMap<String, &'static str> = upstream_states.into_iter().collect();
        checks.insert("store".into(), store);
        self.report.store(Arc::new(Report {
            at: Some(Instant::now()),
            checks,
        }));
        self.updated.notify_waiters();
    }
}

/// The probe task: idle until a `/readyz` wakes it, then probing every [`PROBE_EVERY`]
/// while someone asks, until `stop` changes.
pub async fn run<T>(
    readiness: Arc<Readiness>,
    auth: Arc<AuthService>,
    upstreams: Vec<Upstream>,
    mut stop: tokio::sync::watch::Receiver<T>,
) {
    loop {
        tokio::select! {
            () = readiness.wake.notified() => {}
            _ = stop.changed() => return,
        }
        while readiness.watched() {
            readiness.probe(&auth, &upstreams).await;
            tokio::select! {
                () = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A request that finds no fresh probe wakes the task and answers with the probe it
    // waited for, not with "pending"; then the task keeps probing while watched.
    #[tokio::test]
    async fn a_request_waits_for_the_probe_it_woke() {
        let readiness = Arc::new(Readiness::default());
        let task = {
            let r = readiness.clone();
            tokio::spawn(async move {
                r.wake.notified().await;
                assert!(r.watched());
                r.report.store(with(Some(Instant::now()), "ok").report.load_full());
                r.updated.notify_waiters();
            })
        };
        assert_eq!(readiness.answer().await.status().as_u16(), 200);
        task.await.unwrap();
    }

    fn with(at: Option<Instant>, upstream: &'static str) -> Readiness {
        let r = Readiness::default();
        let checks = [("store".to_owned(), "ok"), ("upstream:a".to_owned(), upstream)];
        r.report.store(Arc::new(Report {
            at,
            checks: checks.into_iter().collect(),
        }));
        r
    }

    // Ready only when every check passed in a probe at most MAX_AGE old: before the
    // first probe, after a failure, and when the probe task has stopped, it is 503.
    #[test]
    fn fresh_and_passing_only() {
        let status = |r: &Readiness| r.render().status().as_u16();
        assert_eq!(status(&Readiness::default()), 503);
        assert_eq!(status(&with(Some(Instant::now()), "ok")), 200);
        assert_eq!(status(&with(Some(Instant::now()), "unreachable")), 503);
        let old = Instant::now().checked_sub(MAX_AGE + Duration::from_secs(1));
        if let Some(old) = old {
            assert_eq!(status(&with(Some(old), "ok")), 503);
        }
    }
}
