//! The configuration's parsing and validation, file:line:key errors included.

use std::path::Path;

use super::*;
use crate::source::SourceError;

pub(crate) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8443"
public_url = "https://localhost:8443"
data_dir = "data"
policies = "policies"

[upstreams]
shop = "http://127.0.0.1:8081"
"#;

/// The configuration, or its first error (the tests below each make one).
fn parse(src: &str) -> Result<Config, SourceError> {
    Config::parse(Path::new("/etc/portcullis/gateway.toml"), src).map_err(|mut e| e.0.remove(0))
}

// Three errors in three sections, of three kinds (a type error, an unknown key and a
// bad duration), are all reported in one run, in file order, each at its line.
#[test]
fn every_error_in_one_run() {
    let src = format!(
        "{MINIMAL}\n[login]\nmax_failures = \"five\"\n\n[limits]\nmax_bodee = \"1MiB\"\n\n[tokens]\naccess_ttl = \"forever\"\n"
    );
    let e = Config::parse(Path::new("g.toml"), &src).unwrap_err();
    let lines: Vec<_> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(12), Some(15), Some(18)], "{e}");
    let text = e.to_string();
    assert!(
        text.contains("max_bodee") && text.contains("access_ttl") && text.ends_with("3 errors"),
        "{text}"
    );
    // Validation errors are collected too: two bad values, two errors.
    let src = MINIMAL
        .replace("127.0.0.1:8443", "localhost")
        .replace("https://localhost:8443", "ftp:x");
    assert_eq!(Config::parse(Path::new("g.toml"), &src).unwrap_err().0.len(), 2);
}

// A minimal file gets the documented defaults and paths relative to the file.
#[test]
fn minimal_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.limits.max_body, 10 << 20);
    assert_eq!(c.limits.upstream_timeout, Duration::from_secs(30));
    assert_eq!(c.server.data_dir, PathBuf::from("/etc/portcullis/data"));
    assert_eq!(c.login.max_failures, 5);
    assert_eq!(c.upstreams["shop"].authority.as_str(), "127.0.0.1:8081");
}

// The shipped gateway.toml is valid.
#[test]
fn shipped_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    Config::load(&path).unwrap();
}

// An unknown key is an error naming the key and its line.
#[test]
fn unknown_key() {
    let src = MINIMAL.replace("[upstreams]", "[limits]\nmax_bodee = \"1MiB\"\n\n[upstreams]");
    let e = parse(&src).unwrap_err().to_string();
    assert!(e.contains("gateway.toml:9:1:"), "{e}");
    assert!(e.contains("max_bodee"), "{e}");
}

// Workers default to one per core; zero or an absurd count is refused at its line.
#[test]
fn workers_bounds() {
    assert_eq!(parse(MINIMAL).unwrap().server.workers, default_workers());
    let src = MINIMAL.replace("policies = \"policies\"", "policies = \"policies\"\nworkers = 3");
    assert_eq!(parse(&src).unwrap().server.workers, 3);
    for bad in ["0", "1000"] {
        let src = MINIMAL.replace(
            "policies = \"policies\"",
            &format!("policies = \"policies\"\nworkers = {bad}"),
        );
        let e = parse(&src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("[server] workers"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }
}

// A bad duration names the key, the line and the value.
#[test]
fn bad_duration() {
    let src = format!("{MINIMAL}\n[login]\nlockout = \"15 minutes\"\n");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, Some(12), "{e}");
    assert_eq!(e.key.as_deref(), Some("[login] lockout"), "{e}");
    assert!(e.message.contains("invalid duration"), "{e}");
}

// An upstream that is not a valid http URL stops start-up.
#[test]
fn bad_upstream_url() {
    for bad in ["not a url", "ftp://x", "127.0.0.1:8081", "http://u:p@host"] {
        let src = MINIMAL.replace("http://127.0.0.1:8081", bad);
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, Some(9), "{bad}: {e}");
        assert_eq!(e.key.as_deref(), Some("[upstreams] shop"), "{bad}: {e}");
    }
}

// A zero limit is refused rather than taken to mean "none".
#[test]
fn zero_limit() {
    let src = format!("{MINIMAL}\n[limits]\nidle_timeout = \"0s\"\n");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, Some(12), "{e}");
    assert_eq!(e.key.as_deref(), Some("[limits] idle_timeout"));
}

// The body deadlines, the upstream connection cap and the drain deadline are read,
// default when absent, and a zero is refused at its line.
#[test]
fn edge_limits() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.limits.body_read_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.request_timeout, Duration::from_secs(300));
    assert_eq!(c.limits.upstream_max_connections, 256);
    assert_eq!(c.limits.upstream_idle_timeout, Duration::from_secs(90));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    let src = format!(
        "{}\n[limits]\nbody_read_timeout = \"5s\"\nrequest_timeout = \"1m\"\nupstream_max_connections = 8\nupstream_idle_timeout = \"10s\"\n",
        MINIMAL.replace("policies = \"policies\"", "policies = \"policies\"\ndrain_timeout = \"3s\"")
    );
    let c = parse(&src).unwrap();
    assert_eq!(c.limits.body_read_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.request_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.upstream_max_connections, 8);
    assert_eq!(c.limits.upstream_idle_timeout, Duration::from_secs(10));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(3));
    for (key, value) in [
        ("body_read_timeout", "\"0s\""),
        ("request_timeout", "\"0s\""),
        ("upstream_max_connections", "0"),
        ("upstream_idle_timeout", "\"0s\""),
    ] {
        let e = parse(&format!("{MINIMAL}\n[limits]\n{key} = {value}\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(format!("[limits] {key}").as_str()), "{e}");
        assert_eq!(e.line, Some(12), "{e}");
    }
    let e = parse(&MINIMAL.replace(
        "policies = \"policies\"",
        "policies = \"policies\"\ndrain_timeout = \"0s\"",
    ))
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("[server] drain_timeout"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
}

// A bad listen address names its key.
#[test]
fn bad_listen() {
    let e = parse(&MINIMAL.replace("127.0.0.1:8443", "localhost")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("[server] listen"), "{e}");
    assert_eq!(e.line, Some(3));
}

// `[email.smtp]` errors name the file, the line and the key.
#[test]
fn smtp_errors_name_file_line_and_key() {
    let src = format!(
        "{MINIMAL}\n[email.smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nfrom = \"no-reply@shop.example\"\n"
    );
    let e = parse(&src).unwrap_err().to_string();
    assert!(e.starts_with("/etc/portcullis/gateway.toml:13:"), "{e}");
    assert!(e.contains("tls") && e.contains("loopback"), "{e}");
    let src =
        format!("{MINIMAL}\n[email.smtp]\nhost = \"localhost\"\npassword = \"x\"\nfrom = \"no-reply@shop.example\"\n");
    let e = parse(&src).unwrap_err().to_string();
    assert!(e.contains(":13:") && e.contains("PORTCULLIS_SMTP_PASSWORD"), "{e}");
    let src = format!("{MINIMAL}\n[email.smtp]\nhost = \"localhost\"\nfrom = \"no-reply@shop.example\"\n");
    assert!(parse(&src).unwrap().email.smtp.is_some());
    let src = format!("{MINIMAL}\n[email.smtp]\nhost = \"localhost\"\nfrom = \"no-reply@shop.example\"\nca = \"/nonexistent/ca.pem\"\n");
    let e = parse(&src).unwrap_err().to_string();
    assert!(
        e.contains(":14:") && e.contains("[email.smtp] ca") && e.contains("cannot read"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let src = format!(
        "{MINIMAL}\n[email.smtp]\nhost = \"localhost\"\nfrom = \"no-reply@shop.example\"\nca = \"{}\"\n",
        dir.path().join("ca.pem").display()
    );
    let e = parse(&src).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
}

// `[password] reject_common` defaults to on and `reset_ttl` to 30 minutes; both are read,
// and a zero reset_ttl is refused at its line.
#[test]
fn password_reset_keys() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.password.reject_common);
    assert_eq!(c.password.reset_ttl, Duration::from_secs(1800));
    let src = format!("{MINIMAL}\n[password]\nreject_common = false\nreset_ttl = \"10m\"\n");
    let c = parse(&src).unwrap();
    assert!(!c.password.reject_common);
    assert_eq!(c.password.reset_ttl, Duration::from_secs(600));
    let e = parse(&format!("{MINIMAL}\n[password]\nreset_ttl = \"0s\"\n")).unwrap_err();
    assert_eq!(e.line, Some(12), "{e}");
    assert_eq!(e.key.as_deref(), Some("[password] reset_ttl"));
}

// `[tokens] idle_timeout` is off by default, read as a duration, and refused when zero
// with the file, line and key named.
#[test]
fn idle_timeout() {
    assert_eq!(parse(MINIMAL).unwrap().tokens.idle_timeout, None);
    let c = parse(&format!("{MINIMAL}\n[tokens]\nidle_timeout = \"5m\"\n")).unwrap();
    assert_eq!(c.tokens.idle_timeout, Some(Duration::from_secs(300)));
    let e = parse(&format!("{MINIMAL}\n[tokens]\nidle_timeout = \"0s\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gateway.toml") && e.contains("idle_timeout") && e.contains(":12:"),
        "{e}"
    );
}
