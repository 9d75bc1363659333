//! Single-use records: email confirmations, MFA challenges (enrolment included) and
//! password reset tokens. A take is one `DELETE ... RETURNING`: of concurrent takes, on
//! any gateway, exactly one gets the record.

use super::{db_err, decode, encode, i, PgStore};
use crate::store::{Challenge, Confirmation, PasswordReset, Result};

/// The class of the advisory locks that keep one live enrolment per user.
const ENROLMENT_LOCK: i32 = 0x656e_726f;
/// The class of the advisory locks that keep one live reset token per user.
const RESET_LOCK: i32 = 0x7273_6574;

impl PgStore {
    pub(super) async fn put_confirmation(&self, token_hash: &str, c: &Confirmation) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO confirmations (hash, expires_ms, data) VALUES ($1, $2, $3)
                 ON CONFLICT (hash) DO UPDATE SET expires_ms = excluded.expires_ms, data = excluded.data",
                &[&token_hash, &i(c.expires_ms), &encode(c)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn take_confirmation(&self, token_hash: &str) -> Result<Option<Confirmation>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM confirmations WHERE hash = $1 RETURNING data",
                &[&token_hash],
            )
            .await
            .map_err(db_err)?;
        row.map(|r| decode("confirmations", r.get(0))).transpose()
    }

    pub(super) async fn put_challenge(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        let client = self.client().await?;
        self.insert_challenge(&client, token_hash, c, false).await
    }

    async fn insert_challenge<C: deadpool_postgres::GenericClient>(
        &self,
        client: &C,
        token_hash: &str,
        c: &Challenge,
        enrolment: bool,
    ) -> Result<()> {
        client
            .execute(
                "INSERT INTO challenges (hash, user_id, enrolment, expires_ms, data) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (hash) DO UPDATE SET user_id = excluded.user_id, enrolment = excluded.enrolment,
                     expires_ms = excluded.expires_ms, data = excluded.data",
                &[
                    &token_hash,
                    &c.user_id,
                    &enrolment,
                    &i(c.expires_ms),
                    &self.encode_challenge(token_hash, c),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Under a lock on the user's enrolments: the previous ones go and this one is
    /// stored in one transaction, so two concurrent enrolments leave exactly one.
    pub(super) async fn put_enrolment(&self, token_hash: &str, c: &Challenge) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&ENROLMENT_LOCK, &c.user_id],
        )
        .await
        .map_err(db_err)?;
        tx.execute(
            "DELETE FROM challenges WHERE user_id = $1 AND enrolment AND hash <> $2",
            &[&c.user_id, &token_hash],
        )
        .await
        .map_err(db_err)?;
        self.insert_challenge(&tx, token_hash, c, true).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn take_challenge(&self, token_hash: &str) -> Result<Option<Challenge>> {
        let client = self.client().await?;
        let row = client
            .query_opt("DELETE FROM challenges WHERE hash = $1 RETURNING data", &[&token_hash])
            .await
            .map_err(db_err)?;
        row.map(|r| self.decode_challenge(token_hash, r.get(0))).transpose()
    }

    /// Like enrolments: one live reset token per user, under a lock on the user's.
    pub(super) async fn put_reset(&self, token_hash: &str, r: &PasswordReset) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&RESET_LOCK, &r.user_id],
        )
        .await
        .map_err(db_err)?;
        tx.execute(
            "DELETE FROM resets WHERE user_id = $1 AND hash <> $2",
            &[&r.user_id, &token_hash],
        )
        .await
        .map_err(db_err)?;
        tx.execute(
            "INSERT INTO resets (hash, user_id, expires_ms, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET user_id = excluded.user_id,
                 expires_ms = excluded.expires_ms, data = excluded.data",
            &[&token_hash, &r.user_id, &i(r.expires_ms), &encode(r)],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT data FROM resets WHERE hash = $1", &[&token_hash])
            .await
            .map_err(db_err)?;
        row.map(|r| decode("resets", r.get(0))).transpose()
    }

    pub(super) async fn take_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>> {
        let client = self.client().await?;
        let row = client
            .query_opt("DELETE FROM resets WHERE hash = $1 RETURNING data", &[&token_hash])
            .await
            .map_err(db_err)?;
        row.map(|r| decode("resets", r.get(0))).transpose()
    }

    /// One fixed row, its value replaced each time: nothing grows.
    pub(super) async fn touch_reset_decoy(&self, now_ms: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('reset_decoy', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&now_ms.to_string()],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
