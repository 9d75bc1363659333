//! The one way tests run the `portcullis` binary.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The binary with nothing set, for runs that need arguments of their own.
pub fn portcullis_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

/// What one run of the binary said.
#[derive(Debug)]
pub struct CliOut {
    /// It exited 0.
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// Standard output, then standard error.
    pub text: String,
}

impl From<Output> for CliOut {
    fn from(out: Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Self {
            ok: out.status.success(),
            text: format!("{stdout}{stderr}"),
            stdout,
            stderr,
        }
    }
}

/// The value of a `NAME: value` line of a command's output (e.g. the generated password
/// `user add` prints).
pub fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .to_owned()
}

/// Runs `portcullis --config CONFIG ARGS…` to completion, with nothing on its input.
pub fn cli(config: &Path, args: &[&str]) -> CliOut {
    portcullis_bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
        .into()
}

/// Like [`cli`], with `input` on the standard input (e.g. `--password-stdin`).
pub fn cli_stdin(config: &Path, args: &[&str], input: &[u8]) -> CliOut {
    let mut child = portcullis_bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap().into()
}

/// Starts `portcullis --config CONFIG serve` as a process of its own, output discarded.
pub fn serve(config: &Path) -> Child {
    portcullis_bin()
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
