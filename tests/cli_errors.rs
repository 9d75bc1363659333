//! The command line's exits and inputs: a command naming an account that does not exist
//! fails (offline and through the running gateway's admin socket), an unknown audit event
//! fails listing the known ones, `audit list --since` takes times ago, and a missing
//! `gateway.toml` says how to name one.

mod common;

use common::{cli, portcullis_bin, Recorder, Setup, TestGateway, OPEN_POLICY};

/// Runs every command that names an account against an unknown one: each fails and
/// names the address.
fn unknown_user_fails(config: &std::path::Path, when: &str) {
    for command in ["unlock", "show", "disable", "enable", "revoke", "reset-mfa"] {
        let out = cli(config, &["user", command, "Nobody@Example.com"]);
        assert!(!out.ok, "{when}: user {command} succeeded: {}", out.text);
        assert!(
            out.stderr.contains("no account with email nobody@example.com"),
            "{when}: user {command}: {}",
            out.text
        );
    }
}

// Unknown accounts make `user ...` exit non-zero, with the gateway stopped and running.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_exits_non_zero() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::new(&[("rec", rec.url())], OPEN_POLICY).write(dir.path());
    unknown_user_fails(&config, "offline");
    let out = cli(
        &config,
        &["user", "add", "--email", "known@example.com", "--role", "customer"],
    );
    assert!(out.ok, "{}", out.text);
    assert!(cli(&config, &["user", "unlock", "known@example.com"]).ok);

    let gw = TestGateway::launch(dir, &config, None).await;
    assert!(gw.dir.path().join("data/admin.sock").exists());
    unknown_user_fails(&config, "through the admin socket");
    let out = cli(&config, &["user", "unlock", "known@example.com"]);
    assert!(out.ok, "{}", out.text);
}

// An unknown --event exits non-zero listing the known names; --since and --until take
// RFC 3339 times and times ago; a bad value says what is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn audit_list_inputs() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::new(&[("rec", rec.url())], OPEN_POLICY).write(dir.path());
    let out = cli(
        &config,
        &["user", "add", "--email", "a@example.com", "--role", "customer"],
    );
    assert!(out.ok, "{}", out.text);

    let out = cli(&config, &["audit", "list", "--event", "login_fail"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("\"login_fail\"")
            && out.stderr.contains("login_failure")
            && out.stderr.contains("user_created"),
        "{}",
        out.stderr
    );

    let recent = cli(&config, &["audit", "list", "--event", "user_created", "--since", "10m"]);
    assert!(recent.ok, "{}", recent.text);
    assert!(recent.stdout.contains("a@example.com"), "{}", recent.stdout);
    let old = cli(&config, &["audit", "list", "--event", "user_created", "--until", "10m"]);
    assert!(old.ok, "{}", old.text);
    assert!(!old.stdout.contains("a@example.com"), "{}", old.stdout);
    let absolute = cli(
        &config,
        &[
            "audit",
            "list",
            "--event",
            "user_created",
            "--since",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(absolute.stdout.contains("a@example.com"), "{}", absolute.stdout);

    let out = cli(&config, &["audit", "list", "--since", "yesterday"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("RFC 3339") && out.stderr.contains("10m"),
        "{}",
        out.stderr
    );
}

// Run where there is no gateway.toml, a command says how to name one.
#[test]
fn missing_config_says_how_to_name_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis_bin()
        .current_dir(dir.path())
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.toml") && stderr.contains("use --config PATH or set PORTCULLIS_CONFIG"),
        "{stderr}"
    );
}
