//! `portcullis demo` in a build without the demo shop: it says so and fails.

use std::path::Path;
use std::process::ExitCode;

use super::args::LogFormat;

/// Refuses: the shop is not in this build.
pub fn run(_config_path: &Path, _log_format: LogFormat, _show_qr: bool) -> ExitCode {
    eprintln!("portcullis: this build has no demo shop; build with --features demo");
    ExitCode::FAILURE
}
