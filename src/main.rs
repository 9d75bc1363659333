//! The `portcullis` command line: parse, load the configuration, call into the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Command,
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
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; errors name file, line and column. Exit 1 on any error.
    Check { dir: Option<PathBuf> },
    /// Run the [[test]] cases of the policy files. Exit 1 on a failed case.
    Test { dir: Option<PathBuf> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => run_async(serve(&cli.config, false)),
        Command::Demo => run_async(serve(&cli.config, true)),
        Command::Policy { command } => match command {
            PolicyCommand::Check { dir } => policy_check(&cli.config, dir.as_deref()),
            PolicyCommand::Test { dir } => policy_test(&cli.config, dir.as_deref()),
        },
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hyper=warn,rustls=warn".into()),
        )
        .init();
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

async fn serve(config_path: &Path, demo: bool) -> ExitCode {
    init_logging();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
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
    let running = match gateway.start().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    if demo {
        print_demo(&config, running.tls_addr);
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

fn print_demo(config: &Config, addr: SocketAddr) {
    let host = config
        .server
        .public_url
        .authority()
        .map_or_else(|| addr.to_string(), ToString::to_string);
    let base = format!("https://{host}");
    println!();
    println!("Portcullis demo: the gateway on {base} in front of the demo shop.");
    println!("The certificate is self-signed, hence curl -k. Try:");
    println!();
    println!("  curl -k {base}/api/products            # public: the catalogue");
    println!("  curl -k {base}/api/products/3          # public: one product");
    println!("  curl -k -i {base}/api/orders           # needs a token: 401");
    println!("  curl -k -i {base}/api/nothing-here     # no route: 404");
    println!("  curl -k -i '{base}/api/%2e%2e/staff'   # ambiguous path: 400, never forwarded");
    println!("  curl -k {base}/healthz");
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

/// Loads the policies of `dir` (default: the configured directory), checking upstream
/// names against the configuration when there is one.
fn load_policies(config_path: &Path, dir: Option<&Path>) -> Result<PolicySet, Vec<String>> {
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
    PolicySet::load_dir_with(&dir, &exists).map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

fn policy_check(config_path: &Path, dir: Option<&Path>) -> ExitCode {
    match load_policies(config_path, dir) {
        Ok(set) => {
            println!("ok: {} routes, {} test cases", set.routes.len(), set.tests.len());
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
    let set = match load_policies(config_path, dir) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return ExitCode::FAILURE;
        }
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
