//! `portcullis keys ...` and `portcullis totp`: the signing key and TOTP codes.

use std::path::Path;
use std::process::ExitCode;

use portcullis::auth::tokens::KeyRing;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::store::StoreConfig;

use super::args::KeysCommand;
use super::shared::{fail, load_config, run_async_value};

/// Runs one `keys` command.
pub fn run(config_path: &Path, command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::PublicPem => public_pem(config_path),
    }
}

/// Prints the public signing key as PEM (generating the key pair on first use): the one
/// in `data_dir/keys` with the embedded store, the one every gateway shares with
/// `[store] backend = "postgres"`.
fn public_pem(config_path: &Path) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let issuer = config.server.public_url.to_string();
    let issuer = issuer.trim_end_matches('/');
    let keys = match &config.store {
        StoreConfig::Sled => {
            KeyRing::load_or_generate(&config.server.data_dir.join("keys"), config.tokens.algorithm, issuer)
                .map_err(|e| e.to_string())
        }
        StoreConfig::Postgres(_) => run_async_value(async {
            let store = portcullis::server::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            KeyRing::shared(&store, config.tokens.algorithm, issuer).await
        }),
    };
    match keys {
        Ok(keys) => {
            print!("{}", keys.public_pem());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Prints the current TOTP code of a base32 secret (spaces and case ignored).
pub fn totp(secret: &str) -> ExitCode {
    match portcullis::auth::totp::code_at(&secret.replace(' ', "").to_uppercase(), SystemClock.now()) {
        Some(code) => {
            println!("{code}");
            ExitCode::SUCCESS
        }
        None => fail("not a valid base32 TOTP secret"),
    }
}
