//! `portcullis init` writes a configuration and a policy that check, test and run as
//! written in front of an upstream; it never overwrites and refuses a bad upstream. And
//! the rest of installing: `PORTCULLIS_CONFIG`, shell completions and the man page.

mod common;

use std::path::Path;

use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::json;

use common::{cli, portcullis_bin, CliOut, Recorder, TestGateway};

/// Runs `portcullis init DIR ARGS…`.
fn init(dir: &Path, args: &[&str]) -> CliOut {
    portcullis_bin()
        .arg("init")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
        .into()
}

/// The value of one forwarded header of the last request the recorder saw.
fn last_header(rec: &Recorder, name: &str) -> Option<String> {
    let seen = rec.requests();
    let last = seen.last().expect("nothing reached the upstream");
    last.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

// What init writes checks, tests and starts as written; each example route routes (or
// refuses) as its comment says.
#[tokio::test(flavor = "multi_thread")]
async fn init_output_runs_and_routes_each_example() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = init(dir.path(), &["--upstream", &rec.url(), "--listen", "127.0.0.1:0"]);
    assert!(out.ok, "{}", out.text);
    assert!(
        out.stdout.contains("serve") && out.stdout.contains("user add"),
        "no next steps: {}",
        out.stdout
    );
    let config = dir.path().join("gateway.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains(&format!("api = \"{}\"", rec.url())), "{written}");
    for shown in [
        "# [registration]",
        "# [cors]",
        "require_mfa_roles = []",
        "reader",
        "editor",
    ] {
        assert!(written.contains(shown), "gateway.toml lacks {shown:?}");
    }

    // The policy passes `policy check` with no warning and its own test cases.
    let check = cli(&config, &["policy", "check"]);
    assert!(check.ok && check.stdout.contains("0 warning"), "{}", check.text);
    let test = cli(&config, &["policy", "test"]);
    assert!(test.ok && test.stdout.contains(" 0 failed"), "{}", test.text);

    // The configuration as written (only the port was chosen by the test).
    let clock = ManualClock::new();
    let gw = TestGateway::launch(dir, &config, Some(clock.clone())).await;
    let reached = |n: usize| assert_eq!(rec.requests().len(), n, "{:?}", rec.requests());

    // Public route: no token, no identity.
    assert_eq!(gw.status("/health").await, 200);
    reached(1);
    assert_eq!(last_header(&rec, "x-auth-user"), None);

    // Role routes: a token is needed; readers read, editors change.
    assert_eq!(gw.status("/api/items").await, 401);
    let (reader_id, reader) = gw.signed_in("reader@example.com", &["reader"]).await;
    let (editor_id, editor) = gw.signed_in("editor@example.com", &["editor"]).await;
    assert_eq!(gw.get_with("/api/items/7", &reader).await.0, 200);
    reached(2);
    assert_eq!(rec.requests()[1].target, "/api/items/7");
    assert_eq!(last_header(&rec, "x-auth-user").as_deref(), Some(reader_id.as_str()));
    assert_eq!(last_header(&rec, "x-auth-roles").as_deref(), Some("reader"));
    assert_eq!(last_header(&rec, "x-auth-email").as_deref(), Some("reader@example.com"));
    assert_eq!(
        last_header(&rec, "authorization"),
        None,
        "the token reached the upstream"
    );
    let post = |token: &str| {
        gw.client
            .post(gw.url("/api/items"))
            .bearer_auth(token)
            .json(&json!({ "name": "x" }))
            .send()
    };
    assert_eq!(post(&reader).await.unwrap().status(), 403);
    reached(2);
    assert_eq!(post(&editor).await.unwrap().status(), 200);
    reached(3);
    assert_eq!(rec.requests()[2].method, "POST");
    assert_eq!(last_header(&rec, "x-auth-user").as_deref(), Some(editor_id.as_str()));

    // Owner route: one's own record only.
    assert_eq!(gw.get_with(&format!("/users/{reader_id}"), &reader).await.0, 200);
    reached(4);
    assert_eq!(gw.get_with(&format!("/users/{editor_id}"), &reader).await.0, 403);
    reached(4);

    // MFA route: an editor without TOTP is refused; after enrolling, let through.
    assert_eq!(gw.get_with("/admin/settings", &editor).await.0, 403);
    assert_eq!(gw.get_with("/admin/settings", &reader).await.0, 403);
    reached(4);
    let (status, _, enrollment) = gw.post_with("/auth/totp/enroll", &editor, json!({})).await;
    assert_eq!(status, 200, "{enrollment}");
    let code = totp::code_at(enrollment["secret"].as_str().unwrap(), clock.now()).unwrap();
    let (status, grant) = gw
        .post(
            "/auth/mfa",
            json!({ "mfa_token": enrollment["mfa_token"], "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{grant}");
    let editor_mfa = grant["access_token"].as_str().unwrap();
    assert_eq!(gw.get_with("/admin/settings", editor_mfa).await.0, 200);
    reached(5);
    assert_eq!(rec.requests()[4].target, "/admin/settings");

    // Rate-limited route: 30 a minute per caller, then 429 with Retry-After (counted
    // without timing: a budget refilled during the loop only moves the 429 later).
    let mut allowed = 0;
    let refused = loop {
        let resp = gw
            .client
            .get(gw.url("/search?q=x"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => allowed += 1,
            429 => break resp,
            other => panic!("/search answered {other}"),
        }
        assert!(allowed <= 40, "no 429 after {allowed} requests");
    };
    assert!(allowed >= 30, "refused after {allowed}");
    assert!(refused.headers().contains_key("retry-after"));

    // Deny by default: a path no route names is never forwarded, whoever asks.
    let before = rec.requests().len();
    assert_eq!(gw.get_with("/internal/debug", editor_mfa).await.0, 404);
    assert_eq!(rec.requests().len(), before);
}

// init never replaces a configuration or a policy, and says which file is in the way.
#[test]
fn init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "# mine\n").unwrap();
    let out = init(dir.path(), &["--upstream", "http://127.0.0.1:9000"]);
    assert!(!out.ok, "{}", out.text);
    assert!(
        out.stderr.contains("refusing to overwrite") && out.stderr.contains("gateway.toml"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
    assert!(
        !dir.path().join("policies").exists(),
        "wrote a policy beside a refused config"
    );

    // A policy directory with files in it is in the way too, named file by file.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join("policies")).unwrap();
    std::fs::write(other.path().join("policies/old.toml"), "# old\n").unwrap();
    let out = init(other.path(), &["--upstream", "http://127.0.0.1:9000"]);
    assert!(!out.ok && out.stderr.contains("old.toml"), "{}", out.text);
    assert!(!other.path().join("gateway.toml").exists());

    // A first run into a new directory works, a second one is refused.
    let fresh = dir.path().join("new");
    assert!(init(&fresh, &["--upstream", "http://127.0.0.1:9000"]).ok);
    let first = std::fs::read_to_string(fresh.join("gateway.toml")).unwrap();
    let out = init(&fresh, &["--upstream", "http://127.0.0.1:9999"]);
    assert!(!out.ok && out.stderr.contains("api.toml"), "{}", out.text);
    assert_eq!(std::fs::read_to_string(fresh.join("gateway.toml")).unwrap(), first);
}

// An upstream the configuration would refuse is refused before anything is written, with
// the configuration's own reason.
#[test]
fn init_refuses_a_bad_upstream() {
    for (url, reason) in [
        ("ftp://api.example", "not supported"),
        ("localhost:8000", "needs a scheme"),
        ("http://127.0.0.1:8000/?debug=1", "query string"),
        ("http://user:pw@127.0.0.1:8000", "credentials"),
        ("not a url", "not a valid URL"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = init(dir.path(), &["--upstream", url]);
        assert!(!out.ok, "{url}: {}", out.text);
        assert!(
            out.stderr.contains("--upstream") && out.stderr.contains(reason),
            "{url}: {}",
            out.stderr
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{url}: wrote files");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = init(dir.path(), &["--upstream", "http://127.0.0.1:8000", "--name", "../x"]);
    assert!(!out.ok && out.stderr.contains("--name"), "{}", out.text);
}

// `PORTCULLIS_CONFIG` stands in for `--config`; the flag wins when both are given.
#[test]
fn portcullis_config_replaces_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &["--upstream", "http://127.0.0.1:9000"]).ok);
    let config = dir.path().join("gateway.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |env: &Path, flag: Option<&Path>| -> CliOut {
        let mut cmd = portcullis_bin();
        cmd.current_dir(elsewhere.path()).env("PORTCULLIS_CONFIG", env);
        if let Some(flag) = flag {
            cmd.arg("--config").arg(flag);
        }
        cmd.args(["policy", "test"]).output().unwrap().into()
    };
    let out = run(&config, None);
    assert!(out.ok && out.stdout.contains(" 0 failed"), "{}", out.text);
    let missing = dir.path().join("missing.toml");
    let out = run(&missing, Some(&config));
    assert!(out.ok, "the flag did not win: {}", out.text);
    let out = run(&missing, None);
    assert!(!out.ok && out.stderr.contains("missing.toml"), "{}", out.text);
}

// Completion scripts and the man page come from the command definition: they know every
// command, including the newest.
#[test]
fn completions_and_man_page_name_the_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out: CliOut = portcullis_bin().args(["completions", shell]).output().unwrap().into();
        assert!(out.ok, "{shell}: {}", out.stderr);
        for command in ["serve", "init", "policy", "user", "reset-mfa", "completions"] {
            assert!(out.stdout.contains(command), "{shell} completions lack {command}");
        }
    }
    let out: CliOut = portcullis_bin().arg("completions").arg("tcsh").output().unwrap().into();
    assert!(!out.ok, "an unknown shell was accepted");

    let out: CliOut = portcullis_bin().arg("man").output().unwrap().into();
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains(".TH portcullis 1"), "not a man page");
    for shown in [
        "serve",
        "init",
        "\\fBportcullis user add\\fR",
        "\\fBportcullis policy explain\\fR",
        "PORTCULLIS_CONFIG",
        "\\-\\-config",
    ] {
        assert!(out.stdout.contains(shown), "the man page lacks {shown:?}");
    }
}

// A first `user add` before the first start (as the README's walk-through does) leaves
// nothing in the data directory readable by others, so `serve` has nothing to tighten.
#[test]
fn user_add_before_the_first_start_leaves_the_data_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &["--upstream", "http://127.0.0.1:9000"]).ok);
    let out = cli(
        &dir.path().join("gateway.toml"),
        &["user", "add", "--email", "reader@example.com", "--role", "reader"],
    );
    assert!(out.ok, "{}", out.text);
    let mut open = Vec::new();
    let mut stack = vec![dir.path().join("data")];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.permissions().mode() & 0o077 != 0 {
            open.push(path.clone());
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(open.is_empty(), "readable by others: {open:?}");
}
