//! `GET /readyz`: whether the store and every upstream are reachable, as found by one
//! background task ([`run`]) every [`PROBE_EVERY`], never by the request itself.
//!
//! The store is probed by a write, a read back and a flush; an upstream by a TCP
//! connection; each within [`PROBE_TIMEOUT`]. The answer is 200 `ready` when every check
//! passed in a probe at most [`MAX_AGE`] old, and 503 `not_ready` otherwise, naming the
//! checks and a one-word state each (no address, no error text: those go to the log).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::auth::service::AuthService;
use crate::config::Upstream;
use crate::error::json_response;
use crate::upstream::body::GatewayBody;

/// How often the probes run.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long one probe may take before its check fails as `timeout`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The oldest probe `/readyz` reports on; older, it answers 503 `stale`.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// What the last probe found.
#[derive(Default)]
struct Report {
    /// When it finished; `None` before the first.
    at: Option<Instant>,
    /// `store` and `upstream:NAME`, each `ok` or why not.
    checks: BTreeMap<String, &'static str>,
}

/// The readiness of the gateway, as the probe task last found it.
#[derive(Default)]
pub struct Readiness {
    report: ArcSwap<Report>,
}

impl Readiness {
    /// The answer to `GET /readyz`.
    pub fn answer(&self) -> Response<GatewayBody> {
        let report = self.report.load();
        let fresh = report.at.is_some_and(|at| at.elapsed() <= MAX_AGE);
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
            let auth = auth.clone();
            let now_ms = auth.clock().now_ms();
            let probe = tokio::task::spawn_blocking(move || auth.store().probe(now_ms));
            async move {
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(Ok(()))) => "ok",
                    Ok(Ok(Err(e))) => {
                        tracing::warn!(error = %e, "readiness: the store probe failed");
                        "error"
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "readiness: the store probe task failed");
                        "error"
                    }
                    Err(_) => "timeout",
                }
            }
        };
        let connects = upstreams.iter().map(|u| async move {
            let addr = format!("{}:{}", u.authority.host(), u.authority.port_u16().unwrap_or(80));
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
    }
}

/// The probe task: probes at once, then every [`PROBE_EVERY`], until `stop` changes.
pub async fn run<T>(
    readiness: Arc<Readiness>,
    auth: Arc<AuthService>,
    upstreams: Vec<Upstream>,
    mut stop: tokio::sync::watch::Receiver<T>,
) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => readiness.probe(&auth, &upstreams).await,
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let status = |r: &Readiness| r.answer().status().as_u16();
        assert_eq!(status(&Readiness::default()), 503);
        assert_eq!(status(&with(Some(Instant::now()), "ok")), 200);
        assert_eq!(status(&with(Some(Instant::now()), "unreachable")), 503);
        let old = Instant::now().checked_sub(MAX_AGE + Duration::from_secs(1));
        if let Some(old) = old {
            assert_eq!(status(&with(Some(old), "ok")), 503);
        }
    }
}
