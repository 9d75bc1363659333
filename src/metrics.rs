//! `GET /metrics`: counters in the Prometheus text format (version 0.0.4).
//!
//! Requests by route and status with a latency histogram per route, auth events by kind,
//! and upstream errors by upstream and kind. Labels come only from bounded sets (route
//! names from the policy files, status codes, event kinds, configured upstreams), never
//! from what a client sends, so a client cannot grow the set of series. Recording is a
//! map lookup under a shard read lock and a few relaxed atomic additions.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::audit::{EventKind, QueueStats};

/// Upper bounds of the latency buckets, in microseconds (0.5 ms to 10 s).
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Status codes are 100..=999; each route has one counter per code.
const STATUS_SLOTS: usize = 1000;

/// The route labels of requests no route allowed: `/auth/*`, the gateway's own
/// endpoints, and everything refused before or by the policy (400, 401, 403, 404).
pub const ROUTE_AUTH: &str = "(auth)";
pub const ROUTE_GATEWAY: &str = "(gateway)";
pub const ROUTE_UNMATCHED: &str = "(none)";
/// The decisions of `/auth/verify` (forward-auth), whatever route they concern.
pub const ROUTE_FORWARD_AUTH: &str = "(forward-auth)";

struct RouteStats {
    by_status: Box<[AtomicU64]>,
    /// Requests per latency bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// The counters of one gateway.
#[derive(Default)]
pub struct Metrics {
    // Keyed by route names and upstream names from the configuration, never by anything
    // a client sends: the fast hasher (one lookup on every request).
    routes: DashMap<Box<str>, RouteStats, foldhash::fast::RandomState>,
    upstream_errors: DashMap<(Box<str>, &'static str), AtomicU64, foldhash::fast::RandomState>,
    panics: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let slot = usize::from(status).min(STATUS_SLOTS - 1);
        let bucket = BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(BUCKETS_US.len());
        let record = |s: &RouteStats| {
            s.by_status[slot].fetch_add(1, Ordering::Relaxed);
            s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            s.sum_us.fetch_add(us, Ordering::Relaxed);
        };
        if let Some(s) = self.routes.get(route) {
            record(&s);
            return;
        }
        record(&self.routes.entry(route.into()).or_insert_with(RouteStats::new));
    }

    /// Counts an upstream that could not be reached (`kind` "unreachable") or did not
    /// answer in time ("timeout").
    pub fn upstream_error(&self, upstream: &str, kind: &'static str) {
        self.upstream_errors
            .entry((upstream.into(), kind))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request whose handler panicked (answered 500).
    pub fn panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, with the auth event counts of `auth` and the audit queue's
    /// counters.
    pub fn render(&self, auth: &AuthEventCounts, audit: QueueStats) -> String {
        let mut out = String::with_capacity(4096);
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_by(|a, b| a.key().cmp(b.key()));

        out.push_str("# HELP portcullis_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE portcullis_requests_total counter\n");
        for r in &routes {
            let route = escape(r.key());
            for (status, n) in r.by_status.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "portcullis_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }

        out.push_str("# HELP portcullis_request_duration_seconds Time from request head to response head, by route.\n");
        out.push_str("# TYPE portcullis_request_duration_seconds histogram\n");
        for r in &routes {
            let route = escape(r.key());
            let mut cumulative = 0;
            for (i, n) in r.buckets.iter().enumerate() {
                cumulative += n.load(Ordering::Relaxed);
                let le = BUCKETS_US.get(i).map_or_else(|| "+Inf".to_owned(), |us| seconds(*us));
                let _ = writeln!(
                    out,
                    "portcullis_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = seconds(r.sum_us.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "portcullis_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "portcullis_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
            );
        }

        out.push_str("# HELP portcullis_auth_events_total Security events of the /auth endpoints, by event.\n");
        out.push_str("# TYPE portcullis_auth_events_total counter\n");
        let mut events: Vec<_> = auth
            .counts
            .iter()
            .map(|e| (*e.key(), e.load(Ordering::Relaxed)))
            .collect();
        events.sort_unstable();
        for (event, n) in events {
            let _ = writeln!(out, "portcullis_auth_events_total{{event=\"{}\"}} {n}", escape(event));
        }

        out.push_str(
            "# HELP portcullis_upstream_errors_total Upstreams unreachable or too slow, by upstream and kind.\n",
        );
        out.push_str("# TYPE portcullis_upstream_errors_total counter\n");
        let mut errors: Vec<_> = self
            .upstream_errors
            .iter()
            .map(|e| (e.key().clone(), e.load(Ordering::Relaxed)))
            .collect();
        errors.sort_unstable();
        for ((upstream, kind), n) in errors {
            let _ = writeln!(
                out,
                "portcullis_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
                escape(&upstream)
            );
        }
        out.push_str("# HELP portcullis_handler_panics_total Requests whose handler panicked (answered 500).\n");
        out.push_str("# TYPE portcullis_handler_panics_total counter\n");
        let _ = writeln!(
            out,
            "portcullis_handler_panics_total {}",
            self.panics.load(Ordering::Relaxed)
        );
        for (name, kind, help, n) in [
            (
                "portcullis_audit_waits_total",
                "counter",
                "Audit records of routes with audit = true that found the queue full and waited for room.",
                audit.waited,
            ),
            (
                "portcullis_audit_dropped_total",
                "counter",
                "Audit records dropped (queue full, writer failing or stopped), each also counted in an audit_overflow record.",
                audit.dropped,
            ),
            (
                "portcullis_audit_writer_failing",
                "gauge",
                "1 while the audit writer cannot append to the trail.",
                u64::from(audit.failing),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {n}");
        }
        out
    }
}

/// Auth events by kind (`login_success`, `login_failure`, ...), counted as they are
/// audited.
#[derive(Default)]
pub struct AuthEventCounts {
    counts: DashMap<&'static str, AtomicU64>,
}

impl AuthEventCounts {
    /// Counts one event of `kind`, under its name in the trail (so the refused and the
    /// granted refresh share `token_refresh`).
    pub fn count(&self, kind: EventKind) {
        let event = kind.name();
        if let Some(n) = self.counts.get(event) {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts.entry(event).or_default().fetch_add(1, Ordering::Relaxed);
    }
}

fn seconds(us: u64) -> String {
    let s = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Counts land in the right series, buckets are cumulative, and label values are
    // escaped.
    #[test]
    fn render_counts() {
        let m = Metrics::default();
        m.request("browse", 200, Duration::from_micros(300));
        m.request("browse", 200, Duration::from_millis(3));
        m.request("browse", 404, Duration::from_secs(20));
        m.request("say \"hi\"", 403, Duration::from_millis(1));
        m.upstream_error("shop", "timeout");
        m.panic();
        let auth = AuthEventCounts::default();
        auth.count(EventKind::LoginFailure);
        auth.count(EventKind::LoginFailure);
        auth.count(EventKind::LoginSuccess);
        let audit = QueueStats {
            waited: 7,
            dropped: 3,
            failing: true,
        };
        let text = m.render(&auth, audit);
        for line in [
            "portcullis_requests_total{route=\"browse\",status=\"200\"} 2",
            "portcullis_requests_total{route=\"browse\",status=\"404\"} 1",
            "portcullis_requests_total{route=\"say \\\"hi\\\"\",status=\"403\"} 1",
            "portcullis_request_duration_seconds_bucket{route=\"browse\",le=\"0.0005\"} 1",
            "portcullis_request_duration_seconds_bucket{route=\"browse\",le=\"0.0025\"} 1",
            "portcullis_request_duration_seconds_bucket{route=\"browse\",le=\"0.005\"} 2",
            "portcullis_request_duration_seconds_bucket{route=\"browse\",le=\"10\"} 2",
            "portcullis_request_duration_seconds_bucket{route=\"browse\",le=\"+Inf\"} 3",
            "portcullis_request_duration_seconds_count{route=\"browse\"} 3",
            "portcullis_request_duration_seconds_sum{route=\"browse\"} 20.0033",
            "portcullis_auth_events_total{event=\"login_failure\"} 2",
            "portcullis_handler_panics_total 1",
            "portcullis_auth_events_total{event=\"login_success\"} 1",
            "portcullis_upstream_errors_total{upstream=\"shop\",kind=\"timeout\"} 1",
            "portcullis_audit_waits_total 7",
            "portcullis_audit_dropped_total 3",
            "# TYPE portcullis_audit_writer_failing gauge",
            "portcullis_audit_writer_failing 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
