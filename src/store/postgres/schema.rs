//! The schema, as versioned migrations: each runs once, in order, recorded in
//! `portcullis_schema`. Every gateway runs them at start-up under one advisory lock, in
//! one transaction, so several gateways starting at once neither race nor half-migrate.

use tokio_postgres::Client;

use super::{db_err, PgError};
use crate::store::{Result, StoreError};

/// The advisory lock every migration runs under (any fixed number: "portcull").
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c;

/// The migrations, oldest first: version `n` is `MIGRATIONS[n - 1]`. Never edit one
/// that has shipped; add the next.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: every record of the gateway.
    r"
CREATE TABLE users (id text PRIMARY KEY, email text NOT NULL UNIQUE, data text NOT NULL);
CREATE TABLE pending (user_id text PRIMARY KEY, expires_ms bigint NOT NULL);
CREATE INDEX pending_expires ON pending (expires_ms);
CREATE TABLE failures (email text PRIMARY KEY, n integer NOT NULL,
    locked_until_ms bigint NOT NULL, last_ms bigint NOT NULL);
CREATE INDEX failures_last ON failures (last_ms);
CREATE TABLE confirmations (hash text PRIMARY KEY, expires_ms bigint NOT NULL, data text NOT NULL);
CREATE INDEX confirmations_expires ON confirmations (expires_ms);
CREATE TABLE challenges (hash text PRIMARY KEY, user_id text NOT NULL, enrolment boolean NOT NULL,
    expires_ms bigint NOT NULL, data text NOT NULL);
CREATE INDEX challenges_expires ON challenges (expires_ms);
CREATE INDEX challenges_enrolment ON challenges (user_id) WHERE enrolment;
CREATE TABLE resets (hash text PRIMARY KEY, user_id text NOT NULL, expires_ms bigint NOT NULL,
    data text NOT NULL);
CREATE INDEX resets_expires ON resets (expires_ms);
CREATE INDEX resets_user ON resets (user_id);
CREATE TABLE sessions (id text PRIMARY KEY, user_id text NOT NULL, expires bigint NOT NULL,
    revoked boolean NOT NULL, data text NOT NULL);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires);
CREATE INDEX sessions_revoked ON sessions (expires) WHERE revoked;
CREATE TABLE refresh (hash text PRIMARY KEY, session_id text NOT NULL, expires bigint NOT NULL,
    data text NOT NULL);
CREATE INDEX refresh_expires ON refresh (expires);
CREATE TABLE revoked_users (user_id text PRIMARY KEY, after bigint NOT NULL);
CREATE TABLE revoked_jtis (jti text PRIMARY KEY, exp bigint NOT NULL);
CREATE INDEX revoked_jtis_exp ON revoked_jtis (exp);
CREATE TABLE activity (session_id text PRIMARY KEY, last_used bigint NOT NULL);
CREATE TABLE audit (seq bigint PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE audit_checkpoints (seq bigint PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
",
    // 2: what every gateway shares besides records: signing keys (sealed), rate budgets
    // (unlogged: a crash forgets them, which only refills them), the mail spool.
    r"
CREATE TABLE signing_keys (name text PRIMARY KEY, sealed text NOT NULL);
CREATE UNLOGGED TABLE rate_budgets (key text PRIMARY KEY, tat bigint NOT NULL);
CREATE INDEX rate_budgets_tat ON rate_budgets (tat);
CREATE TABLE mail_spool (id text PRIMARY KEY, message bytea NOT NULL, due_ms bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0, created_ms bigint NOT NULL);
CREATE INDEX mail_spool_due ON mail_spool (due_ms);
",
    // 3: rate budgets in microseconds, so a rate above 1,000 a second keeps its
    // interval (in milliseconds it was floored at one). A new table, not the old one
    // converted: a gateway of the previous version still running during the upgrade
    // keeps its own budgets in `rate_budgets` and never reads a microsecond as a
    // millisecond.
    r"
CREATE UNLOGGED TABLE rate_budgets_us (key text PRIMARY KEY, tat_us bigint NOT NULL);
CREATE INDEX rate_budgets_us_tat ON rate_budgets_us (tat_us);
",
];

/// Brings the schema up to date; returns the versions applied by this call.
pub(super) async fn migrate(client: &mut Client) -> Result<Vec<u32>> {
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS portcullis_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_err)?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM portcullis_schema", &[])
        .await
        .map_err(db_err)?;
    let current: i32 = row.get(0);
    if current > MIGRATIONS.len() as i32 {
        // A newer gateway migrated it: this one does not know what the schema means now.
        return Err(StoreError::Database(PgError::new(format!(
            "the database schema is at version {current}, newer than this gateway's {}: upgrade the gateway",
            MIGRATIONS.len()
        ))));
    }
    let mut applied = Vec::new();
    for (n, sql) in MIGRATIONS.iter().enumerate() {
        let version = n as i32 + 1;
        if version <= current {
            continue;
        }
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute("INSERT INTO portcullis_schema (version) VALUES ($1)", &[&version])
            .await
            .map_err(db_err)?;
        applied.push(version as u32);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(applied)
}
