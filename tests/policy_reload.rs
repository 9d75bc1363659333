//! Reload that warns: with `[roles]` declared, a role typo is an error at start-up, on a
//! hot reload (refused, the old policy kept, the failure audited) and in `policy check`;
//! lint warnings are audited as `policy_warning` at start-up and on every reload. And
//! every error in one run: a configuration with three errors, a policy file with two
//! syntax errors.

mod common;

use common::{cli, Recorder, Setup, TestGateway, OPEN_POLICY};
use portcullis::server::StartError;
use portcullis::{Config, Gateway};

const ROLES: &str = "[roles]\nclerk = { description = \"stock\" }\ncustomer = { description = \"shoppers\" }\n";

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "stock"
methods = ["GET"]
path = "/stock"
roles = ["clerk"]
"#;

async fn gateway(rec: &Recorder) -> TestGateway {
    Setup::new(&[("rec", rec.url())], POLICY)
        .extra(ROLES)
        .many_auth_requests()
        .start()
        .await
}

async fn status(gw: &TestGateway, token: &str) -> u16 {
    gw.get_with("/stock", token).await.0
}

// A role typo written into the policy directory of a running gateway is refused: the
// reload fails naming file, line and column, the old policy keeps routing, and the
// failure is in the trail.
#[tokio::test]
async fn role_typo_on_reload_refused() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec).await;
    let (_, token) = gw.signed_in("clerk@example.com", &["clerk"]).await;
    assert_eq!(status(&gw, &token).await, 200);

    let file = gw.dir.path().join("policies/test.toml");
    std::fs::write(&file, POLICY.replace("[\"clerk\"]", "[\"clekr\"]")).unwrap();
    // The watcher sees the edit and refuses it.
    let failed = gw.wait_for_events("policy_reload_failed", 1).await;
    assert_eq!(failed.len(), 1, "the watcher did not reload");
    assert!(
        failed[0].event.reason.as_deref().unwrap().contains("test.toml:8:10"),
        "{failed:?}"
    );
    assert_eq!(status(&gw, &token).await, 200, "the old policy stays in force");
    // A reload asked for directly says the same.
    let errors = gw.running.as_ref().unwrap().inner().reload_policy().await.unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("test.toml:8:10: route[1].roles: role \"clekr\" is not declared")
            && text[0].contains("did you mean \"clerk\""),
        "{text:?}"
    );
    assert_eq!(status(&gw, &token).await, 200, "the old policy stays in force");
    let failed = gw.wait_for_events("policy_reload_failed", 1).await;
    let reason = failed[0].event.reason.clone().unwrap();
    assert!(
        reason.contains("clekr") && reason.contains("previous policy kept"),
        "{reason}"
    );
}

// Lint warnings are audited (and logged) at start-up and again on a reload that
// succeeds, with file and line.
#[tokio::test]
async fn lint_warnings_audited() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let at_start = gw.audit_events("policy_warning").await;
    assert_eq!(at_start.len(), 1, "the members route is shadowed by everything");
    let reason = at_start[0].event.reason.clone().unwrap();
    assert!(
        reason.contains("test.toml:10: route \"members\": wholly shadowed"),
        "{reason}"
    );

    let gw2 = gateway(&rec).await;
    assert!(gw2.audit_events("policy_warning").await.is_empty());
    let open = POLICY.replace("roles = [\"clerk\"]\n", "");
    std::fs::write(gw2.dir.path().join("policies/test.toml"), open).unwrap();
    gw2.running.as_ref().unwrap().inner().reload_policy().await.unwrap();
    let warnings = gw2.audit_events("policy_warning").await;
    assert_eq!(warnings.len(), 1);
    let reason = warnings[0].event.reason.clone().unwrap();
    assert!(
        reason.contains("test.toml:4: route \"stock\": open to every signed-in account"),
        "{reason}"
    );
}

// With [roles] declared, a policy naming another role stops start-up (file, line and
// column of the role) and fails `policy check`; without [roles] it is a warning.
#[tokio::test]
async fn undeclared_role_at_start_up() {
    let rec = Recorder::start().await;
    let typo = POLICY.replace("[\"clerk\"]", "[\"customer\", \"clekr\"]");
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], &typo).extra(ROLES).write(dir.path());
    let errors = match Gateway::new(Config::load(&path).unwrap()).await {
        Err(StartError::Policy(errors)) => errors,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started with an undeclared role"),
    };
    assert!(
        errors[0]
            .to_string()
            .contains("test.toml:8:22: route[1].roles: role \"clekr\""),
        "{errors:?}"
    );
    let out = cli(&path, &["policy", "check"]);
    assert!(!out.ok, "{}", out.text);
    assert!(out.stderr.contains("role \"clekr\" is not declared"), "{}", out.text);

    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], &typo).write(dir.path());
    let out = cli(&path, &["policy", "check"]);
    assert!(out.ok, "{}", out.text);
}

// A configuration with errors in three sections reports all three with their lines; a
// policy file with syntax errors in two tables reports both.
#[tokio::test]
async fn every_error_in_one_run() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&[("rec", rec.url())], POLICY).extra(
        "[limits]\nupstream_timeout = \"soon\"\n\n[login]\nmax_failures = \"five\"\n\n[tokens]\nalgorithm = 256\n",
    );
    let path = setup.write(dir.path());
    let out = cli(&path, &["user", "list"]);
    assert!(!out.ok);
    for at in ["gateway.toml:11:20:", "gateway.toml:14:16:", "gateway.toml:17:13:"] {
        assert!(out.stderr.contains(at), "{at} in {}", out.stderr);
    }
    let out = cli(&path, &["policy", "check"]);
    assert!(!out.ok && out.stderr.contains("3 error(s)"), "{}", out.stderr);

    let broken = "upstream = \"rec\"\n\n[[route]]\nname = \"a\"\nmethods = [\"GET\"\npath = \"/a\"\npublic = true\n\n[[route]]\nname = \"b\"\nmethods = [\"GET\"]\npath = = \"/b\"\npublic = true\n";
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], broken).write(dir.path());
    let out = cli(&path, &["policy", "check"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("test.toml:6:") && out.stderr.contains("test.toml:12:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 error(s)"), "{}", out.stderr);
}
