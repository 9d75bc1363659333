//! `portcullis user ...`: account commands, sent to the admin socket, and their tables.

use std::path::Path;
use std::process::ExitCode;

use portcullis::admin::AdminRequest;

use super::args::{AttrCommand, UserCommand};
use super::shared::{fail, load_config, run_admin, run_async_value};

/// Runs one `user` command and prints its answer.
pub fn run(config_path: &Path, command: UserCommand) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let show_list = matches!(command, UserCommand::List { .. });
    let json = matches!(
        command,
        UserCommand::List { json: true }
            | UserCommand::Show { json: true, .. }
            | UserCommand::Attr(AttrCommand::List { json: true, .. })
    );
    let attr_list = matches!(command, UserCommand::Attr(AttrCommand::List { .. }));
    let request = match command {
        UserCommand::Add {
            email,
            roles,
            password_stdin,
            name,
        } => {
            let Ok(password) = stdin_password(password_stdin) else {
                return ExitCode::FAILURE;
            };
            AdminRequest::Add {
                email,
                roles,
                password,
                name,
            }
        }
        UserCommand::Password { email, password_stdin } => {
            let Ok(password) = stdin_password(password_stdin) else {
                return ExitCode::FAILURE;
            };
            AdminRequest::Password { email, password }
        }
        UserCommand::Enable { email } => AdminRequest::Enable { email },
        UserCommand::List { .. } => AdminRequest::List,
        UserCommand::Show { email, .. } => AdminRequest::Show { email },
        UserCommand::Unlock { email } => AdminRequest::Unlock { email },
        UserCommand::Roles { email, roles } => AdminRequest::Roles { email, roles },
        UserCommand::Disable { email } => AdminRequest::Disable { email },
        UserCommand::Revoke { email } => AdminRequest::Revoke { email },
        UserCommand::ResetMfa { email } => AdminRequest::ResetMfa { email },
        UserCommand::Attr(command) => attr_request(command),
    };
    match run_async_value(run_admin(config, request)) {
        Ok(value) if json => {
            println!("{}", if attr_list { &value["attributes"] } else { &value });
            ExitCode::SUCCESS
        }
        Ok(value) if attr_list => {
            for (k, v) in value["attributes"].as_object().into_iter().flatten() {
                println!("{k}={}", v.as_str().unwrap_or(""));
            }
            ExitCode::SUCCESS
        }
        Ok(value) => {
            print_admin(&value, show_list);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The admin request of a `user attr` command (`list` is a change of nothing).
fn attr_request(command: AttrCommand) -> AdminRequest {
    match command {
        AttrCommand::Set { email, pairs } => AdminRequest::Attr {
            email,
            set: pairs.into_iter().collect(),
            unset: Vec::new(),
        },
        AttrCommand::Unset { email, keys } => AdminRequest::Attr {
            email,
            set: Default::default(),
            unset: keys,
        },
        AttrCommand::List { email, .. } => AdminRequest::Attr {
            email,
            set: Default::default(),
            unset: Vec::new(),
        },
    }
}

/// The password on the first line of standard input when `from_stdin`, else `None`;
/// `Err` (after saying so) when standard input has none.
fn stdin_password(from_stdin: bool) -> Result<Option<String>, ()> {
    if !from_stdin {
        return Ok(None);
    }
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.trim_end_matches(['\r', '\n']).is_empty() {
        eprintln!("portcullis: no password on standard input");
        return Err(());
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Prints an admin answer: a table of accounts, one account's row, or `key: value` lines.
fn print_admin(value: &serde_json::Value, list: bool) {
    match value {
        serde_json::Value::Array(users) if list => {
            println!("{:<36} {:<32} {:<24} {:<9} state", "id", "email", "roles", "mfa");
            for u in users {
                println!("{}", row(u));
            }
        }
        v if v.get("mfa_enabled").is_some() => {
            println!("{}", row(v));
            let attrs: Vec<String> = v["attributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            if !attrs.is_empty() {
                println!("attributes: {}", attrs.join(" "));
            }
        }
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

/// One account as a table row: id, email, roles, MFA and its state.
fn row(u: &serde_json::Value) -> String {
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
}
