//! `portcullis policy init --from-openapi` on two OpenAPI documents this project did not
//! write: the one a FastAPI application generates (3.1, JSON, fetched from the running
//! app) and the OpenAPI Initiative's petstore-expanded example (3.0, YAML, `allOf` and
//! `$ref`s; tests/fixtures/openapi/). For each, the policy parses, `policy check` passes with
//! exactly the expected warnings, `policy test` passes, and a gateway running it routes
//! the documented paths: 403 as generated (`roles = []`), to the upstream once a role is
//! filled in, and 404 for what the document does not describe.
//!
//! The FastAPI app runs from a Python virtual environment with fastapi and uvicorn:
//! `PORTCULLIS_TEST_VENV`, default `target/ci-venv` (made by `bash .ci/venv`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{cli, portcullis_bin, Recorder, Setup, TestGateway};

/// Runs `policy init` on a document and returns the policy it printed.
fn generate(document: &Path, upstream: &str) -> String {
    let out = portcullis_bin()
        .args(["policy", "init", "--from-openapi"])
        .arg(document)
        .args(["--upstream", upstream])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = String::from_utf8(out.stdout).unwrap();
    // Deterministic: the same document gives the same bytes.
    let again = portcullis_bin()
        .args(["policy", "init", "--from-openapi"])
        .arg(document)
        .args(["--upstream", upstream])
        .output()
        .unwrap();
    assert_eq!(a.as_bytes(), again.stdout.as_slice());
    a
}

/// A field list, if the route has one.
type Names = Option<Vec<String>>;
/// A generated route: name, method, path, request_fields, response_fields.
type GeneratedRoute = (String, String, String, Names, Names);

/// The routes of a generated policy, checking it is plain TOML of the expected form.
fn routes(policy: &str) -> Vec<GeneratedRoute> {
    let value: toml::Table = toml::from_str(policy).expect("the generated policy is TOML");
    assert_eq!(value["upstream"].as_str(), Some("api"));
    let list = |v: Option<&toml::Value>| {
        v.map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect()
        })
    };
    value["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.get("roles").and_then(|r| r.as_array()).map(Vec::len), Some(0), "{r}");
            assert!(r.get("public").is_none());
            let methods = r["methods"].as_array().unwrap();
            assert_eq!(methods.len(), 1);
            (
                r["name"].as_str().unwrap().to_owned(),
                methods[0].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                list(r.get("request_fields")),
                list(r.get("response_fields")),
            )
        })
        .collect()
}

/// `policy check` and `policy test` on the policy in front of `upstream_url`: both pass,
/// and the warnings are exactly one `roles = []` warning per route.
fn check_and_test(policy: &str, upstream_url: &str, route_count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::new(&[("api", upstream_url.to_owned())], policy).write(dir.path());
    let check = cli(&config, &["policy", "check"]);
    assert!(check.ok, "{}", check.text);
    let warnings: Vec<&str> = check.stdout.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), route_count, "{}", check.text);
    assert!(
        warnings.iter().all(|w| w.contains("roles = [] allows nobody")),
        "{}",
        check.text
    );
    let test = cli(&config, &["policy", "test"]);
    assert!(test.ok, "{}", test.text);
}

/// Starts a gateway in front of `upstream_url` with the policy.
async fn gateway(policy: &str, upstream_url: &str) -> TestGateway {
    Setup::new(&[("api", upstream_url.to_owned())], policy).start().await
}

async fn status(gw: &TestGateway, method: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> u16 {
    let mut req = gw
        .client
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn petstore_expanded_3_0_yaml() {
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi/petstore-expanded.yaml");
    let policy = generate(&document, "api");
    let routes = routes(&policy);
    let fields = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let pet = fields(&["id", "name", "tag"]);
    // servers[0] is https://petstore.swagger.io/v2: the paths start with /v2. `Pet` is
    // `allOf` NewPet and {id}; findPets answers an array of them.
    assert_eq!(
        routes,
        vec![
            ("findPets".into(), "GET".into(), "/v2/pets".into(), None, pet.clone()),
            (
                "addPet".into(),
                "POST".into(),
                "/v2/pets".into(),
                fields(&["name", "tag"]),
                pet.clone()
            ),
            (
                "find pet by id".into(),
                "GET".into(),
                "/v2/pets/{id}".into(),
                None,
                pet.clone()
            ),
            ("deletePet".into(), "DELETE".into(), "/v2/pets/{id}".into(), None, None),
        ]
    );
    assert!(
        policy.contains("# no response_fields: the 204 response has no documented body"),
        "{policy}"
    );

    let upstream = Recorder::start().await;
    check_and_test(&policy, &upstream.url(), 4);

    // As generated: nobody gets through, and nothing reaches the upstream.
    let gw = gateway(&policy, &upstream.url()).await;
    let (_, token) = gw.signed_in("reader@example.com", &["reader"]).await;
    assert_eq!(status(&gw, "GET", "/v2/pets", &token, None).await, 403);
    assert_eq!(status(&gw, "DELETE", "/v2/pets/7", &token, None).await, 403);
    assert!(upstream.requests().is_empty());

    // With a role filled in, the documented operations reach the upstream; the rest is 404.
    let filled = policy.replace("roles = []\n", "roles = [\"reader\"]\n");
    let gw = gateway(&filled, &upstream.url()).await;
    let (_, token) = gw.signed_in("reader@example.com", &["reader"]).await;
    status(&gw, "GET", "/v2/pets", &token, None).await;
    status(
        &gw,
        "POST",
        "/v2/pets",
        &token,
        Some(serde_json::json!({"name": "Rex", "tag": "dog"})),
    )
    .await;
    status(&gw, "GET", "/v2/pets/7", &token, None).await;
    status(&gw, "DELETE", "/v2/pets/7", &token, None).await;
    let seen: Vec<(String, String)> = upstream.requests().into_iter().map(|r| (r.method, r.target)).collect();
    assert_eq!(
        seen,
        [
            ("GET", "/v2/pets"),
            ("POST", "/v2/pets"),
            ("GET", "/v2/pets/7"),
            ("DELETE", "/v2/pets/7")
        ]
        .map(|(m, t)| (m.to_owned(), t.to_owned()))
    );
    assert_eq!(status(&gw, "GET", "/pets", &token, None).await, 404);
    assert_eq!(status(&gw, "PUT", "/v2/pets/7", &token, None).await, 404);
    assert_eq!(status(&gw, "GET", "/v2/pets/7/owner", &token, None).await, 404);
    assert_eq!(upstream.requests().len(), 4);
}

/// The virtual environment with fastapi and uvicorn, or a failure saying how to make it.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PORTCULLIS_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import fastapi, uvicorn"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no Python with fastapi and uvicorn: create it with `bash .ci/venv` \
         (python3 -m venv target/ci-venv; pip install fastapi uvicorn), or point \
         PORTCULLIS_TEST_VENV at a virtual environment that has them",
        venv.display()
    );
    python
}

/// The FastAPI app of tests/openapi/app.py under uvicorn on a free loopback port; killed
/// when dropped.
struct FastApi {
    child: Child,
    url: String,
}

impl Drop for FastApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_fastapi() -> FastApi {
    let python = venv_python();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ])
        .args(["--port", &port.to_string(), "--app-dir"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi"))
        .spawn()
        .unwrap();
    let app = FastApi {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if reqwest::get(format!("{}/health", app.url))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the FastAPI app did not start on {}", app.url);
}

#[tokio::test]
async fn fastapi_3_1_json() {
    let app = start_fastapi().await;
    let document = reqwest::get(format!("{}/openapi.json", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(document.contains("\"openapi\":\"3.1"), "{document}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    let policy = generate(&file, "api");
    let routes = routes(&policy);
    let fields = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let item = fields(&["id", "name", "price", "supplier"]);
    let new_item = fields(&["name", "price", "supplier"]);
    let shape: Vec<(&str, &str, Names, Names)> = routes
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_str(), r.3.clone(), r.4.clone()))
        .collect();
    assert_eq!(
        shape,
        vec![
            // /health answers a dict (additionalProperties): free-form, no list.
            ("GET", "/health", None, None),
            ("GET", "/items", None, item.clone()),
            ("POST", "/items", new_item.clone(), item.clone()),
            ("GET", "/items/{item_id}", None, item.clone()),
            ("PUT", "/items/{item_id}", new_item.clone(), item.clone()),
            ("DELETE", "/items/{item_id}", None, None),
        ]
    );
    assert_eq!(routes[1].0, "list_items_items_get");
    assert!(policy.contains("# List the items\n[[route]]"), "{policy}");
    assert!(
        policy.contains("# no response_fields: the 200 response schema is free-form"),
        "{policy}"
    );

    check_and_test(&policy, &app.url, 6);

    let gw = gateway(&policy, &app.url).await;
    let (_, token) = gw.signed_in("reader@example.com", &["reader"]).await;
    assert_eq!(status(&gw, "GET", "/items", &token, None).await, 403);
    assert_eq!(status(&gw, "GET", "/items/1", &token, None).await, 403);

    // FastAPI answers for real once a role is filled in.
    let filled = policy.replace("roles = []\n", "roles = [\"reader\"]\n");
    let gw = gateway(&filled, &app.url).await;
    let (_, token) = gw.signed_in("reader@example.com", &["reader"]).await;
    let get = |path: &'static str| gw.client.get(gw.url(path)).bearer_auth(&token).send();
    let items: serde_json::Value = get("/items").await.unwrap().json().await.unwrap();
    assert_eq!(items[0]["name"], "lamp");
    let one: serde_json::Value = get("/items/1").await.unwrap().json().await.unwrap();
    assert_eq!(one["supplier"]["city"], "Springfield");
    let new = serde_json::json!({"name": "desk", "price": 80.0});
    assert_eq!(status(&gw, "POST", "/items", &token, Some(new)).await, 201);
    assert_eq!(status(&gw, "DELETE", "/items/2", &token, None).await, 204);
    assert_eq!(status(&gw, "GET", "/health", &token, None).await, 200);
    // FastAPI serves its own document, but the document does not describe it: 404 at the
    // gateway, never forwarded.
    assert_eq!(
        reqwest::get(format!("{}/openapi.json", app.url))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(status(&gw, "GET", "/openapi.json", &token, None).await, 404);
    assert_eq!(status(&gw, "GET", "/docs", &token, None).await, 404);
    assert_eq!(status(&gw, "PATCH", "/items/1", &token, None).await, 404);
}

#[test]
fn errors_go_to_stderr_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file: &Path| {
        portcullis_bin()
            .args(["policy", "init", "--from-openapi"])
            .arg(file)
            .output()
            .unwrap()
    };
    let missing = run(&dir.path().join("nope.yaml"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.yaml"));

    let swagger = dir.path().join("swagger.yaml");
    std::fs::write(&swagger, "swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n").unwrap();
    let out = run(&swagger);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OpenAPI 3"), "{out:?}");

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "openapi: 3.0.0\npaths:\n  /a:\n    get: [\n").unwrap();
    let out = run(&broken);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line"), "{out:?}");

    // A missing argument is a usage error, like the other commands'.
    let usage = portcullis_bin().args(["policy", "init"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// A third, larger-server-URL document: the OAI's USPTO example (3.0, a server URL with
/// variables, a form-encoded request body, a free-form response).
#[test]
fn uspto_3_0_yaml_checks_and_tests() {
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi/uspto.yaml");
    let policy = generate(&document, "api");
    let shape: Vec<(String, String, Names, Names)> =
        routes(&policy).into_iter().map(|r| (r.1, r.2, r.3, r.4)).collect();
    let fields = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    // `{scheme}://developer.uspto.gov/ds-api`: the variable's default fills the scheme.
    assert_eq!(
        shape,
        vec![
            ("GET".into(), "/ds-api/".into(), None, fields(&["apis", "total"])),
            ("GET".into(), "/ds-api/{dataset}/{version}/fields".into(), None, None),
            ("POST".into(), "/ds-api/{dataset}/{version}/records".into(), None, None),
        ]
    );
    assert!(policy.contains("# no request_fields: the request body may be application/x-www-form-urlencoded, not JSON"));
    check_and_test(&policy, "http://127.0.0.1:9", 3);
}
