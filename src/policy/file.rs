//! Policy files: the raw TOML types, and their validation into [`Route`]s and [`TestCase`]s
//! with every error located by file, line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::matcher::Pattern;
use super::{Route, TestCase, TestExpect, TestIdentity};
use crate::source::SourceError;
use crate::units::{HumanDuration, Rate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    upstream: Option<Spanned<String>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    test: Vec<Spanned<RawTest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    methods: Spanned<Vec<Spanned<String>>>,
    path: Spanned<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    roles: Option<Spanned<Vec<String>>>,
    owner: Option<Spanned<toml::Value>>,
    #[serde(default)]
    mfa: bool,
    mfa_max_age: Option<Spanned<HumanDuration>>,
    rate_limit: Option<Rate>,
    upstream: Option<Spanned<String>>,
    #[serde(default = "yes")]
    enforce: bool,
    #[serde(default)]
    audit: bool,
    /// `cors = false`: no CORS on this route even when `[cors]` is set.
    #[serde(default = "yes")]
    cors: bool,
    request_fields: Option<Spanned<Vec<String>>>,
    response_fields: Option<Spanned<Vec<String>>>,
    response_fields_by_role: Option<Spanned<std::collections::BTreeMap<String, Vec<String>>>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    request: Spanned<String>,
    #[serde(rename = "as")]
    identity: Option<RawIdentity>,
    expect: Spanned<String>,
    /// How long ago the caller passed the second factor (for `mfa_max_age` routes).
    auth_age: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    user: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    mfa: bool,
    email: Option<String>,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// What one file yields: its routes and test cases, or every error found in it.
pub struct ParsedFile {
    pub routes: Vec<Route>,
    pub tests: Vec<TestCase>,
}

/// Parses and validates one policy file. `upstream_exists` says whether an upstream name
/// is configured. All errors are collected, not just the first.
pub fn parse_file(
    path: &Path,
    src: &str,
    upstream_exists: &dyn Fn(&str) -> bool,
) -> Result<ParsedFile, Vec<SourceError>> {
    // An empty file is almost always one caught mid-write; refusing it keeps a reload
    // from swapping in a policy with no routes.
    if src.trim().is_empty() {
        return Err(vec![SourceError::whole_file(
            path,
            "the file is empty (delete it to remove its routes)",
        )]);
    }
    // Every syntax or type error of the file, not only the first (see `parse_toml_all`).
    let raw: RawFile = crate::source::parse_toml_all(path, src)?;
    let mut errors = Vec::new();
    let mut err = |span: std::ops::Range<usize>, key: String, msg: String| {
        errors.push(SourceError::at(path, src, Some(span), Some(key), msg));
    };

    if let Some(u) = &raw.upstream {
        if !upstream_exists(u.get_ref()) {
            err(
                u.span(),
                "upstream".into(),
                format!("upstream {:?} is not defined in [upstreams]", u.get_ref()),
            );
        }
    }

    let mut routes = Vec::with_capacity(raw.route.len());
    for (i, spanned) in raw.route.iter().enumerate() {
        let key = |field: &str| format!("route[{}].{field}", i + 1);
        let r = spanned.get_ref();
        let (line, _) = crate::source::line_col(src, spanned.span().start);

        let mut methods = Vec::new();
        if r.methods.get_ref().is_empty() {
            err(r.methods.span(), key("methods"), "at least one method is needed".into());
        }
        for m in r.methods.get_ref() {
            let upper = m.get_ref().to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                if let Ok(method) = upper.parse::<http::Method>() {
                    methods.push(method);
                }
            } else {
                err(
                    m.span(),
                    key("methods"),
                    format!(
                        "unknown method {:?}; expected one of {}",
                        m.get_ref(),
                        METHODS.join(", ")
                    ),
                );
            }
        }

        let pattern = match Pattern::parse(r.path.get_ref()) {
            Ok(p) => Some(p),
            Err(msg) => {
                err(r.path.span(), key("path"), msg);
                None
            }
        };

        let owner = match (&r.owner, &pattern) {
            (Some(owner), Some(pattern)) => super::owner::compile(owner.get_ref(), pattern, r.path.get_ref())
                .map_err(|m| err(owner.span(), key("owner"), m))
                .ok(),
            _ => None,
        };
        let roles: Option<Vec<String>> = r.roles.as_ref().map(|s| s.get_ref().clone());
        if r.public {
            // `roles = []` allows nobody and `public` everybody: either way a contradiction.
            if let Some(roles) = r.roles.as_ref() {
                err(
                    roles.span(),
                    key("roles"),
                    "a public route cannot also list roles".into(),
                );
            }
            if let Some(owner) = &r.owner {
                err(
                    owner.span(),
                    key("owner"),
                    "a public route has no caller to own anything".into(),
                );
            }
        }
        let mfa_max_age = r.mfa_max_age.as_ref().and_then(|age| {
            let secs = age.get_ref().0.as_secs();
            if r.public {
                err(
                    age.span(),
                    key("mfa_max_age"),
                    "a public route has no caller to hold to an age".into(),
                );
                None
            } else if secs == 0 || age.get_ref().0.subsec_nanos() != 0 {
                err(
                    age.span(),
                    key("mfa_max_age"),
                    "mfa_max_age must be a whole number of seconds, at least 1s".into(),
                );
                None
            } else {
                Some(secs)
            }
        });
        if roles.iter().flatten().any(|r| r.is_empty()) {
            let span = r.roles.as_ref().map_or(spanned.span(), |s| s.span());
            err(span, key("roles"), "a role name cannot be empty".into());
        }

        let upstream = match (&r.upstream, &raw.upstream) {
            (Some(u), _) => {
                if !upstream_exists(u.get_ref()) {
                    err(
                        u.span(),
                        key("upstream"),
                        format!("upstream {:?} is not defined in [upstreams]", u.get_ref()),
                    );
                }
                Some(u.get_ref().clone())
            }
            (None, Some(u)) => Some(u.get_ref().clone()),
            (None, None) => {
                err(
                    spanned.span(),
                    key("upstream"),
                    "no upstream: set `upstream` at the top of the file or on the route".into(),
                );
                None
            }
        };

        let raw_fields = super::fields::RawFields {
            request_fields: r.request_fields.as_ref(),
            response_fields: r.response_fields.as_ref(),
            response_fields_by_role: r.response_fields_by_role.as_ref(),
        };
        let fields = super::fields::compile(&raw_fields, r.public, &mut |span, field, msg| {
            err(span, key(field), msg)
        });

        if let (Some(pattern), Some(upstream)) = (pattern, upstream) {
            routes.push(Route {
                index: 0,
                name: r.name.clone().unwrap_or_else(|| format!("{}:{line}", path.display())),
                file: path.to_path_buf(),
                line,
                methods,
                path: r.path.get_ref().clone(),
                pattern,
                public: r.public,
                roles,
                owner,
                mfa: r.mfa,
                mfa_max_age,
                rate_limit: r.rate_limit,
                upstream,
                enforce: r.enforce,
                audit: r.audit,
                cors: r.cors,
                request_fields: fields.request,
                response_fields: fields.response,
            });
        }
    }

    let mut tests = Vec::with_capacity(raw.test.len());
    for (i, spanned) in raw.test.iter().enumerate() {
        let key = |field: &str| format!("test[{}].{field}", i + 1);
        let t = spanned.get_ref();
        let (line, _) = crate::source::line_col(src, spanned.span().start);
        let request = t.request.get_ref();
        let Some((method, target)) = request.split_once(' ').map(|(m, p)| (m.trim(), p.trim())) else {
            err(
                t.request.span(),
                key("request"),
                format!("{request:?} is not \"METHOD /path\""),
            );
            continue;
        };
        let method = match method.to_ascii_uppercase().parse::<http::Method>() {
            Ok(m) if METHODS.contains(&m.as_str()) => m,
            _ => {
                err(t.request.span(), key("request"), format!("unknown method {method:?}"));
                continue;
            }
        };
        let expect = match t.expect.get_ref().as_str() {
            "allow" => TestExpect::Allow,
            "deny" => TestExpect::Deny,
            "unauthenticated" => TestExpect::Unauthenticated,
            "not_found" => TestExpect::NotFound,
            other => {
                err(
                    t.expect.span(),
                    key("expect"),
                    format!("expect {other:?}: expected allow, deny, unauthenticated or not_found"),
                );
                continue;
            }
        };
        let bad_attribute = t
            .identity
            .as_ref()
            .and_then(|a| crate::attributes::check(&a.attributes).err());
        if let Some(m) = bad_attribute {
            err(spanned.span(), key("as.attributes"), m);
            continue;
        }
        tests.push(TestCase {
            file: path.to_path_buf(),
            line,
            method,
            target: target.to_owned(),
            identity: t.identity.as_ref().map(|a| TestIdentity {
                user: a.user.clone(),
                roles: a.roles.clone(),
                mfa: a.mfa,
                email: a.email.clone(),
                attributes: a.attributes.clone(),
            }),
            expect,
            auth_age: t.auth_age.map(|a| a.0.as_secs()),
        });
    }

    if errors.is_empty() {
        Ok(ParsedFile { routes, tests })
    } else {
        Err(errors)
    }
}

/// The `*.toml` files of a directory, sorted by name so route order is stable.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SourceError::whole_file(dir, format!("cannot read the policy directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
