//! Sessions (refresh-token families), refresh tokens, revocations (of sessions, of a
//! user's tokens, of single access tokens) and session activity. Every revocation's
//! statement notifies the change feed (`feed`) as it commits.

use super::{db_err, decode, encode, i, u, PgStore};
use crate::store::{RefreshEntry, Result, Session};

impl PgStore {
    pub(super) async fn put_session(&self, s: &Session) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "WITH w AS (INSERT INTO sessions (id, user_id, expires, revoked, data) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, expires = excluded.expires,
                         revoked = excluded.revoked, data = excluded.data
                     RETURNING id, expires, revoked)
                 SELECT pg_notify('portcullis_changes', 's ' || expires || ' ' || id) FROM w WHERE revoked",
                &[&s.id, &s.user_id, &i(s.expires), &s.revoked, &encode(s)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// One conditional `UPDATE`: the row changes only while it holds exactly `old`, so of
    /// concurrent rotations (on any gateway) exactly one swaps.
    pub(super) async fn swap_session(&self, old: &Session, new: &Session) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH w AS (UPDATE sessions SET user_id = $3, expires = $4, revoked = $5, data = $6
                     WHERE id = $1 AND data = $2 RETURNING id, expires, revoked),
                 n AS (SELECT pg_notify('portcullis_changes', 's ' || expires || ' ' || id) FROM w WHERE revoked)
                 SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM n)",
                &[
                    &old.id,
                    &encode(old),
                    &new.user_id,
                    &i(new.expires),
                    &new.revoked,
                    &encode(new),
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    pub(super) async fn session(&self, id: &str) -> Result<Option<Session>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT data FROM sessions WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?;
        row.map(|r| decode("sessions", r.get(0))).transpose()
    }

    pub(super) async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT data FROM sessions WHERE user_id = $1 ORDER BY id", &[&user_id])
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| decode("sessions", r.get(0))).collect()
    }

    pub(super) async fn put_refresh(&self, token_hash: &str, e: &RefreshEntry) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO refresh (hash, session_id, expires, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (hash) DO UPDATE SET session_id = excluded.session_id,
                     expires = excluded.expires, data = excluded.data",
                &[&token_hash, &e.session_id, &i(e.expires), &encode(e)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn refresh_entry(&self, token_hash: &str) -> Result<Option<RefreshEntry>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT data FROM refresh WHERE hash = $1", &[&token_hash])
            .await
            .map_err(db_err)?;
        row.map(|r| decode("refresh", r.get(0))).transpose()
    }

    pub(super) async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.times(
            "SELECT id, expires FROM sessions WHERE revoked AND expires > $1 ORDER BY id",
            now,
        )
        .await
    }

    /// A later revocation time wins: a revocation is never undone by an older one.
    pub(super) async fn revoke_user_tokens(&self, user_id: &str, after: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "WITH w AS (INSERT INTO revoked_users AS r (user_id, after) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET after = GREATEST(r.after, excluded.after)
                     RETURNING user_id, after)
                 SELECT pg_notify('portcullis_changes', 'u ' || after || ' ' || user_id) FROM w",
                &[&user_id, &i(after)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn revoked_users(&self, since: u64) -> Result<Vec<(String, u64)>> {
        self.times(
            "SELECT user_id, after FROM revoked_users WHERE after > $1 ORDER BY user_id",
            since,
        )
        .await
    }

    pub(super) async fn revoke_jti(&self, jti: &str, exp: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "WITH w AS (INSERT INTO revoked_jtis AS r (jti, exp) VALUES ($1, $2)
                     ON CONFLICT (jti) DO UPDATE SET exp = GREATEST(r.exp, excluded.exp)
                     RETURNING jti, exp)
                 SELECT pg_notify('portcullis_changes', 'j ' || exp || ' ' || jti) FROM w",
                &[&jti, &i(exp)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>> {
        self.times("SELECT jti, exp FROM revoked_jtis WHERE exp > $1 ORDER BY jti", now)
            .await
    }

    /// Rows of (text, bigint) from `sql` with one bigint parameter.
    async fn times(&self, sql: &str, param: u64) -> Result<Vec<(String, u64)>> {
        let client = self.client().await?;
        let rows = client.query(sql, &[&i(param)]).await.map_err(db_err)?;
        Ok(rows.iter().map(|r| (r.get(0), u(r.get(1)))).collect())
    }

    // --- idle sessions ---------------------------------------------------------------

    /// One statement for the batch; a stored time never moves back.
    pub(super) async fn put_activity(&self, times: &[(String, u64)]) -> Result<()> {
        if times.is_empty() {
            return Ok(());
        }
        // One row per session in a statement (ON CONFLICT touches a row once): the latest.
        let mut latest = std::collections::BTreeMap::<&str, u64>::new();
        for (sid, t) in times {
            let e = latest.entry(sid.as_str()).or_insert(*t);
            *e = (*e).max(*t);
        }
        let ids: Vec<&str> = latest.keys().copied().collect();
        let ts: Vec<i64> = latest.values().map(|t| i(*t)).collect();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO activity AS a (session_id, last_used)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[])
                 ON CONFLICT (session_id) DO UPDATE SET last_used = GREATEST(a.last_used, excluded.last_used)",
                &[&ids, &ts],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(super) async fn activity(&self) -> Result<Vec<(String, u64)>> {
        self.times(
            "SELECT session_id, last_used FROM activity WHERE last_used >= $1 ORDER BY session_id",
            0,
        )
        .await
    }

    pub(super) async fn remove_activity(&self, sid: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM activity WHERE session_id = $1", &[&sid])
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
