//! The store's contract, as a matrix: each test body is written once against
//! `dyn Backend` and runs on every backend. Each gets two handles on one state, `a` and
//! `b`: for PostgreSQL, two `PgStore`s (two gateways) on one database, so everything
//! atomic is shown to hold across gateways; for an embedded backend, one store twice.
//! After the matrix: what only PostgreSQL has (secrets sealed in its tables, a wrong
//! key, concurrent migrations, an outage and the recovery from it).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::PgCluster;
use portcullis::store::backend::{Backend, Budget, Change};
use portcullis::store::postgres::{PgSettings, PgStore};
use portcullis::store::sealed::SecretKey;
use portcullis::store::{Challenge, Confirmation, PasswordReset, RefreshEntry, Session, StoreError, User};

const KEY: [u8; 32] = [7; 32];
const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const FAR: u64 = 4_000_000_000;

/// Two handles on one state: two gateways of one store.
struct Pair {
    a: Arc<dyn Backend>,
    b: Arc<dyn Backend>,
}

impl Pair {
    /// `a` for even `n`, `b` for odd: work split between the two gateways.
    fn by(&self, n: usize) -> Arc<dyn Backend> {
        if n.is_multiple_of(2) {
            self.a.clone()
        } else {
            self.b.clone()
        }
    }
}

async fn pg_store(url: &str) -> PgStore {
    let mut settings = PgSettings::new(url);
    settings.pool_size = 8;
    PgStore::connect(&settings, SecretKey::from_bytes(&KEY).unwrap())
        .await
        .unwrap()
}

/// Two PostgreSQL gateways on one fresh database.
async fn postgres_pair() -> Pair {
    let url = PgCluster::shared().database().await;
    Pair {
        a: Arc::new(pg_store(&url).await),
        b: Arc::new(pg_store(&url).await),
    }
}

/// The embedded backend: one store, held twice (one gateway owns it).
fn sled_pair() -> Pair {
    let store: Arc<dyn Backend> = portcullis::store::Store::temporary().unwrap().backend().clone();
    Pair {
        a: store.clone(),
        b: store,
    }
}

/// Runs a contract test on every backend.
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::postgres_pair().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sled() {
                super::$name(super::sled_pair()).await
            }
        }
    )*};
}

matrix!(
    create_user_once,
    update_user_concurrent,
    failures_counted_across_gateways,
    single_use_tokens_across_gateways,
    one_live_enrolment_and_reset,
    session_swaps_once,
    revocations,
    audit_chain_across_gateways,
    audit_storage,
    prune,
    activity,
);

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: "N".into(),
        password_hash: "$argon2id$x".into(),
        roles: vec!["staff".into()],
        confirmed: true,
        disabled: false,
        totp_secret: None,
        totp_last_step: 0,
        recovery_codes: vec![],
        tokens_valid_after: 0,
        created_at: 1,
        attributes: Default::default(),
    }
}

fn session(id: &str, user_id: &str, refresh: &str, expires: u64) -> Session {
    Session {
        id: id.into(),
        user_id: user_id.into(),
        current_refresh: refresh.into(),
        amr: vec!["pwd".into()],
        created: 1,
        auth_time: 1,
        expires,
        revoked: false,
    }
}

fn challenge(user_id: &str, expires_ms: u64, secret: Option<&str>) -> Challenge {
    Challenge {
        user_id: user_id.into(),
        expires_ms,
        pending_secret: secret.map(Into::into),
        password_hash: None,
    }
}

/// Runs `n` tasks at once, `f(i)` each, and collects their results in order.
async fn parallel<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

// Eight creations of one email at once, split between two gateways: exactly one
// account, the others EmailTaken; the account reads back by id and by email.
async fn create_user_once(p: Pair) {
    let results = parallel(8, |i| {
        let b = p.by(i);
        async move { b.create_user(&user(&format!("u-{i}"), "ann@example.com")).await }
    })
    .await;
    let won: Vec<usize> = (0..8).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for r in &results {
        assert!(r.is_ok() || matches!(r, Err(StoreError::EmailTaken)), "{r:?}");
    }
    let id = format!("u-{}", won[0]);
    assert_eq!(p.b.user_by_email("ann@example.com").await.unwrap().unwrap().id, id);
    assert_eq!(p.a.user(&id).await.unwrap().unwrap().email, "ann@example.com");
    assert_eq!(p.a.users().await.unwrap().len(), 1);
    assert!(p.a.user("u-none").await.unwrap().is_none());
    let mut changed = p.a.user(&id).await.unwrap().unwrap();
    changed.name = "Ann".into();
    p.b.put_user(&changed).await.unwrap();
    assert_eq!(p.a.user(&id).await.unwrap().unwrap(), changed);
}

// Twenty increments at once from two gateways: none lost. A declined change writes
// nothing; a missing account is NoSuchUser.
async fn update_user_concurrent(p: Pair) {
    p.a.create_user(&user("u-1", "bob@example.com")).await.unwrap();
    parallel(20, |i| {
        let b = p.by(i);
        async move {
            let mut inc = |u: &mut User| {
                u.totp_last_step += 1;
                true
            };
            b.try_update_user("u-1", &mut inc).await.unwrap().unwrap();
        }
    })
    .await;
    assert_eq!(p.b.user("u-1").await.unwrap().unwrap().totp_last_step, 20);
    let mut decline = |u: &mut User| {
        u.name = "changed".into();
        false
    };
    assert!(p.a.try_update_user("u-1", &mut decline).await.unwrap().is_none());
    assert_eq!(p.a.user("u-1").await.unwrap().unwrap().name, "N");
    let mut any = |_: &mut User| true;
    assert!(matches!(
        p.a.try_update_user("u-none", &mut any).await,
        Err(StoreError::NoSuchUser)
    ));
}

// Nine wrong guesses at once, split between two gateways, with max 5: every one
// counted, exactly one reaches the lock, and the four after it count on under the lock.
// A lockout that has passed, and a count older than the window, start afresh.
async fn failures_counted_across_gateways(p: Pair) {
    let now = 1_000_000;
    let results = parallel(9, |i| {
        let b = p.by(i);
        async move {
            b.record_failure("eve@example.com", 5, 60_000, 600_000, now)
                .await
                .unwrap()
        }
    })
    .await;
    let mut counts: Vec<u32> = results.iter().map(|f| f.count).collect();
    counts.sort();
    assert_eq!(counts, [0, 1, 1, 2, 2, 3, 3, 4, 4], "{results:?}");
    let locking: Vec<_> = results
        .iter()
        .filter(|f| f.count == 0 && f.locked_until_ms == now + 60_000)
        .collect();
    assert_eq!(locking.len(), 1, "exactly one failure locks: {results:?}");
    assert_eq!(results.iter().filter(|f| f.locked_until_ms == 0).count(), 4);
    let stored = p.b.failures("eve@example.com").await.unwrap();
    assert_eq!((stored.count, stored.locked_until_ms), (4, now + 60_000));

    let after = now + 60_000;
    let f =
        p.a.record_failure("eve@example.com", 5, 60_000, 600_000, after)
            .await
            .unwrap();
    assert_eq!((f.count, f.locked_until_ms), (1, 0), "a passed lockout starts afresh");
    let later = after + 600_000;
    let f =
        p.b.record_failure("eve@example.com", 5, 60_000, 600_000, later)
            .await
            .unwrap();
    assert_eq!(f.count, 1, "a count older than the window starts afresh");
    p.a.clear_failures("eve@example.com").await.unwrap();
    assert_eq!(p.b.failures("eve@example.com").await.unwrap().count, 0);
}

// Confirmations, challenges and reset tokens: of eight takes at once from two
// gateways, exactly one gets the record. A reset can be looked at without spending it;
// a challenge's pending secret comes back as it went in.
async fn single_use_tokens_across_gateways(p: Pair) {
    let c = Confirmation {
        user_id: "u-1".into(),
        expires_ms: FAR,
        password_hash: None,
    };
    p.a.put_confirmation("conf", &c).await.unwrap();
    let took = parallel(8, |i| {
        let b = p.by(i);
        async move { b.take_confirmation("conf").await.unwrap().is_some() }
    })
    .await;
    assert_eq!(took.iter().filter(|t| **t).count(), 1);

    p.a.put_challenge("chal", &challenge("u-1", FAR, Some(SECRET)))
        .await
        .unwrap();
    let took = parallel(8, |i| {
        let b = p.by(i);
        async move { b.take_challenge("chal").await.unwrap() }
    })
    .await;
    let got: Vec<_> = took.into_iter().flatten().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].pending_secret.as_deref(), Some(SECRET));

    let r = PasswordReset {
        user_id: "u-1".into(),
        expires_ms: FAR,
        password_hash: "h".into(),
    };
    p.a.put_reset("reset", &r).await.unwrap();
    assert!(p.b.reset("reset").await.unwrap().is_some());
    assert!(p.a.reset("reset").await.unwrap().is_some(), "looking does not spend it");
    let took = parallel(8, |i| {
        let b = p.by(i);
        async move { b.take_reset("reset").await.unwrap().is_some() }
    })
    .await;
    assert_eq!(took.iter().filter(|t| **t).count(), 1);
    assert!(p.a.reset("reset").await.unwrap().is_none());
    p.b.touch_reset_decoy(5).await.unwrap();
    p.a.touch_reset_decoy(6).await.unwrap();
}

// A new enrolment removes the user's previous one (not a login challenge); a new reset
// token removes the previous one, even when the two are stored at once on two gateways.
async fn one_live_enrolment_and_reset(p: Pair) {
    p.a.put_challenge("login", &challenge("u-1", FAR, None)).await.unwrap();
    p.a.put_enrolment("e1", &challenge("u-1", FAR, Some(SECRET)))
        .await
        .unwrap();
    p.b.put_enrolment("e2", &challenge("u-1", FAR, Some(SECRET)))
        .await
        .unwrap();
    assert!(p.a.take_challenge("e1").await.unwrap().is_none());
    assert!(p.a.take_challenge("login").await.unwrap().is_some());
    assert!(p.b.take_challenge("e2").await.unwrap().is_some());

    parallel(6, |i| {
        let b = p.by(i);
        async move {
            b.put_enrolment(&format!("en{i}"), &challenge("u-2", FAR, Some(SECRET)))
                .await
                .unwrap();
            let r = PasswordReset {
                user_id: "u-2".into(),
                expires_ms: FAR,
                password_hash: "h".into(),
            };
            b.put_reset(&format!("r{i}"), &r).await.unwrap();
        }
    })
    .await;
    let mut live_enrolments = 0;
    let mut live_resets = 0;
    for i in 0..6 {
        live_enrolments += usize::from(p.a.take_challenge(&format!("en{i}")).await.unwrap().is_some());
        live_resets += usize::from(p.b.reset(&format!("r{i}")).await.unwrap().is_some());
    }
    assert_eq!((live_enrolments, live_resets), (1, 1));
}

// Of eight rotations of one session at once, from two gateways, exactly one swaps, and
// the session holds its result; a swap from a stale copy fails.
async fn session_swaps_once(p: Pair) {
    let old = session("s-1", "u-1", "r0", FAR);
    p.a.put_session(&old).await.unwrap();
    let swapped = parallel(8, |i| {
        let b = p.by(i);
        let old = old.clone();
        async move {
            let new = session("s-1", "u-1", &format!("r{}", i + 1), FAR);
            b.swap_session(&old, &new).await.unwrap()
        }
    })
    .await;
    let winners: Vec<usize> = (0..8).filter(|i| swapped[*i]).collect();
    assert_eq!(winners.len(), 1, "{swapped:?}");
    let stored = p.b.session("s-1").await.unwrap().unwrap();
    assert_eq!(stored.current_refresh, format!("r{}", winners[0] + 1));
    assert!(!p.a.swap_session(&old, &session("s-1", "u-1", "rx", FAR)).await.unwrap());

    p.a.put_refresh(
        "r1",
        &RefreshEntry {
            session_id: "s-1".into(),
            expires: FAR,
        },
    )
    .await
    .unwrap();
    assert_eq!(p.b.refresh_entry("r1").await.unwrap().unwrap().session_id, "s-1");
    assert!(p.b.refresh_entry("r9").await.unwrap().is_none());
    p.b.put_session(&session("s-2", "u-1", "q", FAR)).await.unwrap();
    p.b.put_session(&session("s-3", "u-2", "q", FAR)).await.unwrap();
    let ids: Vec<String> =
        p.a.sessions_of("u-1")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
    assert_eq!(ids, ["s-1", "s-2"]);
}

// Revoked sessions, users and access tokens written on one gateway are listed on the
// other while they matter; a later revocation of a user is not undone by an earlier one.
async fn revocations(p: Pair) {
    let mut s = session("s-1", "u-1", "r", 2_000);
    s.revoked = true;
    p.a.put_session(&s).await.unwrap();
    let mut gone = session("s-2", "u-1", "r", 500);
    gone.revoked = true;
    p.a.put_session(&gone).await.unwrap();
    p.a.put_session(&session("s-3", "u-1", "r", 2_000)).await.unwrap();
    assert_eq!(p.b.revoked_sessions(1_000).await.unwrap(), [("s-1".to_owned(), 2_000)]);

    p.a.revoke_user_tokens("u-1", 900).await.unwrap();
    p.b.revoke_user_tokens("u-1", 800).await.unwrap();
    p.b.revoke_user_tokens("u-2", 100).await.unwrap();
    assert_eq!(p.b.revoked_users(500).await.unwrap(), [("u-1".to_owned(), 900)]);

    p.a.revoke_jti("j-1", 2_000).await.unwrap();
    p.a.revoke_jti("j-2", 10).await.unwrap();
    assert_eq!(p.b.revoked_jtis(1_000).await.unwrap(), [("j-1".to_owned(), 2_000)]);
}

/// A record of the test chain: its sequence number and the SHA-256 of the one before.
fn link(seq: u64, prev: Option<&[u8]>) -> Vec<u8> {
    let prev = prev.map_or("genesis".to_owned(), |b| {
        hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
    });
    format!("{seq} {prev}").into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Forty appends of three records at once, half on each gateway: one chain, its
// sequence numbers contiguous from 1, each record naming the hash of the one before.
async fn audit_chain_across_gateways(p: Pair) {
    parallel(40, |i| {
        let b = p.by(i);
        async move {
            let mut chain = |head: Option<(u64, Vec<u8>)>| {
                let (mut seq, mut prev) = head.map_or((0, None), |(s, b)| (s, Some(b)));
                let mut out = Vec::new();
                for _ in 0..3 {
                    seq += 1;
                    let bytes = link(seq, prev.as_deref());
                    prev = Some(bytes.clone());
                    out.push((seq, bytes));
                }
                out
            };
            b.audit_append(&mut chain).await.unwrap();
        }
    })
    .await;
    let all = p.a.audit_range(0, 1_000).await.unwrap();
    assert_eq!(all.len(), 120);
    let mut prev: Option<Vec<u8>> = None;
    for (n, (seq, bytes)) in all.iter().enumerate() {
        assert_eq!(*seq, n as u64 + 1);
        assert_eq!(*bytes, link(*seq, prev.as_deref()), "record {seq}");
        prev = Some(bytes.clone());
    }
    assert_eq!(p.b.audit_last().await.unwrap().unwrap().0, 120);
    // An append that has nothing to add writes nothing.
    let mut nothing = |_: Option<(u64, Vec<u8>)>| Vec::new();
    p.b.audit_append(&mut nothing).await.unwrap();
    assert_eq!(p.a.audit_last().await.unwrap().unwrap().0, 120);
}

// Records and checkpoints by sequence number: get, ranges, overwrite, removal of the
// oldest; the probe and flush work.
async fn audit_storage(p: Pair) {
    assert!(p.a.audit_last().await.unwrap().is_none());
    let mut three =
        |_: Option<(u64, Vec<u8>)>| vec![(1, b"one".to_vec()), (2, b"two".to_vec()), (3, b"three".to_vec())];
    p.a.audit_append(&mut three).await.unwrap();
    assert_eq!(p.b.audit_get(2).await.unwrap().unwrap(), b"two");
    assert_eq!(p.b.audit_range(2, 1).await.unwrap(), [(2, b"two".to_vec())]);
    p.b.audit_overwrite(2, b"TWO").await.unwrap();
    assert_eq!(p.a.audit_get(2).await.unwrap().unwrap(), b"TWO");
    assert_eq!(p.a.audit_remove_before(3).await.unwrap(), 2);
    assert_eq!(p.b.audit_range(0, 10).await.unwrap(), [(3, b"three".to_vec())]);

    for seq in [10, 20, 30] {
        p.a.checkpoint_put(seq, format!("cp{seq}").as_bytes()).await.unwrap();
    }
    assert_eq!(p.b.checkpoint_last().await.unwrap().unwrap(), (30, b"cp30".to_vec()));
    assert_eq!(p.b.checkpoint_range(15, 1).await.unwrap(), [(20, b"cp20".to_vec())]);
    assert_eq!(p.b.checkpoint_remove_before(30).await.unwrap(), 2);
    assert_eq!(p.a.checkpoint_range(0, 10).await.unwrap().len(), 1);
    p.a.probe(1).await.unwrap();
    p.b.probe(2).await.unwrap();
    p.a.flush().await.unwrap();
}

// What has run out goes and what has not stays: confirmations, challenges, sessions
// (and their activity), refresh tokens, reset tokens, accounts never confirmed, and
// failure counts outside the window; a confirmed account's pending mark is not its end.
async fn prune(p: Pair) {
    let now_ms = 1_000_000_000;
    let (past_ms, future_ms) = (now_ms - 1, now_ms + 1_000);
    let (past_s, future_s) = (now_ms / 1000 - 1, now_ms / 1000 + 10);
    for (hash, ends) in [("c-old", past_ms), ("c-new", future_ms)] {
        let c = Confirmation {
            user_id: "u".into(),
            expires_ms: ends,
            password_hash: None,
        };
        p.a.put_confirmation(hash, &c).await.unwrap();
        p.a.put_challenge(hash, &challenge("u", ends, None)).await.unwrap();
        let r = PasswordReset {
            user_id: hash.into(),
            expires_ms: ends,
            password_hash: "h".into(),
        };
        p.a.put_reset(hash, &r).await.unwrap();
    }
    for (id, ends) in [("s-old", past_s), ("s-new", future_s)] {
        p.a.put_session(&session(id, "u", "r", ends)).await.unwrap();
        p.a.put_refresh(
            id,
            &RefreshEntry {
                session_id: id.into(),
                expires: ends,
            },
        )
        .await
        .unwrap();
    }
    p.a.put_activity(&[("s-old".into(), 5), ("s-new".into(), 5)])
        .await
        .unwrap();
    let mut pending = user("u-pending", "p@example.com");
    pending.confirmed = false;
    p.a.create_user(&pending).await.unwrap();
    p.a.put_pending("u-pending", past_ms).await.unwrap();
    p.a.create_user(&user("u-confirmed", "c@example.com")).await.unwrap();
    p.a.put_pending("u-confirmed", past_ms).await.unwrap();
    let mut waiting = user("u-waiting", "w@example.com");
    waiting.confirmed = false;
    p.a.create_user(&waiting).await.unwrap();
    p.a.put_pending("u-waiting", future_ms).await.unwrap();
    p.a.record_failure("old@example.com", 5, 1, 1_000, now_ms - 5_000)
        .await
        .unwrap();
    p.a.record_failure("new@example.com", 5, 1, 1_000, now_ms - 10)
        .await
        .unwrap();

    let pruned = p.b.prune(now_ms, 1_000).await.unwrap();
    assert_eq!(
        (pruned.confirmations, pruned.challenges, pruned.sessions, pruned.refresh),
        (1, 1, 1, 1),
        "{pruned:?}"
    );
    assert_eq!(
        (pruned.pending_users, pruned.resets, pruned.failures),
        (1, 1, 1),
        "{pruned:?}"
    );
    assert!(p.a.take_confirmation("c-new").await.unwrap().is_some());
    assert!(p.a.session("s-new").await.unwrap().is_some() && p.a.session("s-old").await.unwrap().is_none());
    assert!(p.a.user("u-pending").await.unwrap().is_none());
    assert!(
        p.a.user_by_email("p@example.com").await.unwrap().is_none(),
        "its email is free again"
    );
    assert!(p.a.user("u-confirmed").await.unwrap().is_some());
    assert!(p.a.user("u-waiting").await.unwrap().is_some());
    let activity: Vec<String> = p.a.activity().await.unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(activity, ["s-new"]);
    let counts = p.a.counts().await.unwrap();
    assert_eq!(
        (counts.users, counts.sessions, counts.failures),
        (2, 1, 1),
        "{counts:?}"
    );
    assert_eq!(
        p.b.prune(now_ms, 1_000).await.unwrap(),
        Default::default(),
        "nothing left to prune"
    );
}

// Last-used times: a batch (with a session twice) stores the latest, a time never moves
// back, and a session's time can be forgotten.
async fn activity(p: Pair) {
    p.a.put_activity(&[("s-1".into(), 10), ("s-2".into(), 20), ("s-1".into(), 15)])
        .await
        .unwrap();
    p.b.put_activity(&[("s-1".into(), 12), ("s-2".into(), 30)])
        .await
        .unwrap();
    p.b.put_activity(&[]).await.unwrap();
    assert_eq!(
        p.a.activity().await.unwrap(),
        [("s-1".to_owned(), 15), ("s-2".to_owned(), 30)]
    );
    p.a.remove_activity("s-1").await.unwrap();
    assert_eq!(p.b.activity().await.unwrap(), [("s-2".to_owned(), 30)]);
}

// --- PostgreSQL only ---------------------------------------------------------------------

// TOTP secrets (an account's, an enrolment's) are in no table in clear, yet read back;
// a sealed secret moved to another account does not open; another key is refused at
// connect.
#[tokio::test]
async fn postgres_secrets_sealed_at_rest() {
    let url = PgCluster::shared().database().await;
    let store: Arc<dyn Backend> = Arc::new(pg_store(&url).await);
    let mut u = user("u-1", "mfa@example.com");
    u.totp_secret = Some(SECRET.into());
    store.create_user(&u).await.unwrap();
    store.create_user(&user("u-2", "other@example.com")).await.unwrap();
    store
        .put_enrolment("enrol", &challenge("u-1", FAR, Some(SECRET)))
        .await
        .unwrap();
    assert_eq!(
        store.user("u-1").await.unwrap().unwrap().totp_secret.as_deref(),
        Some(SECRET)
    );

    let db = PgCluster::client(&url).await;
    let mut dump = String::new();
    for table in ["users", "challenges", "meta"] {
        for row in db
            .query(&format!("SELECT {table}::text FROM {table}"), &[])
            .await
            .unwrap()
        {
            dump.push_str(row.get::<_, &str>(0));
        }
    }
    assert!(dump.contains("mfa@example.com") && dump.contains("v1:"), "{dump}");
    assert!(!dump.contains(SECRET), "a secret in clear: {dump}");

    // u-1's sealed secret copied into u-2's record: refused, never read as no secret.
    db.execute(
        "UPDATE users SET data = replace((SELECT data FROM users WHERE id = 'u-1'), '\"u-1\"', '\"u-2\"') WHERE id = 'u-2'",
        &[],
    )
    .await
    .unwrap();
    assert!(matches!(store.user("u-2").await, Err(StoreError::Sealed { .. })));
    assert!(store.users().await.is_err());

    let wrong = PgStore::connect(&PgSettings::new(&url), SecretKey::from_bytes(&[8; 32]).unwrap()).await;
    assert!(matches!(wrong, Err(StoreError::WrongKey)), "{wrong:?}");
    let enrolment = store.take_challenge("enrol").await.unwrap().unwrap();
    assert_eq!(enrolment.pending_secret.as_deref(), Some(SECRET));
}

// Four gateways starting at once on one fresh database: all connect, and every
// migration ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_migrations() {
    let url = PgCluster::shared().database().await;
    let started = parallel(4, |_| {
        let url = url.clone();
        async move { pg_store(&url).await }
    })
    .await;
    assert_eq!(started.len(), 4);
    let db = PgCluster::client(&url).await;
    let versions: Vec<i32> = db
        .query("SELECT version FROM portcullis_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
    // A fifth start later changes nothing.
    pg_store(&url).await;
    let again: i64 = db
        .query_one("SELECT count(*) FROM portcullis_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again as usize, versions.len());
}

// The database stopped mid-way: every operation fails fast with Unavailable (no hang),
// and once it is back the same store works again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_and_recovers() {
    let cluster = PgCluster::start();
    let url = cluster.database().await;
    let mut settings = PgSettings::new(&url);
    settings.connect_timeout = Duration::from_secs(1);
    settings.statement_timeout = Duration::from_secs(1);
    let store: Arc<dyn Backend> = Arc::new(
        PgStore::connect(&settings, SecretKey::from_bytes(&KEY).unwrap())
            .await
            .unwrap(),
    );
    store.create_user(&user("u-1", "x@example.com")).await.unwrap();
    let mut feed = store.subscribe().unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Resync);

    cluster.stop();
    for _ in 0..3 {
        let began = Instant::now();
        let r = store.user("u-1").await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "an error, not a hang: {:?}",
            began.elapsed()
        );
        let r = store.record_failure("x@example.com", 5, 1, 1, 1).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }

    cluster.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.user("u-1").await {
            Ok(u) => {
                assert_eq!(u.unwrap().email, "x@example.com");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.record_failure("x@example.com", 5, 1, 1, 1).await.unwrap();
    // The feed reconnected by itself, said so, and carries revocations again.
    assert_eq!(next_change(&mut feed).await, Change::Resync);
    store.revoke_jti("j-after", FAR).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        Change::Jti {
            jti: "j-after".into(),
            exp: FAR
        }
    );
}

/// The next change of a feed, within 15 s (the feed's reconnection backs off to 5 s).
async fn next_change(feed: &mut tokio::sync::broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(15), feed.recv())
        .await
        .expect("a change within 15 s")
        .expect("the feed is open")
}

// Revocations made on one gateway reach the other's feed, each kind as it was made, and
// nothing else does (a live session written is not a revocation). Prints how long 100
// of them took to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_reach_every_gateway() {
    let url = PgCluster::shared().database().await;
    let a: Arc<dyn Backend> = Arc::new(pg_store(&url).await);
    let b: Arc<dyn Backend> = Arc::new(pg_store(&url).await);
    let mut feed = b.subscribe().unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Resync);
    let mut took = Vec::new();
    for n in 0..100u64 {
        let began = Instant::now();
        let expected = match n % 4 {
            0 => {
                a.revoke_jti(&format!("j-{n}"), FAR + n).await.unwrap();
                Change::Jti {
                    jti: format!("j-{n}"),
                    exp: FAR + n,
                }
            }
            1 => {
                a.revoke_user_tokens(&format!("u-{n}"), n).await.unwrap();
                Change::User {
                    id: format!("u-{n}"),
                    after: n,
                }
            }
            2 => {
                let live = session(&format!("s-{n}"), "u", "r", FAR);
                a.put_session(&live).await.unwrap();
                let mut revoked = live.clone();
                revoked.revoked = true;
                assert!(a.swap_session(&live, &revoked).await.unwrap());
                Change::Session {
                    id: format!("s-{n}"),
                    expires: FAR,
                }
            }
            _ => {
                let mut s = session(&format!("s-{n}"), "u", "r", FAR + 1);
                s.revoked = true;
                a.put_session(&s).await.unwrap();
                Change::Session {
                    id: format!("s-{n}"),
                    expires: FAR + 1,
                }
            }
        };
        assert_eq!(next_change(&mut feed).await, expected);
        took.push(began.elapsed());
    }
    took.sort();
    eprintln!(
        "revocation to another gateway over 100: median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    // A second subscriber of one store shares its listener.
    let mut second = b.subscribe().unwrap();
    a.revoke_jti("j-last", 1).await.unwrap();
    let last = Change::Jti {
        jti: "j-last".into(),
        exp: 1,
    };
    assert_eq!(next_change(&mut feed).await, last);
    assert_eq!(next_change(&mut second).await, last);
}

// Four gateways storing their own new signing key at once: every one gets the same key
// (one of theirs), which reads back everywhere and is not in the table in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_signing_key_first_wins() {
    let url = PgCluster::shared().database().await;
    let stores: Vec<Arc<dyn Backend>> = parallel(4, |_| {
        let url = url.clone();
        async move { Arc::new(pg_store(&url).await) as Arc<dyn Backend> }
    })
    .await;
    assert!(stores[0].signing_key("signing-ed25519").await.unwrap().is_none());
    let candidates: Vec<Vec<u8>> = (0..4u8).map(|n| vec![n; 48]).collect();
    let got = parallel(4, |n| {
        let store = stores[n].clone();
        let mine = candidates[n].clone();
        async move { store.put_signing_key_if_absent("signing-ed25519", &mine).await.unwrap() }
    })
    .await;
    assert!(candidates.contains(&got[0]));
    assert!(got.iter().all(|k| *k == got[0]), "one key for all");
    assert_eq!(stores[3].signing_key("signing-ed25519").await.unwrap().unwrap(), got[0]);
    let db = PgCluster::client(&url).await;
    let sealed: String = db
        .query_one("SELECT sealed FROM signing_keys", &[])
        .await
        .unwrap()
        .get(0);
    use base64::Engine;
    let clear = base64::engine::general_purpose::STANDARD.encode(&got[0]);
    assert!(sealed.starts_with("v1:") && !sealed.contains(&clear));
    // Moved to another name, it does not open.
    db.execute("UPDATE signing_keys SET name = 'signing-es256'", &[])
        .await
        .unwrap();
    assert!(matches!(
        stores[0].signing_key("signing-es256").await,
        Err(StoreError::Sealed { .. })
    ));
}

// Twenty takes at once from two gateways on a budget of 10: exactly 10 pass; a refusal
// says when to come back, and then one more passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rate_budget_shared_exactly() {
    let p = postgres_pair().await;
    let now = 1_000_000_000;
    let minute = 60_000_000;
    let answers = parallel(20, |n| {
        let b = p.by(n);
        async move { b.rate_take("route:ip", minute, 10, now).await.unwrap().unwrap() }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| matches!(a, Budget::Allowed { .. })).count(),
        10,
        "{answers:?}"
    );
    let Some(Budget::Refused { retry_after_us }) = p.a.rate_take("route:ip", minute, 10, now).await.unwrap() else {
        panic!("the budget is spent");
    };
    assert_eq!(retry_after_us, minute);
    let later =
        p.b.rate_take("route:ip", minute, 10, now + retry_after_us)
            .await
            .unwrap();
    assert!(matches!(later, Some(Budget::Allowed { .. })), "{later:?}");
    assert_eq!(
        p.a.rate_take("other", minute, 10, now).await.unwrap(),
        Some(Budget::Allowed {
            remaining: 9,
            reset_us: minute
        }),
        "budgets are per key"
    );
}

// A budget faster than one a millisecond (4,000 a second: 250 µs apart) refills at its
// own rate: spent, then one millisecond later exactly four more pass, not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rate_budget_below_a_millisecond() {
    let p = postgres_pair().await;
    let now = 5_000_000_000;
    let take = |at: u64| {
        let a = p.a.clone();
        async move { a.rate_take("fast", 250, 8, at).await.unwrap().unwrap() }
    };
    for n in 0..8 {
        assert!(matches!(take(now).await, Budget::Allowed { .. }), "take {n}");
    }
    assert_eq!(take(now).await, Budget::Refused { retry_after_us: 250 });
    let later = now + 1_000;
    for n in 0..4 {
        assert!(
            matches!(take(later).await, Budget::Allowed { .. }),
            "take {n} a millisecond later"
        );
    }
    assert_eq!(take(later).await, Budget::Refused { retry_after_us: 250 });
}

// The mail spool: bounded across gateways; four claimers on two gateways get every
// message exactly once; a claimed message comes back only when its lease runs out (or
// is put back), and a sent one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_mail_spool_sends_once() {
    let p = postgres_pair().await;
    let now = 1_000;
    for n in 0..30 {
        assert!(p
            .by(n)
            .mail_put(&format!("m{n:02}"), b"To: x\r\n\r\nhi", 30, now)
            .await
            .unwrap());
    }
    assert!(
        !p.a.mail_put("m-over", b"x", 30, now).await.unwrap(),
        "the spool is full"
    );
    let claimed = parallel(4, |n| {
        let b = p.by(n);
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = b.mail_claim(now, 60_000, 3).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|m| (m.id, m.attempts)));
            }
        }
    })
    .await;
    let mut ids: Vec<String> = claimed.iter().flatten().map(|(id, _)| id.clone()).collect();
    assert!(claimed.iter().flatten().all(|(_, attempts)| *attempts == 0));
    ids.sort();
    let expected: Vec<String> = (0..30).map(|n| format!("m{n:02}")).collect();
    assert_eq!(ids, expected, "each message claimed exactly once");
    assert!(
        p.a.mail_claim(now + 59_999, 60_000, 100).await.unwrap().is_empty(),
        "leased"
    );
    p.b.mail_done("m00").await.unwrap();
    p.b.mail_retry("m01", now + 10).await.unwrap();
    let again = p.a.mail_claim(now + 10, 60_000, 100).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("m01", 1));
    assert_eq!(again[0].message, b"To: x\r\n\r\nhi");
    let expired = p.b.mail_claim(now + 60_000, 60_000, 100).await.unwrap();
    assert_eq!(expired.len(), 28, "m00 was sent, m01 is leased again");
}

// A cluster that takes only TLS connections, with a certificate of its own CA: the
// store connects with `ca` and verifies it; without the CA (the system's roots only) the
// certificate is refused, and without TLS the server refuses.
#[tokio::test]
async fn postgres_over_tls_verified_with_a_ca_file() {
    let cluster = PgCluster::init();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let crt = cluster.write("server.crt", cert.cert.pem().as_bytes());
    let key = cluster.write("server.key", cert.signing_key.serialize_pem().as_bytes());
    let hba = cluster.write("hba.conf", b"local all all trust\nhostssl all all 127.0.0.1/32 trust\n");
    cluster.set("ssl=on");
    cluster.set(&format!("ssl_cert_file={}", crt.display()));
    cluster.set(&format!("ssl_key_file={}", key.display()));
    cluster.set(&format!("hba_file={}", hba.display()));
    cluster.restart();
    let plain = cluster.database().await;
    let tls_url = plain.replace("sslmode=disable", "sslmode=require");
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), cert.cert.pem()).unwrap();

    let mut settings = PgSettings::new(&tls_url);
    settings.ca = Some(ca.path().to_path_buf());
    let store = PgStore::connect(&settings, SecretKey::from_bytes(&KEY).unwrap())
        .await
        .unwrap();
    Backend::create_user(&store, &user("u-1", "tls@example.com"))
        .await
        .unwrap();
    assert!(Backend::user(&store, "u-1").await.unwrap().is_some());

    let unknown = PgStore::connect(&PgSettings::new(&tls_url), SecretKey::from_bytes(&KEY).unwrap()).await;
    let e = unknown.unwrap_err().to_string();
    assert!(e.contains("certificate") || e.contains("TLS"), "{e}");
    let refused = PgStore::connect(&PgSettings::new(&plain), SecretKey::from_bytes(&KEY).unwrap()).await;
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("pg_hba") || e.contains("no encryption"), "{e}");
}
