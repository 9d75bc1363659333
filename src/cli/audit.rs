//! `portcullis audit ...`: list, verify and checkpoint the audit trail, and print it.

use std::path::Path;
use std::process::ExitCode;

use portcullis::admin::AdminRequest;
use portcullis::audit::{EventKind, Verification};

use super::args::AuditCommand;
use super::shared::{fail, load_config, run_admin, run_async_value};

/// Runs one `audit` command.
pub fn run(config_path: &Path, command: AuditCommand) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    match command {
        AuditCommand::List {
            user,
            event,
            since,
            until,
            limit,
            json,
        } => {
            let query = match (parse_time("since", since), parse_time("until", until)) {
                (Ok(since_ms), Ok(until_ms)) => portcullis::audit::Query {
                    user,
                    event: event.map(event_filter),
                    since_ms,
                    until_ms,
                    limit,
                },
                (Err(e), _) | (_, Err(e)) => return fail(e),
            };
            let records = run_async_value(run_admin(config, AdminRequest::AuditList { query }))
                .and_then(|v| serde_json::from_value::<Vec<portcullis::audit::Record>>(v).map_err(|e| e.to_string()));
            match records {
                Ok(records) => {
                    for r in &records {
                        if json {
                            println!("{}", portcullis::audit::json_line(r));
                        } else {
                            println!("{}", portcullis::audit::format_line(r));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        AuditCommand::Verify { checkpoint } => {
            let checkpoint = match checkpoint.map(|path| read_checkpoint(&path)).transpose() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let result = run_async_value(run_admin(config, AdminRequest::AuditVerify { checkpoint }))
                .and_then(|v| serde_json::from_value::<portcullis::audit::Report>(v).map_err(|e| e.to_string()));
            match result {
                Ok(report) => match report.verification {
                    Verification::Intact { records } => {
                        match report.latest {
                            Some((seq, time)) => println!(
                                "ok: {records} records, the chain is intact and matches {} signed checkpoint(s), the newest of record {seq} at {time}",
                                report.checkpoints
                            ),
                            None => println!("ok: {records} records, the chain is intact (no signed checkpoint to check it against)"),
                        }
                        ExitCode::SUCCESS
                    }
                    Verification::Broken { seq, reason } => {
                        println!("BROKEN at record {seq}: {}", portcullis::audit::escape(&reason));
                        ExitCode::FAILURE
                    }
                },
                Err(e) => fail(e),
            }
        }
        AuditCommand::Checkpoint => match run_async_value(run_admin(config, AdminRequest::AuditCheckpoint)) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

/// The `--event` filter, read through [`EventKind`]: the trail's name of a known kind.
/// A name no kind has is passed on as given and matches no record, so the list is empty
/// and the command still succeeds.
fn event_filter(name: String) -> String {
    match EventKind::ALL.into_iter().find(|kind| kind.name() == name) {
        Some(kind) => kind.name().to_owned(),
        None => name,
    }
}

/// An RFC 3339 `--since` / `--until` value as Unix milliseconds.
fn parse_time(flag: &str, value: Option<String>) -> Result<Option<u64>, String> {
    value
        .map(|v| {
            humantime::parse_rfc3339_weak(&v)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or_else(|| format!("--{flag}: {v:?} is not an RFC 3339 time, e.g. 2026-11-24T08:00:00Z"))
        })
        .transpose()
}

/// Reads a checkpoint printed by `audit checkpoint` (at most 64 KiB of JSON).
fn read_checkpoint(path: &Path) -> Result<portcullis::audit::Checkpoint, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(text.trim()).map_err(|e| format!("{}: not a checkpoint: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every kind's name passes through the filter unchanged, and so does an unknown name
    // (which then matches no record).
    #[test]
    fn event_filter_keeps_names() {
        for kind in EventKind::ALL {
            assert_eq!(event_filter(kind.name().to_owned()), kind.name());
        }
        assert_eq!(event_filter("no_such_event".to_owned()), "no_such_event");
    }

    // `--since` / `--until` take RFC 3339 times and name the flag when they cannot.
    #[test]
    fn times_are_rfc3339() {
        assert_eq!(parse_time("since", None), Ok(None));
        assert_eq!(parse_time("since", Some("1970-01-01T00:00:01Z".into())), Ok(Some(1000)));
        let err = parse_time("until", Some("yesterday".into())).unwrap_err();
        assert!(err.starts_with("--until: \"yesterday\""), "{err}");
    }
}
