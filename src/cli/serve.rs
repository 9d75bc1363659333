//! `portcullis serve`: log set-up, building and starting the gateway, waiting for a
//! signal, and a graceful shutdown. `demo` runs the same steps around its shop.

use std::path::Path;
use std::process::ExitCode;

use portcullis::{Config, Gateway, RunningGateway};

use super::args::LogFormat;
use super::shared::{load_config, run_async};

/// Runs the gateway until SIGINT or SIGTERM.
pub fn run(config_path: &Path, log_format: LogFormat) -> ExitCode {
    run_async(async {
        let _flush_logs = init_logging(log_format);
        let Some(config) = load_config(config_path) else {
            return ExitCode::FAILURE;
        };
        let Some(gateway) = build(config).await else {
            return ExitCode::FAILURE;
        };
        let Some(running) = start(gateway).await else {
            return ExitCode::FAILURE;
        };
        wait_then_shut_down(running).await;
        ExitCode::SUCCESS
    })
}

/// Logs go to standard output through a background writer thread: a request never
/// waits on the terminal or a slow pipe (under a flood of refused requests, lines beyond
/// the writer's buffer are dropped and counted by tracing-appender, not queued on the
/// workers). The returned guard flushes what is buffered when it is dropped.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
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

/// The gateway of a configuration, or `None` after saying why it cannot start.
pub async fn build(config: Config) -> Option<Gateway> {
    Gateway::new(config)
        .await
        .map_err(|e| eprintln!("portcullis: refusing to start:\n{e}"))
        .ok()
}

/// Opens the listeners and starts serving, or `None` after saying why not.
pub async fn start(gateway: Gateway) -> Option<RunningGateway> {
    gateway.start().await.map_err(|e| eprintln!("portcullis: {e}")).ok()
}

/// Waits for SIGINT or SIGTERM, then finishes the requests in flight and stops.
pub async fn wait_then_shut_down(running: RunningGateway) {
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
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
