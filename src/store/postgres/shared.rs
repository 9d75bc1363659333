//! What every gateway shares besides records: the signing keys (sealed with the secret
//! key, the first gateway's key wins), rate budgets (GCRA in one statement on an
//! unlogged table) and the mail spool (claimed with `FOR UPDATE SKIP LOCKED` and a
//! lease, so exactly one gateway sends each message).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{db_err, i, u, PgStore};
use crate::store::backend::{Budget, ClaimedMail};
use crate::store::{Result, StoreError};

/// The associated data a signing key is sealed with: its name, so a key moved to
/// another name does not open.
fn key_aad(name: &str) -> Vec<u8> {
    format!("signing_key:{name}").into_bytes()
}

impl PgStore {
    pub(super) async fn signing_key(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT sealed FROM signing_keys WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        row.map(|r| self.open_key(name, r.get(0))).transpose()
    }

    pub(super) async fn put_signing_key_if_absent(&self, name: &str, pkcs8: &[u8]) -> Result<Vec<u8>> {
        let client = self.client().await?;
        let sealed = self.sealer.seal(&key_aad(name), &STANDARD.encode(pkcs8));
        client
            .execute(
                "INSERT INTO signing_keys (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &sealed],
            )
            .await
            .map_err(db_err)?;
        let row = client
            .query_one("SELECT sealed FROM signing_keys WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        self.open_key(name, row.get(0))
    }

    fn open_key(&self, name: &str, sealed: &str) -> Result<Vec<u8>> {
        let refused = || {
            tracing::error!(key = %name, "a shared signing key does not open: wrong key, or the record was altered");
            StoreError::Sealed {
                tree: "signing_keys",
                id: name.to_owned(),
            }
        };
        let text = self.sealer.open(&key_aad(name), sealed).map_err(|_| refused())?;
        STANDARD.decode(text).map_err(|_| refused())
    }

    /// GCRA: the budget's theoretical arrival time moves on by `interval` per request
    /// and may run at most `interval * burst` ahead of now, all in microseconds. The
    /// upsert's `WHERE` refuses under the row's lock, so concurrent takes from every
    /// gateway are exact.
    pub(super) async fn rate_take(&self, key: &str, interval_us: u64, burst: u32, now_us: u64) -> Result<Budget> {
        let client = self.client().await?;
        let (now, interval) = (i(now_us), i(interval_us.max(1)));
        let limit = i(interval_us.max(1).saturating_mul(u64::from(burst.max(1))));
        let taken = client
            .query_opt(
                "INSERT INTO rate_budgets_us AS r (key, tat_us) VALUES ($1, $2::bigint + $3::bigint)
                 ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(r.tat_us, $2::bigint) + $3::bigint
                 WHERE GREATEST(r.tat_us, $2::bigint) + $3::bigint - $2::bigint <= $4::bigint
                 RETURNING tat_us",
                &[&key, &now, &interval, &limit],
            )
            .await
            .map_err(db_err)?;
        if let Some(row) = taken {
            // The theoretical arrival time now runs `ahead` of the clock: what is left of
            // the budget is what still fits before `limit`.
            let ahead = u(row.get::<_, i64>(0).saturating_sub(now));
            let remaining = u(limit).saturating_sub(ahead) / u(interval);
            return Ok(Budget::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_us: ahead,
            });
        }
        let tat: i64 = client
            .query_opt("SELECT tat_us FROM rate_budgets_us WHERE key = $1", &[&key])
            .await
            .map_err(db_err)?
            .map_or(now, |r| r.get(0));
        let retry_after_us = u(tat.saturating_add(interval).saturating_sub(now).saturating_sub(limit)).max(1);
        Ok(Budget::Refused { retry_after_us })
    }

    /// Budgets that have filled up again are forgotten (part of prune).
    pub(super) async fn prune_budgets(&self, now_ms: u64, batch: i64) -> Result<u64> {
        let client = self.client().await?;
        let now_us = i(now_ms.saturating_mul(1000));
        client
            .execute(
                "DELETE FROM rate_budgets_us WHERE key IN
                    (SELECT key FROM rate_budgets_us WHERE tat_us <= $1 LIMIT $2) AND tat_us <= $1",
                &[&now_us, &batch],
            )
            .await
            .map_err(db_err)
    }

    /// The count and the insert in one statement under a lock on the spool, so the
    /// bound holds across gateways.
    pub(super) async fn mail_put(&self, id: &str, message: &[u8], max: usize, now_ms: u64) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute("LOCK TABLE mail_spool IN SHARE ROW EXCLUSIVE MODE", &[])
            .await
            .map_err(db_err)?;
        let put = tx
            .execute(
                "INSERT INTO mail_spool (id, message, due_ms, created_ms)
                 SELECT $1, $2, $3, $3 WHERE (SELECT count(*) FROM mail_spool) < $4
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &message, &i(now_ms), &i(max as u64)],
            )
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(put == 1)
    }

    /// `FOR UPDATE SKIP LOCKED`: concurrent claimers never wait for nor get one another's
    /// messages; the lease (`due_ms` moved on) keeps them from the next claims.
    pub(super) async fn mail_claim(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<ClaimedMail>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE mail_spool SET due_ms = $2, attempts = attempts + 1 WHERE id IN
                    (SELECT id FROM mail_spool WHERE due_ms <= $1 ORDER BY due_ms
                     LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, message, attempts - 1",
                &[
                    &i(now_ms),
                    &i(now_ms.saturating_add(lease_ms)),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| ClaimedMail {
                id: r.get(0),
                message: r.get(1),
                attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            })
            .collect())
    }

    pub(super) async fn mail_done(&self, id: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM mail_spool WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn mail_retry(&self, id: &str, at_ms: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("UPDATE mail_spool SET due_ms = $2 WHERE id = $1", &[&id, &i(at_ms)])
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
