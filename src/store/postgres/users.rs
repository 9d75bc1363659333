//! Accounts, pending (unconfirmed) accounts and login failures (lockout).

use tokio_postgres::error::SqlState;

use super::{db_err, i, u, PgStore};
use crate::store::backend::UserChange;
use crate::store::{Failures, Result, StoreError, User};

impl PgStore {
    /// One statement: the email's unique index makes two concurrent creations with one
    /// address end with exactly one account.
    pub(super) async fn create_user(&self, user: &User) -> Result<()> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO users (id, email, data) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING",
                &[&user.id, &user.email, &self.encode_user(user)],
            )
            .await
            .map_err(db_err)?;
        if inserted == 0 {
            return Err(StoreError::EmailTaken);
        }
        Ok(())
    }

    pub(super) async fn user(&self, id: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT data FROM users WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?;
        row.map(|r| self.decode_user(r.get(0))).transpose()
    }

    pub(super) async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT data FROM users WHERE email = $1", &[&email])
            .await
            .map_err(db_err)?;
        row.map(|r| self.decode_user(r.get(0))).transpose()
    }

    pub(super) async fn put_user(&self, user: &User) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO users (id, email, data) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                &[&user.id, &user.email, &self.encode_user(user)],
            )
            .await
            .map_err(|e| match e.code() {
                Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::EmailTaken,
                _ => db_err(e),
            })?;
        Ok(())
    }

    /// Under the row's lock (`FOR UPDATE`) for the whole change: a concurrent change, on
    /// this gateway or another, waits and then sees this one's result.
    pub(super) async fn try_update_user(&self, id: &str, change: UserChange<'_>) -> Result<Option<User>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let row = tx
            .query_opt("SELECT data FROM users WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NoSuchUser)?;
        let mut user = self.decode_user(row.get(0))?;
        if !change(&mut user) {
            return Ok(None);
        }
        tx.execute(
            "UPDATE users SET data = $2 WHERE id = $1",
            &[&id, &self.encode_user(&user)],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(user))
    }

    pub(super) async fn users(&self) -> Result<Vec<User>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT data FROM users ORDER BY id", &[])
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| self.decode_user(r.get(0))).collect()
    }

    pub(super) async fn put_pending(&self, user_id: &str, expires_ms: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO pending (user_id, expires_ms) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET expires_ms = excluded.expires_ms",
                &[&user_id, &i(expires_ms)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn clear_pending(&self, user_id: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM pending WHERE user_id = $1", &[&user_id])
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // --- login failures -------------------------------------------------------------

    pub(super) async fn failures(&self, email: &str) -> Result<Failures> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT n, locked_until_ms, last_ms FROM failures WHERE email = $1",
                &[&email],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| failures_of(&r)).unwrap_or_default())
    }

    /// The upsert takes the row's lock and returns what it holds; the new count is
    /// written before the lock goes: N concurrent failures from any number of gateways
    /// count N.
    pub(super) async fn record_failure(
        &self,
        email: &str,
        max: u32,
        lockout_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Failures> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let row = tx
            .query_one(
                "INSERT INTO failures AS f (email, n, locked_until_ms, last_ms) VALUES ($1, 0, 0, 0)
                 ON CONFLICT (email) DO UPDATE SET n = f.n
                 RETURNING n, locked_until_ms, last_ms",
                &[&email],
            )
            .await
            .map_err(db_err)?;
        let f = failures_of(&row).after_failure(max, lockout_ms, window_ms, now_ms);
        tx.execute(
            "UPDATE failures SET n = $2, locked_until_ms = $3, last_ms = $4 WHERE email = $1",
            &[
                &email,
                &i32::try_from(f.count).unwrap_or(i32::MAX),
                &i(f.locked_until_ms),
                &i(f.last_ms),
            ],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(f)
    }

    pub(super) async fn clear_failures(&self, email: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM failures WHERE email = $1", &[&email])
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn failures_of(row: &tokio_postgres::Row) -> Failures {
    Failures {
        count: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
        locked_until_ms: u(row.get(1)),
        last_ms: u(row.get(2)),
    }
}
