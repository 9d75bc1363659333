//! `portcullis user ...` works on the database directly when the gateway is stopped, and
//! through the running gateway's admin socket when it is not; revocations done over the
//! socket take effect at once.

mod common;

use std::process::Command;

use common::{cli, cli_stdin, field, start_shop, CliOut, Setup, TestGateway};

// User commands, before and while the gateway runs.
#[tokio::test(flavor = "multi_thread")]
async fn user_commands_direct_and_over_socket() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::shop(shop).write(dir.path());

    // Gateway stopped: straight to the database. A password is generated when none is given.
    let CliOut {
        ok,
        stdout: out,
        stderr: err,
        ..
    } = cli(
        &config,
        &["user", "add", "--email", "Clerk@Example.com", "--role", "inventory"],
    );
    assert!(ok, "{err}");
    let password = field(&out, "password");
    assert!(field(&out, "id").starts_with("u-"));
    let out = cli_stdin(
        &config,
        &[
            "user",
            "add",
            "--email",
            "cust@example.com",
            "--role",
            "customer",
            "--password-stdin",
        ],
        b"Chosen!Passw0rd\n",
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains("password"), "printed a chosen password");
    let CliOut { ok, stderr: err, .. } = cli(
        &config,
        &["user", "add", "--email", "cust@example.com", "--role", "customer"],
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    // Gateway running: the same commands go through its socket.
    let gw = TestGateway::launch(dir, &config, None).await;
    let CliOut {
        ok,
        stdout: out,
        stderr: err,
        ..
    } = cli(&config, &["user", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("clerk@example.com") && out.contains("cust@example.com"),
        "{out}"
    );

    let (status, body) = gw.login("clerk@example.com", &password).await;
    assert_eq!(status, 200);
    assert_eq!(body["mfa_enrollment_required"], true, "inventory staff must enrol");

    let (status, t) = gw.login("cust@example.com", "Chosen!Passw0rd").await;
    assert_eq!(status, 200);
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 200);
    let CliOut { ok, stderr: err, .. } = cli(&config, &["user", "revoke", "cust@example.com"]);
    assert!(ok, "{err}");
    assert_eq!(
        gw.get_with("/auth/me", &access).await.0,
        401,
        "revocation over the socket did not take effect"
    );

    for _ in 0..5 {
        gw.login("cust@example.com", "Wrong!Passw0rd").await;
    }
    let CliOut { stdout: out, .. } = cli(&config, &["user", "show", "cust@example.com"]);
    assert!(out.contains("locked"), "{out}");
    assert_eq!(gw.login("cust@example.com", "Chosen!Passw0rd").await.0, 429);
    let CliOut { ok, .. } = cli(&config, &["user", "unlock", "cust@example.com"]);
    assert!(ok);
    assert_eq!(gw.login("cust@example.com", "Chosen!Passw0rd").await.0, 200);

    let CliOut { ok, .. } = cli(&config, &["user", "roles", "cust@example.com", "support"]);
    assert!(ok);
    let CliOut { stdout: out, .. } = cli(&config, &["user", "show", "cust@example.com"]);
    assert!(out.contains("support"), "{out}");
    let CliOut { ok, .. } = cli(&config, &["user", "disable", "cust@example.com"]);
    assert!(ok);
    let (status, body) = gw.login("cust@example.com", "Chosen!Passw0rd").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("account_disabled")));

    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(gw.dir.path().join("data/admin.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

// The admin socket checks who is calling, not only its file mode: with the data
// directory and the socket loosened to everyone, another user is still refused, and
// the gateway's own user is still answered.
#[tokio::test(flavor = "multi_thread")]
async fn admin_socket_refuses_other_users() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let data = gw.dir.path().join("data");
    assert_eq!(
        std::fs::metadata(&data).unwrap().uid(),
        0,
        "this test switches to another user to call the socket, so it runs as root (as CI does)"
    );
    let socket = portcullis::admin::socket_path(&data);
    for (p, m) in [
        (gw.dir.path(), 0o755),
        (data.as_path(), 0o755),
        (socket.as_path(), 0o777),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let request = serde_json::to_string(&portcullis::admin::AdminRequest::List).unwrap();
    let client = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(sys.argv[2].encode()+b'\\n')\nprint(s.makefile().readline())";
    let ask = |uid: u32| {
        let out = Command::new("python3")
            .args(["-c", client, socket.to_str().unwrap(), &request])
            .uid(uid)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let nobody = ask(65534);
    assert!(nobody.contains("only the gateway's own user"), "{nobody}");
    assert!(!nobody.contains("\"ok\""), "{nobody}");
    let owner = ask(0);
    assert!(owner.contains("\"ok\""), "{owner}");
}

// A build without the `demo` feature has no shop: `portcullis demo` says so and fails.
#[cfg(not(feature = "demo"))]
#[test]
fn demo_needs_the_demo_feature() {
    let out = cli(std::path::Path::new("gateway.toml"), &["demo"]);
    assert!(!out.ok, "{}", out.text);
    assert!(
        out.stderr
            .contains("this build has no demo shop; build with --features demo"),
        "{}",
        out.text
    );
}
