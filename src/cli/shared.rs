//! What the commands share: loading the configuration, starting a runtime, and asking
//! the gateway's admin socket (or the database directly when no gateway answers).

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis::admin::AdminRequest;
use portcullis::auth::service::AuthService;
use portcullis::clock::{SharedClock, SystemClock};
use portcullis::Config;

/// The configuration, or `None` after saying what is wrong with it.
pub fn load_config(path: &Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprintln!("portcullis: {e}")).ok()
}

/// Runs a command's future on a multi-threaded runtime (the gateway's).
pub fn run_async(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a short future on a single-threaded runtime (the admin commands').
pub fn run_async_value<T>(fut: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(fut)
}

/// Prints the error of a command that failed, and says so in the exit code.
pub fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {e}");
    ExitCode::FAILURE
}

/// Asks the running gateway; when none answers, works on the database directly.
pub async fn run_admin(config: Config, request: AdminRequest) -> Result<serde_json::Value, String> {
    if let Some(answer) = portcullis::admin::send(&config.server.data_dir, &request).await {
        return answer;
    }
    let data_dir = config.server.data_dir.clone();
    portcullis::store::dir::secure(&data_dir).map_err(|e| e.to_string())?;
    let store = portcullis::server::open_store(&config)
        .await
        .map_err(|e| match &config.store {
            portcullis::config::store::StoreConfig::Sled => format!(
                "cannot open the database in {} ({e}); if a gateway is running, it is not answering on {}",
                config.server.data_dir.display(),
                portcullis::admin::socket_path(&config.server.data_dir).display()
            ),
            portcullis::config::store::StoreConfig::Postgres(_) => e.to_string(),
        })?;
    let clock: SharedClock = Arc::new(SystemClock);
    let (audit, writer) = portcullis::audit::Audit::start(&store, clock.clone()).map_err(|e| e.to_string())?;
    let head = portcullis::audit::head_seq(&store).await.map_err(|e| e.to_string())?;
    let auth = AuthService::new(Arc::new(config), store, clock, audit.clone()).await?;
    let result = portcullis::admin::execute(&auth, request).await;
    audit.close().await;
    let _ = writer.await;
    // What this command wrote is anchored like what a running gateway writes.
    if portcullis::audit::head_seq(auth.store()).await.ok().flatten() != head {
        if let Err(e) = portcullis::audit::sign_checkpoint(auth.store(), auth.keys(), auth.clock().now_ms()).await {
            eprintln!("portcullis: cannot sign an audit checkpoint: {e}");
        }
    }
    // What the database made under the process's umask is tightened now, not by the
    // next `serve` with a warning (a first `user add` before the first start made one).
    if let Err(e) = portcullis::store::dir::secure(&data_dir) {
        eprintln!("portcullis: {e}");
    }
    result
}
