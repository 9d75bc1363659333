//! Forward-auth with a real nginx (Debian's package, `/usr/sbin/nginx`): the README's
//! `auth_request` configuration, read from the README itself, in front of a recorder,
//! asking the gateway over TLS. Allowed requests reach the upstream with the identity
//! headers `auth_request_set` copied; refused, unauthenticated and path-trick requests
//! do not reach it at all.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Recorder, Setup, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NGINX: &str = "/usr/sbin/nginx";

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "catalogue"
methods = ["GET"]
path = "/api/products"
public = true

[[route]]
name = "orders"
methods = ["GET"]
path = "/api/orders"
roles = ["customer"]

[[route]]
name = "internal"
methods = ["GET"]
path = "/internal"
roles = ["admin"]
"#;

/// The nginx snippet of the README's forward-auth section, as written there.
fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Forward-auth")
        .expect("no Forward-auth section in README.md")..];
    let start = section
        .find("```nginx\n")
        .expect("no nginx snippet in the Forward-auth section")
        + 9;
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_owned()
}

/// nginx, started in the foreground (one process) with every path in its own temporary
/// directory; killed when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// nginx on a free loopback port, with the README's snippet pointed at `gw` and `upstream`.
    async fn start(gw: &TestGateway, upstream: &Recorder) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: this test needs Debian's nginx (apt-get install nginx; .ci/run installs it)"
        );
        let dir = gw.dir.path().join("nginx");
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let gateway = gw.addr.port();
        let snippet = readme_snippet()
            .replace("http://127.0.0.1:8000", &upstream.url())
            .replace("127.0.0.1:8443", &format!("127.0.0.1:{gateway}"))
            .replace("localhost:8443", &format!("localhost:{gateway}"))
            .replace(
                "/var/lib/portcullis/tls/gateway.crt",
                gw.dir.path().join("data/tls/gateway.crt").to_str().unwrap(),
            );
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n{snippet}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), &conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut nginx = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(nginx.addr).await.is_ok() {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut err = String::new();
                std::io::Read::read_to_string(nginx.child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("nginx exited ({status}): {err}\n{}\n{conf}", nginx.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen on {}: {}", nginx.addr, nginx.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// Sends raw HTTP/1.1 to nginx (so no client tidies the target) and returns the
    /// status and the head of the answer.
    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
            .await
            .expect("nginx did not answer")
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn head_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// nginx with the README's `auth_request` configuration: allowed requests reach the
// upstream with the X-Auth-* identity headers (and without the token, or a client's own
// X-Auth-User); a route without the caller's role is 403; no token is 401 for an API
// client (with the challenge) and a redirect to the gateway's login page for a browser;
// path tricks are refused; none of the refused requests reaches the upstream.
#[tokio::test]
async fn nginx_auth_request() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY).start().await;
    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let nginx = Nginx::start(&gw, &rec).await;
    let bearer = format!("Bearer {token}");

    let (status, head) = nginx
        .get(
            "/api/orders?page=2",
            &[("Authorization", &bearer), ("X-Auth-User", "admin")],
        )
        .await;
    assert_eq!(status, 200, "{head}\n{}", nginx.log());
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/orders?page=2");
    let h = &seen[0].headers;
    assert_eq!(h["x-auth-user"], id.as_str());
    assert_eq!(
        h.get_all("x-auth-user").iter().count(),
        1,
        "the client's X-Auth-User passed"
    );
    assert_eq!(h["x-auth-email"], "casey@example.com");
    assert_eq!(h["x-auth-roles"], "customer");
    assert!(h.get("authorization").is_none(), "the token reached the upstream");

    // Anonymous on a public route: through, with no identity, not even the client's own.
    let (status, _) = nginx.get("/api/products", &[("X-Auth-User", "admin")]).await;
    assert_eq!(status, 200);
    let seen = rec.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].headers.get("x-auth-user").is_none(),
        "a client's X-Auth-User reached the upstream"
    );

    let (status, _) = nginx.get("/internal", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 403);
    let (status, head) = nginx.get("/api/orders", &[]).await;
    assert_eq!(status, 401, "{head}");
    assert_eq!(head_value(&head, "www-authenticate"), Some("Bearer"));
    let (status, head) = nginx.get("/api/orders", &[("Accept", "text/html")]).await;
    assert_eq!(status, 302, "{head}");
    assert_eq!(
        head_value(&head, "location"),
        Some(format!("https://localhost:{}/auth/login?next=/api/orders", gw.addr.port()).as_str())
    );
    for trick in [
        "/api/orders/../../internal",
        "/api/orders/%2e%2e/%2e%2e/internal",
        "/api/products/..%2F..%2Finternal",
        "//internal",
    ] {
        let (status, head) = nginx.get(trick, &[("Authorization", &bearer)]).await;
        assert_eq!(status, 403, "{trick}: {head}");
    }
    // A client sending the other header pair of its own: the snippet empties it, so the
    // gateway judges what was asked (403), never the target the client chose.
    let (status, _) = nginx
        .get(
            "/internal",
            &[
                ("Authorization", &bearer),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/api/products"),
            ],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(rec.requests().len(), 2, "a refused request reached the upstream");
}
