//! Start-up refuses bad configuration and bad policies, naming file, key and line; the
//! command line exits non-zero on them.

mod common;

use common::{cli, portcullis_bin, Recorder, Setup, OPEN_POLICY};
use portcullis::server::StartError;
use portcullis::{Config, Gateway};

// A bad gateway.toml stops start-up with the file, the key and the line.
#[tokio::test]
async fn bad_config_named() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&[("rec", rec.url())], OPEN_POLICY).extra("[limits]\nupstream_timeout = \"soon\"\n");
    let path = setup.write(dir.path());
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("gateway.toml:"), "{err}");
    assert!(err.contains("[limits] upstream_timeout"), "{err}");
    assert!(
        err.contains("gateway.toml:11:20: [limits] upstream_timeout: invalid duration \"soon\""),
        "{err}"
    );

    let out = cli(&path, &["serve"]);
    assert!(!out.ok);
    let stderr = out.stderr;
    assert!(stderr.contains("[limits] upstream_timeout"), "{stderr}");
}

// A policy naming an upstream that does not exist, or not parsing, stops start-up with
// file, line and column.
#[tokio::test]
async fn bad_policy_named() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = OPEN_POLICY.replace("upstream = \"rec\"", "upstream = \"missing\"");
    let path = Setup::new(&[("rec", rec.url())], &policy).write(dir.path());
    let err = match Gateway::new(Config::load(&path).unwrap()).await {
        Err(StartError::Policy(errors)) => errors,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started with a bad policy"),
    };
    let text = err[0].to_string();
    assert!(
        text.contains("test.toml:2:12: upstream: upstream \"missing\" is not defined"),
        "{text}"
    );

    let broken = OPEN_POLICY.replace("[[route]]\nname = \"members\"", "[[route]\nname = \"members\"");
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], &broken).write(dir.path());
    let out = cli(&path, &["serve"]);
    assert!(!out.ok);
    let stderr = out.stderr;
    assert!(stderr.contains("test.toml:10:"), "{stderr}");
}

// `policy check` passes on the shipped policies and fails with located errors otherwise;
// `policy test` passes on the shipped cases and fails on a wrong expectation.
#[test]
fn policy_tools() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = portcullis_bin()
        .current_dir(root)
        .args(["policy", "check", "policies/"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = portcullis_bin()
        .current_dir(root)
        .args(["policy", "test", "policies/"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let shop = std::fs::read_to_string(format!("{root}/policies/shop.toml")).unwrap();
    let wrong = shop.replacen("expect = \"deny\"", "expect = \"allow\"", 1);
    std::fs::write(dir.path().join("shop.toml"), wrong).unwrap();
    let out = portcullis_bin()
        .current_dir(root)
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL ") && stdout.contains("shop.toml:"), "{stdout}");

    // Warnings are printed, and the check still passes.
    let lint_dir = tempfile::tempdir().unwrap();
    let open = "upstream = \"shop\"\n[[route]]\nname = \"open\"\nmethods = [\"GET\"]\npath = \"/o\"\n";
    std::fs::write(lint_dir.path().join("open.toml"), open).unwrap();
    let check = |dir: &std::path::Path| {
        portcullis_bin()
            .current_dir(root)
            .args(["policy", "check"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = check(lint_dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("open.toml:2: route \"open\": open to every signed-in account"),
        "{stdout}"
    );
    // The shipped gateway.toml declares [roles]: a role it does not declare is an error.
    let typo = format!("{open}[[route]]\nname = \"typo\"\nmethods = [\"GET\"]\npath = \"/t\"\nroles = [\"amdin\"]\n");
    std::fs::write(lint_dir.path().join("open.toml"), typo).unwrap();
    let out = check(lint_dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("open.toml:10:10: route[2].roles: role \"amdin\" is not declared")
            && stderr.contains("did you mean \"admin\""),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("bad.toml"),
        "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"x\"\n",
    )
    .unwrap();
    let out = portcullis_bin()
        .current_dir(root)
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.toml:4:8: route[1].path"), "{stderr}");
}

// A data directory that already exists readable by everyone (it holds the password
// hashes) is made private at start: 0700, and its files lose their group and other bits.
#[tokio::test]
async fn data_dir_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], OPEN_POLICY).write(dir.path());
    let data = dir.path().join("data");
    let db = data.join("db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // First start, then an operator's `chmod -R a+rX data` (or a restore from a backup).
    let mut gw = common::TestGateway::launch(dir, &path, None).await;
    gw.shutdown().await;
    let conf = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("sled wrote no file");
    for (p, m) in [(&data, 0o755), (&db, 0o755), (&conf, 0o644)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let dir = gw.dir;
    let mut gw = common::TestGateway::launch(dir, &path, None).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o700);
    assert_eq!(mode(&conf), 0o600, "{}", conf.display());
    gw.shutdown().await;
}

/// Runs `portcullis serve` with stdout on a pipe until it logs that it serves, then
/// stops it; returns what it wrote.
fn serve_output(args: &[&str], config: &std::path::Path) -> String {
    use std::io::BufRead;
    let mut child = portcullis_bin()
        .args(args)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.contains("gateway serving") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push_str(&(line + "\n")),
            Err(_) => {
                let _ = child.kill();
                panic!("no 'gateway serving' line within 60 s; got:\n{out}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

// Log lines: no colour codes when stdout is not a terminal; `--log-format json` (or
// PORTCULLIS_LOG_FORMAT=json) writes one JSON object per line.
#[tokio::test]
async fn log_formats() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], OPEN_POLICY).write(dir.path());
    let text = serve_output(&[], &path);
    assert!(!text.contains('\u{1b}'), "colour codes on a pipe:\n{text}");
    let json = serve_output(&["--log-format", "json"], &path);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{line}");
    }
    assert!(json.contains("\"message\":\"gateway serving\""), "{json}");
}
