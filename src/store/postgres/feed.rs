//! The change feed: revocations reach every gateway through LISTEN/NOTIFY. Each
//! revocation's statement calls `pg_notify` in its own transaction, so a notification
//! goes out exactly when the revocation commits. One dedicated connection per store
//! listens (started by the first [`subscribe`](crate::store::backend::Backend::subscribe)),
//! reconnects with backoff when it is lost, and after every (re)connection publishes
//! [`Change::Resync`]: what was revoked while it was away is in the tables, not in the
//! feed, so subscribers reload before they trust their caches again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::backend::Change;

/// The channel every revocation is notified on.
pub(super) const CHANNEL: &str = "portcullis_changes";

/// How many changes a slow subscriber may fall behind before it must resync.
const BACKLOG: usize = 4096;
/// How often the listening connection is checked, and how long the check may take.
const PING: Duration = Duration::from_secs(5);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The feed of one store: started on first use, stopped when the store goes.
pub(super) struct Feed {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    running: Mutex<Option<(broadcast::Sender<Change>, JoinHandle<()>)>>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Feed {
    pub(super) fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> Arc<Self> {
        Arc::new(Self {
            config,
            tls,
            running: Mutex::new(None),
        })
    }

    /// A receiver of every change from now on; starts the listener on the current
    /// runtime the first time (`None` outside a runtime).
    pub(super) fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tx, _)) = running.as_ref() {
            return Some(tx.subscribe());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = broadcast::channel(BACKLOG);
        let task = runtime.spawn(listen(self.config.clone(), self.tls.clone(), tx.clone()));
        *running = Some((tx, task));
        Some(rx)
    }
}

/// Listens for ever: connect, LISTEN, publish `Resync`, forward notifications until the
/// connection is lost, back off, again.
async fn listen(config: tokio_postgres::Config, tls: MakeRustlsConnect, tx: broadcast::Sender<Change>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (notes, mut incoming) = mpsc::unbounded_channel();
                // The connection delivers notifications only while it is polled.
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if notes.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    let _ = tx.send(Change::Resync);
                    let mut ping = tokio::time::interval(PING);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            note = incoming.recv() => match note {
                                Some(payload) => {
                                    if let Some(change) = parse(&payload) {
                                        let _ = tx.send(change);
                                    }
                                }
                                None => break,
                            },
                            _ = ping.tick() => {
                                let alive = tokio::time::timeout(PING, client.simple_query("")).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!("the database's change feed was lost; reconnecting");
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "the database's change feed cannot connect; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A notification's payload: `s EXPIRES ID`, `u AFTER ID` or `j EXP JTI`.
fn parse(payload: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ' ');
    let (kind, time, id) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?.to_owned());
    Some(match kind {
        "s" => Change::Session { id, expires: time },
        "u" => Change::User { id, after: time },
        "j" => Change::Jti { jti: id, exp: time },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            parse("s 12 s-1"),
            Some(Change::Session {
                id: "s-1".into(),
                expires: 12
            })
        );
        assert_eq!(
            parse("u 5 u-a b"),
            Some(Change::User {
                id: "u-a b".into(),
                after: 5
            })
        );
        assert_eq!(
            parse("j 7 abc"),
            Some(Change::Jti {
                jti: "abc".into(),
                exp: 7
            })
        );
        assert_eq!(parse("x 1 y"), None);
        assert_eq!(parse("s nope y"), None);
        assert_eq!(parse("s 1"), None);
    }
}
