//! Upkeep: pruning what has run out, a bounded batch of each kind at a time; the record
//! counts; the readiness probe.

use super::{db_err, i, u, PgStore};
use crate::store::{Counts, Pruned, Result};

/// The most expired records of each kind one prune removes; the rest go next time.
pub const PRUNE_BATCH: usize = 20_000;

/// One pruning statement per kind: `$1` is the cut-off, `$2` the batch size. Each
/// outer `DELETE` checks the cut-off again, so a record renewed meanwhile stays.
const PRUNE: &[&str] = &[
    "DELETE FROM confirmations WHERE hash IN
        (SELECT hash FROM confirmations WHERE expires_ms <= $1 LIMIT $2) AND expires_ms <= $1",
    "DELETE FROM challenges WHERE hash IN
        (SELECT hash FROM challenges WHERE expires_ms <= $1 LIMIT $2) AND expires_ms <= $1",
    "WITH gone AS (DELETE FROM sessions WHERE id IN
        (SELECT id FROM sessions WHERE expires <= $1::bigint / 1000 LIMIT $2) AND expires <= $1::bigint / 1000 RETURNING id),
     idle AS (DELETE FROM activity WHERE session_id IN (SELECT id FROM gone))
     SELECT count(*) FROM gone",
    "DELETE FROM refresh WHERE hash IN
        (SELECT hash FROM refresh WHERE expires <= $1::bigint / 1000 LIMIT $2) AND expires <= $1::bigint / 1000",
    // Accounts never confirmed whose last link has run out; a confirmed one only loses
    // its pending row.
    "WITH due AS (DELETE FROM pending WHERE user_id IN
        (SELECT user_id FROM pending WHERE expires_ms <= $1 LIMIT $2) AND expires_ms <= $1 RETURNING user_id),
     gone AS (DELETE FROM users WHERE id IN (SELECT user_id FROM due)
        AND NOT (data::jsonb ->> 'confirmed')::boolean RETURNING id)
     SELECT count(*) FROM gone",
    "DELETE FROM resets WHERE hash IN
        (SELECT hash FROM resets WHERE expires_ms <= $1 LIMIT $2) AND expires_ms <= $1",
    "DELETE FROM revoked_jtis WHERE jti IN
        (SELECT jti FROM revoked_jtis WHERE exp <= $1::bigint / 1000 LIMIT $2) AND exp <= $1::bigint / 1000",
];

impl PgStore {
    pub(super) async fn prune(&self, now_ms: u64, failure_window_ms: u64) -> Result<Pruned> {
        let client = self.client().await?;
        let (now, batch) = (i(now_ms), i(PRUNE_BATCH as u64));
        let mut n = [0usize; 7];
        for (slot, sql) in n.iter_mut().zip(PRUNE) {
            let removed = if sql.starts_with("WITH") {
                let row = client.query_one(*sql, &[&now, &batch]).await.map_err(db_err)?;
                u(row.get(0))
            } else {
                client.execute(*sql, &[&now, &batch]).await.map_err(db_err)?
            };
            *slot = usize::try_from(removed).unwrap_or(usize::MAX);
        }
        // Counts that neither lock nor fall in the window any more.
        let stale = i(now_ms.saturating_sub(failure_window_ms));
        let failures = client
            .execute(
                "DELETE FROM failures WHERE email IN
                    (SELECT email FROM failures WHERE last_ms <= $2 AND locked_until_ms <= $1 LIMIT $3)
                 AND last_ms <= $2 AND locked_until_ms <= $1",
                &[&now, &stale, &batch],
            )
            .await
            .map_err(db_err)?;
        drop(client);
        self.prune_budgets(now_ms, batch).await?;
        let [confirmations, challenges, sessions, refresh, pending_users, resets, _jtis] = n;
        Ok(Pruned {
            confirmations,
            challenges,
            sessions,
            refresh,
            pending_users,
            failures: usize::try_from(failures).unwrap_or(usize::MAX),
            resets,
        })
    }

    pub(super) async fn counts(&self) -> Result<Counts> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM confirmations),
                        (SELECT count(*) FROM challenges), (SELECT count(*) FROM sessions),
                        (SELECT count(*) FROM refresh), (SELECT count(*) FROM failures),
                        (SELECT count(*) FROM resets)",
                &[],
            )
            .await
            .map_err(db_err)?;
        let n = |k: usize| usize::try_from(row.get::<_, i64>(k)).unwrap_or(0);
        Ok(Counts {
            users: n(0),
            confirmations: n(1),
            challenges: n(2),
            sessions: n(3),
            refresh: n(4),
            failures: n(5),
            resets: n(6),
        })
    }

    /// Writes a row of its own and reads it back in one statement, committed.
    pub(super) async fn probe(&self, now_ms: u64) -> Result<()> {
        let client = self.client().await?;
        let value = now_ms.to_string();
        let row = client
            .query_one(
                "INSERT INTO meta (key, value) VALUES ('readiness_probe', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value RETURNING value",
                &[&value],
            )
            .await
            .map_err(db_err)?;
        if row.get::<_, String>(0) != value {
            return Err(crate::store::StoreError::Unavailable(
                "the readiness probe read back something else".into(),
            ));
        }
        Ok(())
    }
}

impl PgStore {
    /// Every write is durable at its commit: nothing to do.
    pub(super) async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
