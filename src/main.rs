//! The `portcullis` command line: parse the arguments and hand each command to its
//! module in [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let args = Cli::parse();
    let config = args.config.as_path();
    match args.command {
        Command::Serve => cli::serve::run(config, args.log_format),
        Command::Demo { show_qr } => cli::demo::run(config, args.log_format, show_qr),
        Command::Policy { command } => cli::policy::run(config, command),
        Command::User { command } => cli::user::run(config, command),
        Command::Audit { command } => cli::audit::run(config, command),
        Command::Keys { command } => cli::keys::run(config, command),
        Command::Totp { secret } => cli::keys::totp(&secret),
        Command::Init(init) => cli::init::run(&init),
        Command::Completions { shell } => cli::reference::completions(shell),
        Command::Man => cli::reference::man(),
    }
}
