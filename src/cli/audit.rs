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
            let now = std::time::SystemTime::now();
            let event = match event.map(event_filter).transpose() {
                Ok(event) => event,
                Err(e) => return fail(e),
            };
            let query = match (parse_time("since", since, now), parse_time("until", until, now)) {
                (Ok(since_ms), Ok(until_ms)) => portcullis::audit::Query {
                    user,
                    event,
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
/// A name no kind has is an error listing the names there are (a typo would otherwise
/// list nothing, and look like a quiet trail).
fn event_filter(name: String) -> Result<String, String> {
    match EventKind::ALL.into_iter().find(|kind| kind.name() == name) {
        Some(kind) => Ok(kind.name().to_owned()),
        None => {
            let mut known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
            known.sort_unstable();
            known.dedup();
            Err(format!(
                "--event: no event is named {name:?}; the events are: {}",
                known.join(", ")
            ))
        }
    }
}

/// A `--since` / `--until` value as Unix milliseconds: an RFC 3339 time, or a duration
/// meaning that long before `now` (`10m`, `2h`, `7d`, `1h30m`).
fn parse_time(flag: &str, value: Option<String>, now: std::time::SystemTime) -> Result<Option<u64>, String> {
    value
        .map(|v| {
            let relative = v
                .parse::<portcullis::units::HumanDuration>()
                .ok()
                .and_then(|d| now.checked_sub(d.0));
            relative
                .or_else(|| humantime::parse_rfc3339_weak(&v).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or_else(|| {
                    format!(
                        "--{flag}: {v:?} is neither an RFC 3339 time (e.g. 2026-11-24T08:00:00Z) nor a time ago (e.g. 10m, 2h, 7d)"
                    )
                })
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

    // Every kind's name passes through the filter unchanged; an unknown name is an
    // error that lists the known ones.
    #[test]
    fn event_filter_keeps_names() {
        for kind in EventKind::ALL {
            assert_eq!(event_filter(kind.name().to_owned()).unwrap(), kind.name());
        }
        let err = event_filter("login_fail".to_owned()).unwrap_err();
        assert!(err.contains("\"login_fail\"") && err.contains("login_failure"), "{err}");
    }

    // `--since` / `--until` take RFC 3339 times or a time ago, and name the flag when
    // they cannot.
    #[test]
    fn times_are_rfc3339_or_ago() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(100_000);
        assert_eq!(parse_time("since", None, now), Ok(None));
        assert_eq!(
            parse_time("since", Some("1970-01-01T00:00:01Z".into()), now),
            Ok(Some(1000))
        );
        assert_eq!(parse_time("since", Some("10m".into()), now), Ok(Some(99_400_000)));
        assert_eq!(parse_time("since", Some("1d".into()), now), Ok(Some(13_600_000)));
        let err = parse_time("until", Some("yesterday".into()), now).unwrap_err();
        assert!(
            err.starts_with("--until: \"yesterday\"") && err.contains("10m"),
            "{err}"
        );
    }
}
