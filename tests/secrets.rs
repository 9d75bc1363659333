//! TOTP secrets at rest: no file of the data directory holds one (while the gateway runs
//! and after it stops), a database written in the old format (secrets in clear) is
//! migrated at start-up and keeps working, and a wrong or malformed
//! `PORTCULLIS_SECRET_KEY` keeps the gateway and the CLI from starting.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{portcullis_bin, start_shop, Setup, TestGateway, PASSWORD};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::json;

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Every byte of every file below `dir`, with the path of each file.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// The files below `dir` that hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

/// Asserts that no file below `data` holds the base32 secret or its raw bytes, and that
/// the scan reads the database at all (it finds the account's address).
fn assert_no_secret(data: &Path, secret: &str, email: &str, when: &str) {
    let raw = totp_rs::Secret::try_from_base32(secret).unwrap().as_bytes().to_vec();
    assert!(
        !holding(data, email.as_bytes()).is_empty(),
        "{when}: the scan reads nothing"
    );
    assert_eq!(
        holding(data, secret.as_bytes()),
        Vec::<String>::new(),
        "{when}: base32 secret"
    );
    assert_eq!(holding(data, &raw), Vec::<String>::new(), "{when}: raw secret");
}

async fn stop(mut gw: TestGateway) -> tempfile::TempDir {
    gw.client = reqwest::Client::new();
    gw.shutdown().await;
    let TestGateway { dir, .. } = gw;
    dir
}

/// Logs in with the password and then a TOTP code of `secret`: the status of `/auth/mfa`.
async fn login_with_totp(gw: &TestGateway, clock: &ManualClock, email: &str, secret: &str) -> u16 {
    let (status, first) = gw.login(email, PASSWORD).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["mfa_required"], true, "{first}");
    let code = totp::code_at(secret, clock.now()).unwrap();
    gw.post("/auth/mfa", json!({ "mfa_token": first["mfa_token"], "code": code }))
        .await
        .0
}

// Enrolment through the API: the pending secret (before the first code) and the
// enrolled one (after) are in no file of the data directory, while the gateway runs and
// after it stops; the sealed secret still opens for the next login.
#[tokio::test]
async fn totp_secret_never_in_data_dir() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    let data = gw.dir.path().join("data");
    let email = "boss@example.com";
    gw.add_user(email, &["admin"]).await;
    let (_, first) = gw.login(email, PASSWORD).await;
    let (status, enrol) = gw
        .post("/auth/totp/enroll", json!({ "mfa_token": first["mfa_token"] }))
        .await;
    assert_eq!(status, 200, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    gw.auth().store().flush().await.unwrap();
    assert_no_secret(&data, &secret, email, "pending enrolment");

    let code = totp::code_at(&secret, clock.now()).unwrap();
    let (status, body) = gw
        .post("/auth/mfa", json!({ "mfa_token": enrol["mfa_token"], "code": code }))
        .await;
    assert_eq!(status, 200, "{body}");
    gw.auth().store().flush().await.unwrap();
    assert_no_secret(&data, &secret, email, "enrolled, running");

    clock.advance(Duration::from_secs(30));
    assert_eq!(login_with_totp(&gw, &clock, email, &secret).await, 200);
    let dir = stop(gw).await;
    assert_no_secret(&dir.path().join("data"), &secret, email, "stopped");
}

// A database of the old format (the secret in clear in the user record, no key yet) is
// migrated at start-up: the same secret still logs in, no file holds it any more, and a
// second start leaves the database as it is.
#[tokio::test]
async fn old_database_migrated() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());
    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    let email = "old@example.com";
    let id = gw.add_user(email, &["admin"]).await;
    let dir = stop(gw).await;
    let data = dir.path().join("data");

    // Written the way the code before sealing wrote it.
    {
        let store = portcullis::store::Store::open(&data).unwrap();
        let users = store.sled().unwrap().db().open_tree("users").unwrap();
        let mut user: serde_json::Value = serde_json::from_slice(&users.get(&id).unwrap().unwrap()).unwrap();
        user["totp_secret"] = SECRET.into();
        users.insert(id.as_bytes(), serde_json::to_vec(&user).unwrap()).unwrap();
        let meta = store.sled().unwrap().db().open_tree("meta").unwrap();
        meta.remove("secrets_sealed_v1").unwrap();
        meta.remove("secret_key_check").unwrap();
        store.flush().await.unwrap();
    }
    std::fs::remove_file(data.join("keys/secret.key")).unwrap();
    assert!(
        !holding(&data, SECRET.as_bytes()).is_empty(),
        "the old format holds the secret"
    );

    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    assert_eq!(login_with_totp(&gw, &clock, email, SECRET).await, 200);
    assert_no_secret(&data, SECRET, email, "migrated");
    let dir = stop(gw).await;
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&data.join("db"));

    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    clock.advance(Duration::from_secs(30));
    assert_eq!(login_with_totp(&gw, &clock, email, SECRET).await, 200);
    assert_eq!(inode(&data.join("db")), before, "a second start rewrote the database");
    let dir = stop(gw).await;
    assert_no_secret(&dir.path().join("data"), SECRET, email, "after the second start");
}

/// Runs `portcullis --config CONFIG ARGS` with `PORTCULLIS_SECRET_KEY` set to `key`;
/// a run still going after 60 s is killed and reported as a success (it started).
fn with_key(config: &Path, key: &str, args: &[&str]) -> (bool, String) {
    let mut child = portcullis_bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PORTCULLIS_SECRET_KEY", key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// A key other than the one the secrets were sealed with stops the gateway and the CLI
// at start (nothing runs with TOTP unreadable); a malformed key is an error naming the
// variable, never showing its value; the right key, given in the variable, works.
#[tokio::test]
async fn wrong_secret_key_fails_closed() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).server("workers = 1").write(dir.path());
    let gw = TestGateway::launch(dir, &config, None).await;
    let id = gw.add_user("k@example.com", &["admin"]).await;
    gw.auth().set_totp(&id, SECRET).await.unwrap();
    let dir = stop(gw).await;
    let data = dir.path().join("data");
    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);

    for args in [&["user", "list"][..], &["serve"][..]] {
        let (ok, out) = with_key(&config, &wrong, args);
        assert!(!ok, "{args:?} ran with a wrong key: {out}");
        assert!(out.contains("PORTCULLIS_SECRET_KEY"), "{out}");
        assert!(!out.contains(&wrong), "the key was shown: {out}");
    }
    for bad in ["c2hvcnQ=", "%%% not base64 %%%"] {
        let (ok, out) = with_key(&config, bad, &["user", "list"]);
        assert!(!ok, "{out}");
        assert!(out.contains("PORTCULLIS_SECRET_KEY"), "{out}");
        assert!(!out.contains(bad), "the value was shown: {out}");
    }

    // A lost key file is named, and not replaced by a new key.
    let right = std::fs::read_to_string(data.join("keys/secret.key")).unwrap();
    std::fs::remove_file(data.join("keys/secret.key")).unwrap();
    let out = common::cli(&config, &["user", "list"]);
    assert!(!out.ok, "{}", out.text);
    assert!(out.text.contains("secret.key: missing"), "{}", out.text);
    assert!(!data.join("keys/secret.key").exists());

    // The key of the file, given in the variable, opens the same secrets.
    let (ok, out) = with_key(&config, right.trim(), &["user", "list"]);
    assert!(ok, "{out}");
    assert!(out.contains("k@example.com"), "{out}");
    assert_eq!(holding(&data, SECRET.as_bytes()), Vec::<String>::new());
}

// A sealed secret copied into another account's record does not decrypt there (the
// account id is its associated data): that account's login fails closed, it is never
// let in as if it had no second factor, and the answer shows nothing of the record.
#[tokio::test]
async fn moved_secret_fails_closed() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    let staff = gw.add_user("staff@example.com", &["admin"]).await;
    gw.auth().set_totp(&staff, SECRET).await.unwrap();
    let customer = gw.add_user("customer@example.com", &["customer"]).await;
    assert_eq!(gw.login("customer@example.com", PASSWORD).await.0, 200);

    let users = gw.auth().store().sled().unwrap().db().open_tree("users").unwrap();
    let record = |id: &str| -> serde_json::Value { serde_json::from_slice(&users.get(id).unwrap().unwrap()).unwrap() };
    let sealed = record(&staff)["totp_secret"].as_str().unwrap().to_owned();
    assert!(sealed.starts_with("v1:") && !sealed.contains(SECRET), "{sealed}");
    let mut moved = record(&customer);
    moved["totp_secret"] = sealed.clone().into();
    users
        .insert(customer.as_bytes(), serde_json::to_vec(&moved).unwrap())
        .unwrap();

    let (status, body) = gw.login("customer@example.com", PASSWORD).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.get("access_token").is_none() && body.get("mfa_token").is_none(),
        "{body}"
    );
    assert!(!body.to_string().contains(&sealed[3..20]), "{body}");
    assert_eq!(login_with_totp(&gw, &clock, "staff@example.com", SECRET).await, 200);
}
