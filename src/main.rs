//! The `portcullis` command line: parse, load the configuration, call into the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portcullis::admin::AdminRequest;
use portcullis::auth::service::AuthService;
use portcullis::policy::{run_case, PolicySet};
use portcullis::{Config, Gateway};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A TLS-terminating, authenticating reverse proxy"
)]
struct Cli {
    /// The gateway configuration.
    #[arg(long, global = true, default_value = "gateway.toml")]
    config: PathBuf,
    /// How `serve` and `demo` write their log lines to standard output.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PORTCULLIS_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One line per event, for people (colours only on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Start the demo shop and the gateway together, and print ready-to-paste curl lines.
    Demo,
    /// Check and test policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage accounts (works whether or not the gateway is running).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Query and verify the audit trail (works whether or not the gateway is running).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the current TOTP code for a base32 secret (for trying the demo with curl).
    Totp { secret: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the public signing key as PEM (for other verifiers, e.g. HAProxy's jwt_verify).
    PublicPem,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Audit records, oldest first.
    List {
        /// A user id or email.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        event: Option<String>,
        /// RFC 3339 time, e.g. 2026-11-24T08:00:00Z (inclusive).
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time (exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Only the newest N matching records.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and its signed checkpoints; exit 1 naming the first broken record.
    Verify {
        /// Also hold the chain to a checkpoint printed earlier by `audit checkpoint`.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Sign a checkpoint of the chain's head (when it moved) and print the newest, as one
    /// line of JSON to keep off the machine.
    Checkpoint,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a confirmed account; prints its id, and a generated password when none is given.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        name: Option<String>,
    },
    /// Every account: roles, MFA, lock and disabled state.
    List,
    /// One account.
    Show { email: String },
    /// Clear a lockout.
    Unlock { email: String },
    /// Set the roles of an account (its sessions are revoked).
    Roles {
        email: String,
        #[arg(required = true)]
        roles: Vec<String>,
    },
    /// Disable an account and revoke its sessions.
    Disable { email: String },
    /// Revoke every session and access token of an account.
    Revoke { email: String },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; errors name file, line and column. Exit 1 on any error.
    Check { dir: Option<PathBuf> },
    /// Run the [[test]] cases of the policy files. Exit 1 on a failed case.
    Test { dir: Option<PathBuf> },
    /// Which routes match a request, which condition of each passes or fails, and the decision.
    Explain {
        method: String,
        path: String,
        /// A role of the caller (repeatable); with no role and no user, the caller is anonymous.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The caller's user id.
        #[arg(long)]
        user: Option<String>,
        /// The caller's login passed TOTP.
        #[arg(long)]
        mfa: bool,
        /// Policy directory (default: the configured one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => run_async(serve(&cli.config, false, cli.log_format)),
        Command::Demo => run_async(serve(&cli.config, true, cli.log_format)),
        Command::Policy { command } => match command {
            PolicyCommand::Check { dir } => policy_check(&cli.config, dir.as_deref()),
            PolicyCommand::Test { dir } => policy_test(&cli.config, dir.as_deref()),
            PolicyCommand::Explain {
                method,
                path,
                roles,
                user,
                mfa,
                dir,
            } => policy_explain(&cli.config, dir.as_deref(), &method, &path, roles, user, mfa),
        },
        Command::User { command } => user_command(&cli.config, command),
        Command::Audit { command } => audit_command(&cli.config, command),
        Command::Keys {
            command: KeysCommand::PublicPem,
        } => {
            let Some(config) = load_config(&cli.config) else {
                return ExitCode::FAILURE;
            };
            let issuer = config.server.public_url.to_string();
            match portcullis::auth::tokens::KeyRing::load_or_generate(
                &config.server.data_dir.join("keys"),
                config.tokens.algorithm,
                issuer.trim_end_matches('/'),
            ) {
                Ok(keys) => {
                    print!("{}", keys.public_pem());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Totp { secret } => {
            let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
            match portcullis::auth::totp::code_at(&secret.replace(' ', "").to_uppercase(), now) {
                Some(code) => {
                    println!("{code}");
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("portcullis: not a valid base32 TOTP secret");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn user_command(config_path: &Path, command: UserCommand) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let show_list = matches!(command, UserCommand::List);
    let request = match command {
        UserCommand::Add {
            email,
            roles,
            password_stdin,
            name,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line).is_err() || line.trim_end_matches(['\r', '\n']).is_empty() {
                    eprintln!("portcullis: no password on standard input");
                    return ExitCode::FAILURE;
                }
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            AdminRequest::Add {
                email,
                roles,
                password,
                name,
            }
        }
        UserCommand::List => AdminRequest::List,
        UserCommand::Show { email } => AdminRequest::Show { email },
        UserCommand::Unlock { email } => AdminRequest::Unlock { email },
        UserCommand::Roles { email, roles } => AdminRequest::Roles { email, roles },
        UserCommand::Disable { email } => AdminRequest::Disable { email },
        UserCommand::Revoke { email } => AdminRequest::Revoke { email },
    };
    let result = run_async_value(run_admin(config, request));
    match result {
        Ok(value) => {
            print_admin(&value, show_list);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_time(flag: &str, value: Option<String>) -> Result<Option<u64>, String> {
    value
        .map(|v| {
            humantime::parse_rfc3339_weak(&v)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or_else(|| format!("--{flag}: {v:?} is not an RFC 3339 time, e.g. 2026-11-24T08:00:00Z"))
        })
        .transpose()
}

fn audit_command(config_path: &Path, command: AuditCommand) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    match command {
        AuditCommand::List {
            user,
            event,
            since,
            until,
            limit,
            json,
        } => {
            let query = match (parse_time("since", since), parse_time("until", until)) {
                (Ok(since_ms), Ok(until_ms)) => portcullis::audit::Query {
                    user,
                    event,
                    since_ms,
                    until_ms,
                    limit,
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("portcullis: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let records = run_async_value(run_admin(config, AdminRequest::AuditList { query }))
                .and_then(|v| serde_json::from_value::<Vec<portcullis::audit::Record>>(v).map_err(|e| e.to_string()));
            match records {
                Ok(records) => {
                    for r in &records {
                        if json {
                            println!("{}", portcullis::audit::json_line(r));
                        } else {
                            println!("{}", portcullis::audit::format_line(r));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Verify { checkpoint } => {
            let checkpoint = match checkpoint.map(|path| read_checkpoint(&path)).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = run_async_value(run_admin(config, AdminRequest::AuditVerify { checkpoint }))
                .and_then(|v| serde_json::from_value::<portcullis::audit::Report>(v).map_err(|e| e.to_string()));
            match result {
                Ok(report) => match report.verification {
                    portcullis::audit::Verification::Intact { records } => {
                        match report.latest {
                            Some((seq, time)) => println!(
                                "ok: {records} records, the chain is intact and matches {} signed checkpoint(s), the newest of record {seq} at {time}",
                                report.checkpoints
                            ),
                            None => println!("ok: {records} records, the chain is intact (no signed checkpoint to check it against)"),
                        }
                        ExitCode::SUCCESS
                    }
                    portcullis::audit::Verification::Broken { seq, reason } => {
                        println!("BROKEN at record {seq}: {}", portcullis::audit::escape(&reason));
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Checkpoint => match run_async_value(run_admin(config, AdminRequest::AuditCheckpoint)) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Reads a checkpoint printed by `audit checkpoint` (at most 64 KiB of JSON).
fn read_checkpoint(path: &Path) -> Result<portcullis::audit::Checkpoint, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(text.trim()).map_err(|e| format!("{}: not a checkpoint: {e}", path.display()))
}

fn run_async_value<T>(fut: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(fut)
}

/// Asks the running gateway; when none answers, works on the database directly.
async fn run_admin(config: Config, request: AdminRequest) -> Result<serde_json::Value, String> {
    if let Some(answer) = portcullis::admin::send(&config.server.data_dir, &request).await {
        return answer;
    }
    portcullis::store::dir::secure(&config.server.data_dir).map_err(|e| e.to_string())?;
    let store = portcullis::store::Store::open(&config.server.data_dir).map_err(|e| {
        format!(
            "cannot open the database in {} ({e}); if a gateway is running, it is not answering on {}",
            config.server.data_dir.display(),
            portcullis::admin::socket_path(&config.server.data_dir).display()
        )
    })?;
    let clock: portcullis::clock::SharedClock = std::sync::Arc::new(portcullis::clock::SystemClock);
    let (audit, writer) = portcullis::audit::Audit::start(&store, clock.clone()).map_err(|e| e.to_string())?;
    let head = portcullis::audit::head_seq(&store).map_err(|e| e.to_string())?;
    let auth = AuthService::new(std::sync::Arc::new(config), store, clock, audit.clone())?;
    let result = portcullis::admin::execute(&auth, request).await;
    audit.close().await;
    let _ = writer.await;
    // What this command wrote is anchored like what a running gateway writes.
    if portcullis::audit::head_seq(auth.store()).ok().flatten() != head {
        if let Err(e) = portcullis::audit::sign_checkpoint(auth.store(), auth.keys(), auth.clock().now_ms()).await {
            eprintln!("portcullis: cannot sign an audit checkpoint: {e}");
        }
    }
    result
}

fn print_admin(value: &serde_json::Value, list: bool) {
    let row = |u: &serde_json::Value| {
        let roles: Vec<&str> = u["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        let mut state = Vec::new();
        if u["confirmed"] == false {
            state.push("unconfirmed".to_owned());
        }
        if u["disabled"] == true {
            state.push("disabled".to_owned());
        }
        if let Some(secs) = u["locked_for_secs"].as_u64() {
            state.push(format!("locked {secs}s"));
        }
        format!(
            "{:<36} {:<32} {:<24} mfa={:<5} {}",
            u["id"].as_str().unwrap_or(""),
            u["email"].as_str().unwrap_or(""),
            roles.join(","),
            u["mfa_enabled"],
            if state.is_empty() {
                "active".to_owned()
            } else {
                state.join(", ")
            }
        )
    };
    match value {
        serde_json::Value::Array(users) if list => {
            println!("{:<36} {:<32} {:<24} {:<9} state", "id", "email", "roles", "mfa");
            for u in users {
                println!("{}", row(u));
            }
        }
        v if v.get("mfa_enabled").is_some() => println!("{}", row(v)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) => println!("{k}: {s}"),
                    other => println!("{k}: {other}"),
                }
            }
        }
        other => println!("{other}"),
    }
}

/// The configuration, or `None` after saying what is wrong with it.
fn load_config(path: &Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprintln!("portcullis: {e}")).ok()
}

/// The policies, or `None` after printing every error.
fn policies_or_report(
    config_path: &Path,
    dir: Option<&Path>,
) -> Option<(PolicySet, portcullis::policy::lint::KnownRoles)> {
    load_policies(config_path, dir)
        .map_err(|errors| {
            for e in &errors {
                eprintln!("error: {e}");
            }
        })
        .ok()
}

/// Logs go to standard output through a background writer thread: a request never
/// waits on the terminal or a slow pipe (under a flood of refused requests, lines beyond
/// the writer's buffer are dropped and counted by tracing-appender, not queued on the
/// workers). The returned guard flushes what is buffered when it is dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,hyper=warn,rustls=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
    guard
}

fn run_async(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: &Path, demo: bool, log_format: LogFormat) -> ExitCode {
    let _flush_logs = init_logging(log_format);
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let shop = if demo {
        match start_shop(&config).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let gateway = match Gateway::new(config.clone()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("portcullis: refusing to start:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let demo_users = if demo {
        match ensure_demo_users(gateway.inner().auth(), &config.server.data_dir).await {
            Ok(users) => users,
            Err(e) => {
                eprintln!("portcullis: cannot create the demo users: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        Vec::new()
    };
    let running = match gateway.start().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    if demo {
        print_demo(&config, running.tls_addr, &demo_users);
    }
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    if let Some((stop, task)) = shop {
        let _ = stop.send(());
        let _ = task.await;
    }
    ExitCode::SUCCESS
}

/// Starts the demo shop on the address of the `shop` upstream.
async fn start_shop(
    config: &Config,
) -> Result<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>), String> {
    let upstream = config.upstreams.get("shop").ok_or_else(|| {
        format!(
            "{}: the demo needs an upstream named \"shop\" in [upstreams]",
            config.source.display()
        )
    })?;
    let addr: SocketAddr = upstream.authority.as_str().parse().map_err(|_| {
        format!(
            "{}: [upstreams] shop: the demo serves the shop itself and needs an IP address and port, not {:?}",
            config.source.display(),
            upstream.authority.as_str()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot start the demo shop on {addr}: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(upstream_demo::serve(listener, upstream_demo::Shop::seeded(), async {
        let _ = stopped.await;
    }));
    Ok((stop, task))
}

/// A demo account, as printed for the user (the file holding these is mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct DemoUser {
    id: String,
    email: String,
    role: String,
    password: String,
    totp_secret: Option<String>,
}

/// Creates one user per role on first start and remembers their credentials in
/// `data_dir/demo-users.json`; staff are enrolled in TOTP already.
async fn ensure_demo_users(auth: &AuthService, data_dir: &Path) -> Result<Vec<DemoUser>, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("demo-users.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut users = Vec::new();
    for (email, role) in [
        ("customer@shop.example", "customer"),
        ("clerk@shop.example", "inventory"),
        ("support@shop.example", "support"),
        ("admin@shop.example", "admin"),
    ] {
        let password = portcullis::admin::generate_password();
        let name = role[..1].to_uppercase() + &role[1..];
        let user = auth
            .add_user(email, vec![role.to_owned()], password.clone(), &name)
            .await?;
        let mut ev = portcullis::audit::Event::new(portcullis::audit::EventKind::UserCreated);
        ev.user_id = Some(user.id.clone());
        ev.email = Some(user.email.clone());
        ev.reason = Some(format!("demo account; roles [{role}]"));
        auth.audit().durable(ev).await;
        let totp_secret = if role == "customer" {
            None
        } else {
            let secret = portcullis::auth::totp::generate_secret();
            auth.set_totp(&user.id, &secret).await.map_err(|e| e.to_string())?;
            Some(secret)
        };
        users.push(DemoUser {
            id: user.id,
            email: email.to_owned(),
            role: role.to_owned(),
            password,
            totp_secret,
        });
    }
    let json = serde_json::to_string_pretty(&users).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(json.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(users)
}

fn print_demo(config: &Config, addr: SocketAddr, users: &[DemoUser]) {
    let host = config
        .server
        .public_url
        .authority()
        .map_or_else(|| addr.to_string(), ToString::to_string);
    let base = format!("https://{host}");
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "portcullis".into());
    println!();
    println!("Portcullis demo: the gateway on {base} in front of the demo shop.");
    println!("The certificate is self-signed, hence curl -k.");
    println!();
    println!(
        "Demo accounts (kept in {}):",
        config.server.data_dir.join("demo-users.json").display()
    );
    for u in users {
        println!(
            "  {:<10} {:<24} password {}{}",
            u.role,
            u.email,
            u.password,
            u.totp_secret
                .as_deref()
                .map(|s| format!("  TOTP secret {s}"))
                .unwrap_or_default()
        );
    }
    println!();
    println!("Public routes and refusals:");
    println!("  curl -k {base}/api/products");
    println!("  curl -k -i {base}/api/orders                  # needs a token: 401");
    println!("  curl -k -i {base}/api/nothing-here            # no route: 404");
    println!("  curl -k -i '{base}/api/%2e%2e/staff'          # ambiguous path: 400, never forwarded");
    if let (Some(c), Some(a)) = (
        users.iter().find(|u| u.role == "customer"),
        users.iter().find(|u| u.role == "admin"),
    ) {
        let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]+)\".*/\\1/'");
        println!();
        println!("Log in as the customer, edit and read your own particulars, be refused someone else's:");
        println!(
            "  TOKEN=$(curl -sk {base}/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"{}\"}}' | {})",
            c.email, c.password, field("access_token")
        );
        println!("  curl -k -X PUT {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"name\":\"Casey\",\"address\":\"1 High St\",\"phone\":\"555-0100\"}}'", c.id);
        println!(
            "  curl -k {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\"",
            c.id
        );
        println!(
            "  curl -k -i {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\"   # 403",
            a.id
        );
        println!();
        println!("Log in as the admin with TOTP and read the staff records:");
        println!(
            "  MFA=$(curl -sk {base}/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"{}\"}}' | {})",
            a.email, a.password, field("mfa_token")
        );
        println!(
            "  ADMIN=$(curl -sk {base}/auth/mfa -H 'content-type: application/json' -d \"{{\\\"mfa_token\\\":\\\"$MFA\\\",\\\"code\\\":\\\"$({me} totp {})\\\"}}\" | {})",
            a.totp_secret.as_deref().unwrap_or(""),
            field("access_token")
        );
        println!("  curl -k {base}/api/staff -H \"Authorization: Bearer $ADMIN\"");
    }
    println!();
    println!("Press Ctrl-C to stop.");
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[allow(clippy::too_many_arguments)]
fn policy_explain(
    config_path: &Path,
    dir: Option<&Path>,
    method: &str,
    path: &str,
    roles: Vec<String>,
    user: Option<String>,
    mfa: bool,
) -> ExitCode {
    use portcullis::policy::{Decision, Principal};
    let Some((set, _)) = policies_or_report(config_path, dir) else {
        return ExitCode::FAILURE;
    };
    let shadow = Config::load(config_path).is_ok_and(|c| c.shadow);
    let Ok(method) = method.to_ascii_uppercase().parse::<http::Method>() else {
        eprintln!("portcullis: {method:?} is not an HTTP method");
        return ExitCode::FAILURE;
    };
    let raw_path = path.split('?').next().unwrap_or("");
    let caller = (user.is_some() || !roles.is_empty()).then(|| Principal {
        id: user.unwrap_or_else(|| "u-explain".into()),
        email: String::new(),
        roles,
        mfa,
    });
    match &caller {
        None => println!("{method} {path} as an anonymous caller"),
        Some(p) => println!(
            "{method} {path} as user {} with roles [{}], {}",
            p.id,
            p.roles.join(", "),
            if p.mfa { "after TOTP" } else { "without TOTP" }
        ),
    }
    if method == http::Method::CONNECT {
        println!("decision: 405, CONNECT is never proxied");
        return ExitCode::SUCCESS;
    }
    let canonical = match portcullis::pipeline::normalize::canonical_path(raw_path) {
        Ok(c) => c,
        Err(why) => {
            println!("decision: 400, the target is refused before any route is consulted ({why})");
            return ExitCode::SUCCESS;
        }
    };
    if canonical != raw_path {
        println!("canonical path: {canonical}");
    }
    let explanation = set.explain(&method, &canonical, caller.as_ref());
    let mut others = 0;
    for (i, step) in explanation.steps.iter().enumerate() {
        let r = step.route;
        let at = format!("{}:{}", r.file.display(), r.line);
        let verdict = match (&step.outcome, step.path_matched) {
            (_, false) => {
                others += 1;
                continue;
            }
            (None, true) => format!(
                "path matches; method {method} is not one of [{}]",
                r.methods.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            (Some(Ok(())), true) => "matches; allows".to_owned(),
            (Some(Err(why)), true) => format!("matches; refuses: {why}"),
        };
        let shadowed = if !r.enforce { " [enforce = false]" } else { "" };
        println!("  {:>3}. {:?} ({at}){shadowed}: {verdict}", i + 1, r.name);
    }
    if others > 0 {
        println!("  ({others} other routes do not match the path)");
    }
    let (status, text, route) = match &explanation.decision {
        Decision::Allow { route } => (
            200,
            format!("allow: forwarded to upstream {:?}", route.upstream),
            Some(*route),
        ),
        Decision::NotFound => (404, "deny: no route matches (deny by default)".to_owned(), None),
        Decision::Unauthenticated { route } => (
            401,
            format!("unauthenticated: {:?} needs a token", route.name),
            Some(*route),
        ),
        Decision::Forbidden { route, why } => (403, format!("deny by {:?}: {why}", route.name), Some(*route)),
    };
    let shadowed = matches!(status, 401 | 403) && (shadow || route.is_some_and(|r| !r.enforce));
    if shadowed {
        println!("decision: would be {status} ({text}); shadow mode forwards it and audits it as would_deny");
    } else if status == 200 {
        println!("decision: {text}");
    } else {
        println!("decision: {status} ({text})");
    }
    ExitCode::SUCCESS
}

/// Loads the policies of `dir` (default: the configured directory), checking upstream
/// names against the configuration when there is one; with the roles it declares.
fn load_policies(
    config_path: &Path,
    dir: Option<&Path>,
) -> Result<(PolicySet, portcullis::policy::lint::KnownRoles), Vec<String>> {
    let config = if config_path.exists() {
        Some(Config::load(config_path).map_err(|e| vec![e.to_string()])?)
    } else {
        if dir.is_none() {
            return Err(vec![format!(
                "{}: no such configuration file; name a policy directory",
                config_path.display()
            )]);
        }
        eprintln!(
            "warning: {} not found; upstream names are not checked",
            config_path.display()
        );
        None
    };
    let dir = match (dir, &config) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(c)) => c.server.policies.clone(),
        (None, None) => unreachable!("checked above"),
    };
    let exists = |name: &str| config.as_ref().is_none_or(|c| c.upstreams.contains_key(name));
    let known = config.as_ref().filter(|c| !c.roles.is_empty()).map(|c| {
        let mut roles: std::collections::BTreeSet<String> = c.roles.keys().cloned().collect();
        roles.insert("customer".into());
        roles
    });
    PolicySet::load_dir_with(&dir, &exists)
        .map(|set| (set, known))
        .map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

fn policy_check(config_path: &Path, dir: Option<&Path>) -> ExitCode {
    match load_policies(config_path, dir) {
        Ok((set, known)) => {
            let warnings = portcullis::policy::lint::lint(&set, &known);
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "ok: {} routes, {} test cases, {} warning(s)",
                set.routes.len(),
                set.tests.len(),
                warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

fn policy_test(config_path: &Path, dir: Option<&Path>) -> ExitCode {
    let Some((set, _)) = policies_or_report(config_path, dir) else {
        return ExitCode::FAILURE;
    };
    let mut failed = 0;
    for case in &set.tests {
        let (got, why) = run_case(&set, case);
        if got != case.expect {
            failed += 1;
            let who = case.identity.as_ref().map_or_else(
                || "anonymous".to_owned(),
                |i| {
                    format!(
                        "user {} roles [{}]{}",
                        i.user,
                        i.roles.join(", "),
                        if i.mfa { " with mfa" } else { "" }
                    )
                },
            );
            println!(
                "FAIL {}:{}: {} {} as {who}: expected {}, got {got} ({why})",
                case.file.display(),
                case.line,
                case.method,
                case.target,
                case.expect
            );
        }
    }
    let passed = set.tests.len() - failed;
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
