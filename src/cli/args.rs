//! The command line's shape: every command, subcommand and flag, as clap types.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// No doc comments on the clap types themselves: clap would print them in `--help`.
#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A TLS-terminating, authenticating reverse proxy"
)]
pub struct Cli {
    /// The gateway configuration.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG", default_value = "gateway.toml")]
    pub config: PathBuf,
    /// How `serve` and `demo` write their log lines to standard output.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PORTCULLIS_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, for people (colours only on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Start the demo shop and the gateway together, and print ready-to-paste curl lines.
    Demo {
        /// Also draw the staff accounts' TOTP QR codes, to scan with an authenticator app.
        #[arg(long)]
        show_qr: bool,
    },
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
    /// Write a commented gateway.toml and a starter policy for an upstream API into DIR.
    Init(InitArgs),
    /// Print a shell completion script (e.g. `portcullis completions bash > /etc/bash_completion.d/portcullis`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `portcullis man > portcullis.1`.
    Man,
}

// What `portcullis init` writes, and for which upstream.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write gateway.toml and policies/ (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The API to put behind the gateway, e.g. http://127.0.0.1:8000 or https://api.internal (optionally with a path prefix).
    #[arg(long)]
    pub upstream: String,
    /// The upstream's name in [upstreams] and the policy file's name.
    #[arg(long, default_value = "api")]
    pub name: String,
    /// The gateway's TLS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// The data directory (database, keys, certificate, outbox); relative to DIR, e.g. /var/lib/portcullis for systemd or Docker.
    #[arg(long, default_value = "data")]
    pub data_dir: String,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the public signing key as PEM (for other verifiers, e.g. HAProxy's jwt_verify).
    PublicPem,
}

#[derive(Subcommand)]
pub enum AuditCommand {
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
pub enum UserCommand {
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
    List {
        /// One JSON array on standard output (no secret fields).
        #[arg(long)]
        json: bool,
    },
    /// One account.
    Show {
        email: String,
        /// One JSON object on standard output (no secret fields).
        #[arg(long)]
        json: bool,
    },
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
    /// Set an account's password (every session is revoked and the lockout cleared);
    /// prints a generated password when none is given.
    Password {
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Enable a disabled account.
    Enable { email: String },
    /// Remove an account's TOTP and recovery codes and revoke its sessions (it enrols again at its next login if its roles require MFA).
    ResetMfa { email: String },
    /// An account's attributes (compared by `owner` rules, forwarded as X-Auth-Attr-*).
    #[command(subcommand)]
    Attr(AttrCommand),
}

#[derive(Subcommand)]
pub enum AttrCommand {
    /// Set attributes, KEY=VALUE each (keys: a-z, 0-9, _; values up to 256 bytes). The
    /// account's access tokens stop working; its sessions refresh with the new values.
    Set {
        email: String,
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_attr)]
        pairs: Vec<(String, String)>,
    },
    /// Remove attributes by key (access tokens go stale as for `set`).
    Unset {
        email: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// An account's attributes, one `key=value` a line.
    List {
        email: String,
        /// One JSON object on standard output.
        #[arg(long)]
        json: bool,
    },
}

fn parse_attr(s: &str) -> Result<(String, String), String> {
    portcullis::attributes::parse_assignment(s)
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; errors name file, line and column. Exit 1 on any error.
    Check { dir: Option<PathBuf> },
    /// Run the [[test]] cases of the policy files. Exit 1 on a failed case.
    Test { dir: Option<PathBuf> },
    /// Which routes match a request, which condition of each passes or fails, and the decision.
    Explain(ExplainArgs),
    /// Print a starter policy (deny by default) for the operations of an OpenAPI 3.0 or 3.1
    /// document, YAML or JSON, e.g. `policy init --from-openapi openapi.yaml > policies/api.toml`.
    Init(PolicyInitArgs),
}

// What `policy init` reads and which upstream its routes forward to.
#[derive(clap::Args)]
pub struct PolicyInitArgs {
    /// The OpenAPI document (YAML or JSON).
    #[arg(long = "from-openapi", value_name = "FILE")]
    pub from_openapi: PathBuf,
    /// The upstream the routes forward to (a name in [upstreams]).
    #[arg(long, default_value = "api")]
    pub upstream: String,
}

// The request `policy explain` judges, and where the policies are. (A doc comment here
// would replace the variant's in `--help`.)
#[derive(clap::Args)]
pub struct ExplainArgs {
    pub method: String,
    pub path: String,
    /// A role of the caller (repeatable); with no role and no user, the caller is anonymous.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// The caller's user id.
    #[arg(long)]
    pub user: Option<String>,
    /// The caller's login passed TOTP.
    #[arg(long)]
    pub mfa: bool,
    /// How long ago the caller passed TOTP, e.g. 10m (for routes with mfa_max_age; default: just now).
    #[arg(long, value_name = "DURATION")]
    pub auth_age: Option<portcullis::units::HumanDuration>,
    /// An attribute of the caller, KEY=VALUE (repeatable), for owner-by-attribute routes.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    pub attrs: Vec<(String, String)>,
    /// Policy directory (default: the configured one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}
