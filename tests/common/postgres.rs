//! A throwaway PostgreSQL for tests: `initdb` into a temporary directory, `postgres` on
//! a free loopback port, a fresh database per test. PostgreSQL refuses to run as root,
//! so as root the cluster belongs to the `postgres` user and runs as it (`setpriv`);
//! either way the server gets the parent-death signal, so it dies with the test process.
//!
//! [`PgCluster::shared`] is one cluster per test binary, started on first use;
//! [`PgCluster::start`] is a cluster of one's own, which [`PgCluster::stop`] and
//! [`PgCluster::restart`] take down and bring back on the same port (the outage tests).
//! Without PostgreSQL installed, the tests fail saying how to install it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running (or stopped) throwaway cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// (uid, gid) of `postgres` when this process is root.
    owner: Option<(u32, u32)>,
    databases: AtomicU32,
    /// Settings given with `-c` besides the usual ones.
    extra: std::sync::Mutex<Vec<String>>,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// The test binary's cluster, started on first use and never stopped (it dies with
    /// the process).
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(PgCluster::start)
    }

    /// A cluster of one's own, removed when dropped.
    pub fn start() -> PgCluster {
        let cluster = PgCluster::init();
        cluster.restart();
        cluster
    }

    /// A cluster of one's own, made but not started: [`PgCluster::set`] and
    /// [`PgCluster::write`] prepare it, [`PgCluster::restart`] starts it.
    pub fn init() -> PgCluster {
        let bin = bin_dir();
        let base = std::env::temp_dir().join("portcullis-pg");
        fs::create_dir_all(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        remove_stale(&base);
        let dir = base.join(format!(
            "{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let owner = is_root().then(postgres_user);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
            owner,
            databases: AtomicU32::new(0),
            extra: Default::default(),
        };
        let out = cluster
            .command("initdb")
            .args(["-D"])
            .arg(cluster.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// A server setting (`name=value`) for the next start.
    pub fn set(&self, setting: &str) {
        self.extra.lock().unwrap().push(setting.to_owned());
    }

    /// Writes a file into the cluster's directory, mode 0600, owned by the server's
    /// user; its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
        path
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command of the cluster's binaries, as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = Command::new("setpriv");
        if self.owner.is_some() {
            c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"]);
        }
        c.args(["--pdeathsig", "KILL", "--"]).arg(path);
        c.current_dir(&self.dir);
        c
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn restart(&self) {
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data());
        cmd.args(["-p", &self.port.to_string(), "-k"]).arg(&self.dir);
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
            "shared_buffers=16MB",
        ] {
            cmd.args(["-c", setting]);
        }
        for setting in self.extra.lock().unwrap().iter() {
            cmd.args(["-c", setting]);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // The parent-death signal follows the thread that forked the server: a thread
        // that lives as long as the server does.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
        rx.recv().unwrap().expect("postgres starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are cut off) and waits until it is gone.
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "fast", "-w", "-t", "30"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh, empty database; its URL (no TLS, trust authentication).
    pub async fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        // Over the Unix socket: whatever the cluster asks of TCP clients (TLS, say).
        let admin = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        self.url(&name)
    }

    /// The URL of one of its databases.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    /// A plain client of a database (to look at the tables behind the store's back).
    pub async fn client(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate", "-w"])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's `bin`, or a failed test saying how to install it.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the store tests need it; \
             install it with `apt-get install postgresql`"
        ),
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("a postgres user (made by `apt-get install postgresql`) to run the test cluster as")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes the clusters of test processes that have ended.
fn remove_stale(base: &Path) {
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
