//! Hot reload: the policies directory is watched (debounced) and SIGHUP asks for a
//! reload too ([`watch`](fn@watch)). A reload ([`reload`]) parses and validates the whole set;
//! only a valid set replaces the one in force, in one atomic swap, so no request ever
//! sees half of each. A broken set leaves the old policy in force; the failure is logged
//! with file, line and column and audited as `policy_reload_failed`. A good one is
//! audited as `policy_reload` with the routes added, removed and changed, and each lint
//! warning of the set now in force is logged (WARN) and audited as `policy_warning`, as
//! at start-up ([`report_warnings`]). With `[roles]` declared, a route naming another
//! role makes the set invalid (see [`super::roles`]).
//!
//! This module knows the policy, the configuration and the audit trail, nothing of the
//! request pipeline: whoever keeps state per route is told of each new set through the
//! callback [`reload`] takes.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{PolicySet, Route};
use crate::audit::{Audit, Event, EventKind};
use crate::config::Config;
use crate::source::SourceError;

/// How long the directory must be quiet before a reload: editors write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// The names and contents of the `*.toml` files of a directory: equal fingerprints mean
/// a reload would load exactly what is in force.
pub fn fingerprint_dir(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    super::file::policy_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

/// What a reload changed, by route name (or `file:line` for unnamed routes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub routes: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} routes; added [{}]; removed [{}]; changed [{}]",
            self.routes,
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// The parts of a route that decide anything (not its place in the file).
fn fingerprint(r: &Route) -> String {
    format!(
        "{:?}|{}|{}|{:?}|{:?}|{}|{:?}|{}|{}|{}",
        r.methods, r.path, r.public, r.roles, r.owner, r.mfa, r.rate_limit, r.upstream, r.enforce, r.audit
    )
}

fn by_name(set: &PolicySet) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &set.routes {
        map.entry(r.name.clone()).or_default().push(fingerprint(r));
    }
    map
}

/// Compares two policy sets route by route.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Summary {
    let (old, new_map) = (by_name(old), by_name(new));
    let mut s = Summary {
        routes: new.routes.len(),
        ..Summary::default()
    };
    for (name, fp) in &new_map {
        match old.get(name) {
            None => s.added.push(name.clone()),
            Some(o) if o != fp => s.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    s.removed = old.keys().filter(|k| !new_map.contains_key(*k)).cloned().collect();
    s
}

/// Re-reads the policies directory. A valid set replaces the one in `policy` in one
/// atomic swap, and `swapped` is then told of it (before the audit record is written);
/// an invalid one changes nothing. Both outcomes are audited. `one_at_a_time` is held
/// for the whole reload, so an older read can never be swapped in after a newer one.
pub async fn reload(
    policy: &ArcSwap<PolicySet>,
    config: &Config,
    audit: &Audit,
    one_at_a_time: &tokio::sync::Mutex<()>,
    swapped: impl FnOnce(&PolicySet),
) -> Result<Summary, Vec<SourceError>> {
    let _one = one_at_a_time.lock().await;
    let dir = &config.server.policies;
    let before = fingerprint_dir(dir);
    let loaded = PolicySet::load_dir(dir, config);
    if fingerprint_dir(dir) != before {
        // Files changed while being read: what was read may be half of an edit. The
        // change has raised another reload; this one swaps nothing.
        tracing::info!("policy files changed during a reload; waiting for the next one");
        return Err(vec![SourceError::whole_file(dir, "files changed during the reload")]);
    }
    match loaded {
        Ok(new) => {
            let summary = diff(&policy.load(), &new);
            policy.store(Arc::new(new));
            swapped(&policy.load());
            tracing::info!(%summary, "policy reloaded");
            let mut ev = Event::new(EventKind::PolicyReload);
            ev.reason = Some(summary.to_string());
            audit.durable(ev).await;
            report_warnings(&policy.load(), audit).await;
            Ok(summary)
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "policy reload refused; the previous policy stays in force");
            }
            let mut ev = Event::new(EventKind::PolicyReloadFailed);
            let text: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
            ev.reason = Some(format!(
                "{} error(s), previous policy kept: {}",
                errors.len(),
                text.join("; ")
            ));
            audit.durable(ev).await;
            Err(errors)
        }
    }
}

/// Most warnings recorded per load: the policy files are the operator's, but a trail
/// should not grow by thousands of records per edit.
const MAX_WARNINGS: usize = 50;

/// Logs (WARN, one line each) and audits (`policy_warning`) the lint warnings of the
/// policy set in force: at start-up and after each reload. Returns how many there were.
pub async fn report_warnings(set: &PolicySet, audit: &Audit) -> usize {
    // Undeclared roles are errors when `[roles]` is declared, found before a set is
    // accepted; the role lint has nothing to add here.
    let warnings = super::lint::lint(set, &None);
    for w in warnings.iter().take(MAX_WARNINGS) {
        tracing::warn!(file = %w.file.display(), line = w.line, "policy warning: {}", w.message);
        let mut ev = Event::new(EventKind::PolicyWarning);
        ev.reason = Some(w.to_string());
        audit.durable(ev).await;
    }
    if warnings.len() > MAX_WARNINGS {
        tracing::warn!(
            more = warnings.len() - MAX_WARNINGS,
            "more policy warnings; run `portcullis policy check`"
        );
    }
    warnings.len()
}

/// Calls `reload` when a file in `dir` changes (debounced) or on SIGHUP, until `stop`
/// changes. Reads (access events) are ignored, and a change that leaves the files byte
/// for byte as they were is skipped (SIGHUP reloads regardless).
pub async fn watch<T, F, Fut>(dir: PathBuf, mut stop: watch::Receiver<T>, mut reload: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let changed = match res {
            Ok(event) => !matches!(event.kind, notify::EventKind::Access(_)),
            Err(_) => true,
        };
        if changed {
            // A reload already pending covers this change too.
            let _ = tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policies; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policies; reload with SIGHUP");
            None
        }
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut in_force = fingerprint_dir(&dir);
    loop {
        let forced = tokio::select! {
            Some(()) = rx.recv() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the policy");
                true
            }
            _ = stop.changed() => return,
        };
        // Editors write in bursts: wait until the directory is quiet.
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let now = fingerprint_dir(&dir);
        if now == in_force && !forced {
            continue;
        }
        in_force = now;
        reload().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(src: &str) -> PolicySet {
        PolicySet::from_source(Path::new("p.toml"), src, &|_| true).unwrap()
    }

    // The summary names what was added, removed and changed.
    #[test]
    fn summary() {
        let a = set("upstream = \"s\"\n[[route]]\nname = \"a\"\nmethods = [\"GET\"]\npath = \"/a\"\npublic = true\n[[route]]\nname = \"b\"\nmethods = [\"GET\"]\npath = \"/b\"\npublic = true\n");
        let b = set("upstream = \"s\"\n\n[[route]]\nname = \"a\"\nmethods = [\"GET\"]\npath = \"/a\"\nroles = [\"x\"]\n[[route]]\nname = \"c\"\nmethods = [\"GET\"]\npath = \"/c\"\npublic = true\n");
        let s = diff(&a, &b);
        assert_eq!(
            (s.added, s.removed, s.changed),
            (vec!["c".into()], vec!["b".into()], vec!["a".into()])
        );
        assert!(diff(&a, &a).changed.is_empty(), "moving nothing changed something");
    }
}
