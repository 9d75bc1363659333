//! `portcullis policy ...`: check, test and explain policy files, and print the results.
//!
//! `explain` prints what the gateway's own phases decide: the target goes through
//! [`normalize_request`] and the decision through [`judge`] (which asks
//! [`PolicySet::decide`]); the route-by-route view comes from [`PolicySet::explain`].

use std::path::Path;
use std::process::ExitCode;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Uri, Version};

use portcullis::audit::EventKind;
use portcullis::error::GatewayError;
use portcullis::path::canonical_path;
use portcullis::pipeline::authz::{judge, Verdict};
use portcullis::pipeline::normalize::{normalize_request, Target};
use portcullis::policy::lint::KnownRoles;
use portcullis::policy::{run_case, Decision, PolicySet, Principal};
use portcullis::Config;

use super::args::{ExplainArgs, PolicyCommand, PolicyInitArgs};

/// Runs one `policy` command.
pub fn run(config_path: &Path, command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { dir } => check(config_path, dir.as_deref()),
        PolicyCommand::Test { dir } => test(config_path, dir.as_deref()),
        PolicyCommand::Explain(args) => explain(config_path, args),
        PolicyCommand::Init(args) => init(&args),
    }
}

/// Prints a starter policy for an OpenAPI document (no configuration needed).
fn init(args: &PolicyInitArgs) -> ExitCode {
    match portcullis::openapi::from_file(&args.from_openapi, &args.upstream) {
        Ok(policy) => {
            print!("{policy}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints which routes match a request, how each judged it, and the gateway's decision.
fn explain(config_path: &Path, args: ExplainArgs) -> ExitCode {
    let ExplainArgs {
        method,
        path,
        roles,
        user,
        mfa,
        auth_age,
        attrs,
        dir,
    } = args;
    // The caller passed its second factor at time 0, and is judged `auth_age` later.
    let now = auth_age.map_or(0, |a| a.0.as_secs());
    let path = path.as_str();
    let Some((set, _)) = policies_or_report(config_path, dir.as_deref()) else {
        return ExitCode::FAILURE;
    };
    let shadow = Config::load(config_path).is_ok_and(|c| c.shadow);
    let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
        eprintln!("portcullis: {method:?} is not an HTTP method");
        return ExitCode::FAILURE;
    };
    let caller = (user.is_some() || !roles.is_empty() || !attrs.is_empty()).then(|| Principal {
        id: user.unwrap_or_else(|| "u-explain".into()),
        email: String::new(),
        roles,
        mfa,
        auth_time: 0,
        attributes: attrs.into_iter().collect(),
    });
    match &caller {
        None => println!("{method} {path} as an anonymous caller"),
        Some(p) => println!(
            "{method} {path} as user {} with roles [{}]{}, {}",
            p.id,
            p.roles.join(", "),
            if p.attributes.is_empty() {
                String::new()
            } else {
                let a: Vec<String> = p.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(" and attributes [{}]", a.join(", "))
            },
            if p.mfa {
                format!("after TOTP {now}s ago")
            } else {
                "without TOTP".to_owned()
            }
        ),
    }

    // Phase 1, as the gateway runs it, on a request with the given path and query and
    // no authority (HTTP/2 without `Host`), so that only the path is judged. A path no
    // request line can carry as written (a space, a `#`, nothing at all) still gets the
    // normalizer's verdict on exactly what was typed.
    let raw_path = path.split('?').next().unwrap_or("");
    let no_headers = HeaderMap::new();
    let target = match PathAndQuery::try_from(path).ok().filter(|pq| pq.path() == raw_path) {
        Some(pq) => normalize_request(&method, &Uri::from(pq), Version::HTTP_2, &no_headers),
        None => normalize_request(&method, &Uri::from_static("/"), Version::HTTP_2, &no_headers).and_then(|_| {
            let path = canonical_path(raw_path).map_err(GatewayError::BadTarget)?;
            Ok(Target { path, query: None })
        }),
    };
    let target = match target {
        Ok(target) => target,
        Err(e) => {
            let status = e.status().as_u16();
            match e {
                GatewayError::MethodNotAllowed(_) => println!("decision: {status}, CONNECT is never proxied"),
                GatewayError::BadTarget(why) => {
                    println!("decision: {status}, the target is refused before any route is consulted ({why})")
                }
                // `normalize_request` refuses with the two above; any other error would be
                // printed with its own status and message.
                other => println!("decision: {status}, {other}"),
            }
            return ExitCode::SUCCESS;
        }
    };
    if target.path != raw_path {
        println!("canonical path: {}", target.path);
    }

    // Every route's view of the canonical path.
    let explanation = set.explain_at(&method, &target.path, caller.as_ref(), now);
    let mut others = 0;
    for (i, step) in explanation.steps.iter().enumerate() {
        let r = step.route;
        let at = format!("{}:{}", r.file.display(), r.line);
        let verdict = match (&step.outcome, step.path_matched) {
            (_, false) => {
                others += 1;
                continue;
            }
            (None, true) => format!(
                "path matches; method {method} is not one of [{}]",
                r.methods.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            (Some(Ok(())), true) => "matches; allows".to_owned(),
            (Some(Err(why)), true) => format!("matches; refuses: {why}"),
        };
        let shadowed = if !r.enforce { " [enforce = false]" } else { "" };
        println!("  {:>3}. {:?} ({at}){shadowed}: {verdict}", i + 1, r.name);
    }
    if others > 0 {
        println!("  ({others} other routes do not match the path)");
    }

    // Phase 3, as the gateway runs it: the status and shadow mode come from `judge`,
    // the decision `authorize` makes for every request.
    let text = match &explanation.decision {
        Decision::Allow { route } => format!("allow: forwarded to upstream {:?}", route.upstream),
        Decision::NotFound => "deny: no route matches (deny by default)".to_owned(),
        Decision::Unauthenticated { route } => format!("unauthenticated: {:?} needs a token", route.name),
        Decision::Forbidden { route, why } => format!("deny by {:?}: {why}", route.name),
    };
    match judge(&set, &method, &target, caller.as_ref(), now, shadow) {
        Verdict::Allow { .. } => println!("decision: {text}"),
        Verdict::WouldDeny { refusal, .. } => println!(
            "decision: would be {} ({text}); shadow mode forwards it and audits it as {}",
            refusal.status().as_u16(),
            EventKind::WouldDeny
        ),
        Verdict::Deny(e) => println!("decision: {} ({text})", e.status().as_u16()),
    }
    ExitCode::SUCCESS
}

/// Loads the policies of `dir` (default: the configured directory), checking upstream
/// names against the configuration when there is one; with the roles it declares.
fn load_policies(config_path: &Path, dir: Option<&Path>) -> Result<(PolicySet, KnownRoles), Vec<String>> {
    let config = if config_path.exists() {
        Some(Config::load(config_path).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?)
    } else {
        if dir.is_none() {
            return Err(vec![format!(
                "{}: no such configuration file; name a policy directory",
                config_path.display()
            )]);
        }
        eprintln!(
            "warning: {} not found; upstream names are not checked",
            config_path.display()
        );
        None
    };
    let dir = match (dir, &config) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(c)) => c.server.policies.clone(),
        (None, None) => unreachable!("checked above"),
    };
    let exists = |name: &str| config.as_ref().is_none_or(|c| c.upstreams.contains_key(name));
    // With `[roles]` declared, an undeclared role is an error, as at start-up.
    let known: KnownRoles = config.as_ref().and_then(portcullis::policy::roles::declared);
    PolicySet::load_dir_checked(&dir, &exists, known.as_ref())
        .map(|set| (set, known))
        .map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

/// The policies, or `None` after printing every error.
fn policies_or_report(config_path: &Path, dir: Option<&Path>) -> Option<(PolicySet, KnownRoles)> {
    load_policies(config_path, dir)
        .map_err(|errors| {
            for e in &errors {
                eprintln!("error: {e}");
            }
        })
        .ok()
}

/// `policy check`: every error with its place, or the counts and the lint's warnings.
fn check(config_path: &Path, dir: Option<&Path>) -> ExitCode {
    match load_policies(config_path, dir) {
        Ok((set, known)) => {
            let warnings = portcullis::policy::lint::lint(&set, &known);
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "ok: {} routes, {} test cases, {} warning(s)",
                set.routes.len(),
                set.tests.len(),
                warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

/// `policy test`: runs every `[[test]]` case and prints the failures.
fn test(config_path: &Path, dir: Option<&Path>) -> ExitCode {
    let Some((set, _)) = policies_or_report(config_path, dir) else {
        return ExitCode::FAILURE;
    };
    let mut failed = 0;
    for case in &set.tests {
        let (got, why) = run_case(&set, case);
        if got != case.expect {
            failed += 1;
            let who = case.identity.as_ref().map_or_else(
                || "anonymous".to_owned(),
                |i| {
                    format!(
                        "user {} roles [{}]{}",
                        i.user,
                        i.roles.join(", "),
                        if i.mfa { " with mfa" } else { "" }
                    )
                },
            );
            println!(
                "FAIL {}:{}: {} {} as {who}: expected {}, got {got} ({why})",
                case.file.display(),
                case.line,
                case.method,
                case.target,
                case.expect
            );
        }
    }
    let passed = set.tests.len() - failed;
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
