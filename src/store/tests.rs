//! The store's behaviour, through its public API only (any backend must pass these).

use super::*;

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: "N".into(),
        password_hash: "x".into(),
        roles: vec!["customer".into()],
        confirmed: false,
        disabled: false,
        totp_secret: None,
        totp_last_step: 0,
        recovery_codes: Vec::new(),
        tokens_valid_after: 0,
        created_at: 0,
        attributes: Default::default(),
    }
}

// An email is unique across accounts.
#[tokio::test]
async fn email_unique() {
    let s = Store::temporary().unwrap();
    s.create_user(&user("u-1", "a@example.com")).await.unwrap();
    assert!(matches!(
        s.create_user(&user("u-2", "a@example.com")).await,
        Err(StoreError::EmailTaken)
    ));
    assert_eq!(s.user_by_email("a@example.com").await.unwrap().unwrap().id, "u-1");
}

// Confirmations and challenges are single use.
#[tokio::test]
async fn single_use() {
    let s = Store::temporary().unwrap();
    s.put_challenge(
        "h",
        &Challenge {
            user_id: "u".into(),
            expires_ms: 1,
            pending_secret: None,
            password_hash: None,
        },
    )
    .await
    .unwrap();
    assert!(s.take_challenge("h").await.unwrap().is_some());
    assert!(s.take_challenge("h").await.unwrap().is_none());
}

// The max-th failure locks until the lockout passes; then the count starts afresh.
#[tokio::test]
async fn failures_lock() {
    let s = Store::temporary().unwrap();
    for _ in 0..4 {
        s.record_failure("a@b", 5, 1000, 1000, 0).await.unwrap();
    }
    assert_eq!(s.locked_until("a@b", 0).await.unwrap(), None);
    s.record_failure("a@b", 5, 1000, 1000, 0).await.unwrap();
    assert_eq!(s.locked_until("a@b", 10).await.unwrap(), Some(1000));
    assert_eq!(s.locked_until("a@b", 1000).await.unwrap(), None, "the lock expires");
    assert_eq!(s.record_failure("a@b", 5, 1000, 1000, 1000).await.unwrap().count, 1);
}

// Failures older than the window are forgotten, by the count and by the sweep.
#[tokio::test]
async fn failures_window() {
    let s = Store::temporary().unwrap();
    for t in [0, 100, 200, 300] {
        s.record_failure("a@b", 5, 1000, 500, t).await.unwrap();
    }
    assert_eq!(s.record_failure("a@b", 5, 1000, 500, 800).await.unwrap().count, 1);
    s.record_failure("x@y", 5, 1000, 500, 800).await.unwrap();
    assert_eq!(s.prune(1299, 500).await.unwrap().failures, 0, "inside the window");
    assert_eq!(s.prune(1300, 500).await.unwrap().failures, 2);
    assert_eq!(s.counts().await.unwrap().failures, 0);
    // A lock outlives the window.
    for _ in 0..5 {
        s.record_failure("l@m", 5, 10_000, 500, 2000).await.unwrap();
    }
    assert_eq!(s.prune(3000, 500).await.unwrap().failures, 0);
    assert_eq!(s.locked_until("l@m", 3000).await.unwrap(), Some(12_000));
}

fn session(id: &str, user: &str, expires: u64) -> Session {
    Session {
        id: id.into(),
        user_id: user.into(),
        current_refresh: format!("r-{id}"),
        amr: vec![],
        created: 0,
        auth_time: 0,
        expires,
        revoked: false,
    }
}

// A user's sessions are found through the index; expired ones are pruned with it.
#[tokio::test]
async fn sessions_indexed_and_pruned() {
    let s = Store::temporary().unwrap();
    s.put_session(&session("s-1", "u-1", 10)).await.unwrap();
    s.put_session(&session("s-2", "u-1", 20)).await.unwrap();
    s.put_session(&session("s-3", "u-10", 20)).await.unwrap();
    let mut mine: Vec<String> = s.sessions_of("u-1").await.unwrap().into_iter().map(|x| x.id).collect();
    mine.sort();
    assert_eq!(mine, ["s-1", "s-2"]);
    let mut revoked = session("s-2", "u-1", 20);
    revoked.revoked = true;
    s.put_session(&revoked).await.unwrap();
    assert_eq!(s.revoked_sessions(0).await.unwrap(), vec![("s-2".to_owned(), 20)]);
    assert_eq!(s.prune(10_000, 0).await.unwrap().sessions, 1);
    assert_eq!(s.sessions_of("u-1").await.unwrap().len(), 1);
    assert_eq!(s.prune(20_000, 0).await.unwrap().sessions, 2);
    assert!(s.sessions_of("u-1").await.unwrap().is_empty());
    assert!(s.revoked_sessions(0).await.unwrap().is_empty());
    assert_eq!(s.counts().await.unwrap().sessions, 0);
}

// A user holds one enrolment challenge: a new one replaces the one before.
#[tokio::test]
async fn one_enrolment_per_user() {
    let s = Store::temporary().unwrap();
    let c = Challenge {
        user_id: "u".into(),
        expires_ms: 100,
        pending_secret: Some("S".into()),
        password_hash: None,
    };
    for h in ["h1", "h2", "h3"] {
        s.put_enrolment(h, &c).await.unwrap();
    }
    assert_eq!(s.counts().await.unwrap().challenges, 1);
    assert!(s.take_challenge("h3").await.unwrap().is_some());
}

// An account never confirmed goes when its latest link has expired, freeing the
// address; a later registration moves that end; a confirmed one stays.
#[tokio::test]
async fn pending_accounts_pruned() {
    let s = Store::temporary().unwrap();
    s.create_user(&user("u-1", "a@example.com")).await.unwrap();
    s.put_pending("u-1", 100).await.unwrap();
    s.put_pending("u-1", 200).await.unwrap();
    s.create_user(&user("u-2", "b@example.com")).await.unwrap();
    s.put_pending("u-2", 100).await.unwrap();
    s.update_user("u-2", |u| u.confirmed = true).await.unwrap();
    assert_eq!(s.prune(150, 0).await.unwrap().pending_users, 0);
    assert!(s.user("u-1").await.unwrap().is_some());
    assert_eq!(s.prune(200, 0).await.unwrap().pending_users, 1);
    assert!(s.user("u-1").await.unwrap().is_none());
    assert!(s.user_by_email("a@example.com").await.unwrap().is_none());
    assert!(s.user("u-2").await.unwrap().is_some());
    s.create_user(&user("u-3", "a@example.com")).await.unwrap();
}

// A change that declines writes nothing; a change is never lost to a concurrent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_updates_atomic() {
    let s = Store::temporary().unwrap();
    s.create_user(&user("u-1", "a@example.com")).await.unwrap();
    assert!(s.try_update_user("u-1", |_| false).await.unwrap().is_none());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    s.update_user("u-1", |u| u.totp_last_step += 1).await.unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.await.unwrap();
    }
    assert_eq!(s.user("u-1").await.unwrap().unwrap().totp_last_step, 200);
}

// Expired revocations are forgotten; live ones are kept.
#[tokio::test]
async fn revoked_jti_expiry() {
    let s = Store::temporary().unwrap();
    s.revoke_jti("old", 10).await.unwrap();
    s.revoke_jti("live", 100).await.unwrap();
    assert_eq!(s.revoked_jtis(50).await.unwrap(), vec![("live".to_owned(), 100)]);
}

// A reset token is single use, a newer one voids the older, and expired ones are pruned
// (with their index entry).
#[tokio::test]
async fn reset_tokens() {
    let s = Store::temporary().unwrap();
    let reset = |expires_ms| PasswordReset {
        user_id: "u-1".into(),
        expires_ms,
        password_hash: "x".into(),
    };
    s.put_reset("h1", &reset(1000)).await.unwrap();
    assert!(s.reset("h1").await.unwrap().is_some(), "looking does not spend it");
    assert!(s.take_reset("h1").await.unwrap().is_some());
    assert!(s.take_reset("h1").await.unwrap().is_none(), "single use");
    s.put_reset("h2", &reset(1000)).await.unwrap();
    s.put_reset("h3", &reset(5000)).await.unwrap();
    assert!(s.reset("h2").await.unwrap().is_none(), "a newer token voids the older");
    assert_eq!(s.counts().await.unwrap().resets, 1);
    assert_eq!(s.prune(2000, 1).await.unwrap().resets, 0);
    assert_eq!(s.prune(6000, 1).await.unwrap().resets, 1);
    assert_eq!(s.counts().await.unwrap().resets, 0);
    s.put_reset("h4", &reset(9000)).await.unwrap();
    assert!(
        s.take_reset("h4").await.unwrap().is_some(),
        "the index let go of the pruned token"
    );
}
