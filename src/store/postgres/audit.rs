//! The one audit chain of every gateway: records and signed checkpoints, keyed by
//! sequence number. An append holds a transaction-scoped advisory lock from reading the
//! chain's head to the commit of its batch, so appends from two gateways never
//! interleave or fork the chain.

use super::{db_err, i, u, PgStore};
use crate::store::backend::ChainFrom;
use crate::store::Result;

/// The advisory lock that makes the audit chain one ("audit").
const AUDIT_LOCK: i64 = 0x0061_7564_6974;

impl PgStore {
    pub(super) async fn audit_append(&self, chain: ChainFrom<'_>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
            .await
            .map_err(db_err)?;
        let head = tx
            .query_opt("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(db_err)?
            .map(|r| (u(r.get(0)), r.get::<_, Vec<u8>>(1)));
        let records = chain(head);
        if records.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = records.iter().map(|(s, _)| i(*s)).collect();
        let bytes: Vec<&[u8]> = records.iter().map(|(_, b)| b.as_slice()).collect();
        tx.execute(
            "INSERT INTO audit (seq, record) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
            &[&seqs, &bytes],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.seq_last("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1")
            .await
    }

    pub(super) async fn audit_get(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT record FROM audit WHERE seq = $1", &[&i(seq)])
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) async fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.seq_range(
            "SELECT seq, record FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
            from,
            limit,
        )
        .await
    }

    pub(super) async fn audit_remove_before(&self, seq: u64) -> Result<usize> {
        self.seq_remove("DELETE FROM audit WHERE seq < $1", seq).await
    }

    pub(super) async fn audit_overwrite(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit (seq, record) VALUES ($1, $2)
                 ON CONFLICT (seq) DO UPDATE SET record = excluded.record",
                &[&i(seq), &bytes],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn checkpoint_put(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit_checkpoints (seq, record) VALUES ($1, $2)
                 ON CONFLICT (seq) DO UPDATE SET record = excluded.record",
                &[&i(seq), &bytes],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn checkpoint_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.seq_last("SELECT seq, record FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .await
    }

    pub(super) async fn checkpoint_range(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.seq_range(
            "SELECT seq, record FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq LIMIT $2",
            from,
            limit,
        )
        .await
    }

    pub(super) async fn checkpoint_remove_before(&self, seq: u64) -> Result<usize> {
        self.seq_remove("DELETE FROM audit_checkpoints WHERE seq < $1", seq)
            .await
    }

    async fn seq_last(&self, sql: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let client = self.client().await?;
        let row = client.query_opt(sql, &[]).await.map_err(db_err)?;
        Ok(row.map(|r| (u(r.get(0)), r.get(1))))
    }

    async fn seq_range(&self, sql: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client.query(sql, &[&i(from), &limit]).await.map_err(db_err)?;
        Ok(rows.iter().map(|r| (u(r.get(0)), r.get(1))).collect())
    }

    async fn seq_remove(&self, sql: &str, seq: u64) -> Result<usize> {
        let client = self.client().await?;
        let n = client.execute(sql, &[&i(seq)]).await.map_err(db_err)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
