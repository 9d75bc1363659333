//! `portcullis completions SHELL` and `portcullis man`: shell completions and the manual
//! page, both generated from the clap definition in [`super::args`], so they never drift
//! from the commands the binary accepts.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::Cli;
use super::shared::fail;

/// Prints the completion script of `shell` for every command and flag.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "portcullis", &mut out);
    write_stdout(&out)
}

/// Prints the manual page as roff: clap_mangen's page of the top-level command, then one
/// section per command group (`POLICY COMMANDS`, `USER COMMANDS`, ...) listing each
/// subcommand with its one-line description.
pub fn man() -> ExitCode {
    let command = Cli::command();
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(command.clone()).render(&mut out) {
        return fail(format!("cannot render the manual page: {e}"));
    }
    for group in command.get_subcommands().filter(|s| s.has_subcommands()) {
        let title = format!("{} COMMANDS", group.get_name().to_uppercase());
        out.extend_from_slice(format!(".SH \"{}\"\n", roff(&title)).as_bytes());
        for leaf in group.get_subcommands() {
            let usage = format!("portcullis {} {}", group.get_name(), leaf.get_name());
            let about = leaf.get_about().map(ToString::to_string).unwrap_or_default();
            out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff(&usage), roff(&about)).as_bytes());
        }
    }
    out.extend_from_slice(b".SH ENVIRONMENT\n");
    for (name, meaning) in ENVIRONMENT {
        out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff(name), roff(meaning)).as_bytes());
    }
    write_stdout(&out)
}

/// The environment variables the gateway reads, for the manual page.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "PORTCULLIS_CONFIG",
        "The configuration file when --config is not given (the flag wins).",
    ),
    ("PORTCULLIS_LOG_FORMAT", "text or json, when --log-format is not given."),
    (
        "PORTCULLIS_SECRET_KEY",
        "The key that seals TOTP secrets at rest (base64); without it, data_dir/keys/secret.key.",
    ),
    (
        "PORTCULLIS_SMTP_PASSWORD",
        "The password of [email.smtp] username; never read from the file.",
    ),
    ("RUST_LOG", "The log level and filters (default info)."),
];

/// Text made safe for a roff line: backslashes escaped, dashes kept as dashes, and a
/// leading `.` or `'` not read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-").replace('\n', " ");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(format!("cannot write to standard output: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::roff;

    #[test]
    fn roff_text_cannot_start_a_request_or_an_escape() {
        assert_eq!(roff(".SH evil"), "\\&.SH evil");
        assert_eq!(roff("'x"), "\\&'x");
        assert_eq!(roff("a\\fBb"), "a\\efBb");
        assert_eq!(roff("two\n.lines"), "two .lines");
        assert_eq!(roff("reset-mfa"), "reset\\-mfa");
    }
}
