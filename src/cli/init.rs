//! `portcullis init [DIR] --upstream URL`: writes a commented `gateway.toml` and a
//! starter policy for one upstream API, then prints what to run next.
//!
//! The files are templates (`init/gateway.toml`, `init/policy.toml`) with a handful of
//! `{{placeholders}}`. The rendered configuration goes through [`Config::parse`] before
//! anything is written, so a bad `--upstream` is refused with the configuration's own
//! message, and what is written is a configuration the gateway loads. Existing files are
//! never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis::Config;

use super::args::InitArgs;
use super::shared::fail;

const GATEWAY_TEMPLATE: &str = include_str!("init/gateway.toml");
const POLICY_TEMPLATE: &str = include_str!("init/policy.toml");

/// The longest upstream name `--name` takes (it also names the policy file).
const MAX_NAME: usize = 32;

/// Writes the configuration and the policy, or says why not (exit 1).
pub fn run(args: &InitArgs) -> ExitCode {
    match init(args) {
        Ok(written) => {
            print_next_steps(args, &written);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// What `init` wrote.
struct Written {
    config: PathBuf,
    policy: PathBuf,
}

fn init(args: &InitArgs) -> Result<Written, String> {
    check_name(&args.name)?;
    let config_path = shown(&args.dir, "gateway.toml");
    let policy_dir = args.dir.join("policies");
    let policy_path = policy_dir.join(format!("{}.toml", args.name));
    let values = Values {
        name: &args.name,
        upstream: &args.upstream,
        listen: args.listen,
        config: &config_path,
        data_dir: &args.data_dir,
    };
    let gateway_toml = values.render(GATEWAY_TEMPLATE);
    let policy_toml = values.render(POLICY_TEMPLATE);
    // The same parser `serve` uses: a URL it would refuse is refused here, by its message.
    Config::parse(&config_path, &gateway_toml).map_err(|errors| match errors.0.first() {
        Some(e) if e.key.as_deref().is_some_and(|k| k.starts_with("[upstreams]")) => {
            format!("--upstream {:?}: {}", args.upstream, e.message)
        }
        _ => format!("the configuration init would write does not load: {errors}"),
    })?;

    refuse_existing(&config_path, &policy_dir)?;
    std::fs::create_dir_all(&policy_dir).map_err(|e| format!("cannot create {}: {e}", policy_dir.display()))?;
    write_new(&config_path, &gateway_toml)?;
    write_new(&policy_path, &policy_toml)?;
    Ok(Written {
        config: config_path,
        policy: shown(&args.dir, &format!("policies/{}.toml", args.name)),
    })
}

/// An upstream name is a bare TOML key and a file name: lower-case letters, digits, `-`
/// and `_`, starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= MAX_NAME;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name {name:?}: use lower-case letters, digits, '-' and '_', starting with a letter (at most {MAX_NAME})"
        ))
    }
}

/// Refuses to run over an earlier configuration or policy: names every file in the way.
fn refuse_existing(config_path: &Path, policy_dir: &Path) -> Result<(), String> {
    let mut existing = Vec::new();
    if config_path.symlink_metadata().is_ok() {
        existing.push(config_path.display().to_string());
    }
    if let Ok(entries) = std::fs::read_dir(policy_dir) {
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().display().to_string())
            .collect();
        names.sort();
        existing.extend(names);
    } else if policy_dir.symlink_metadata().is_ok() {
        existing.push(policy_dir.display().to_string());
    }
    if existing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to overwrite {} (move them away, or init into another directory)",
        existing.join(", ")
    ))
}

/// Creates `path` with `text`; never replaces a file that appeared in the meantime.
fn write_new(path: &Path, text: &str) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `DIR/file`, without a leading `./` when DIR is the current directory.
fn shown(dir: &Path, file: &str) -> PathBuf {
    if dir == Path::new(".") || dir.as_os_str().is_empty() {
        PathBuf::from(file)
    } else {
        dir.join(file)
    }
}

/// What fills the templates' placeholders.
struct Values<'a> {
    name: &'a str,
    upstream: &'a str,
    listen: SocketAddr,
    config: &'a Path,
    data_dir: &'a str,
}

impl Values<'_> {
    fn render(&self, template: &str) -> String {
        // A TOML string, escaped: the URL is checked only after rendering.
        let toml_string = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let outbox = format!("{}/outbox", self.data_dir.trim_end_matches('/'));
        template
            .replace("{{name}}", self.name)
            .replace("{{upstream_toml}}", &toml_string(self.upstream))
            .replace("{{data_dir_toml}}", &toml_string(self.data_dir))
            .replace("{{outbox_toml}}", &toml_string(&outbox))
            .replace("{{data_dir}}", &single_line(self.data_dir.trim_end_matches('/')))
            .replace("{{upstream}}", &single_line(self.upstream))
            .replace("{{listen}}", &self.listen.to_string())
            .replace("{{public_url}}", &format!("https://localhost:{}", self.listen.port()))
            .replace("{{config}}", &single_line(&self.config.display().to_string()))
    }
}

/// Where the gateway generates its certificate, as seen from here.
fn cert_path(args: &InitArgs) -> PathBuf {
    let data_dir = Path::new(&args.data_dir);
    if data_dir.is_absolute() {
        data_dir.join("tls/gateway.crt")
    } else {
        shown(
            &args.dir,
            &format!("{}/tls/gateway.crt", args.data_dir.trim_end_matches('/')),
        )
    }
}

/// Text for a comment line: no line breaks that would end the comment.
fn single_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn print_next_steps(args: &InitArgs, written: &Written) {
    let config = written.config.display();
    let port = args.listen.port();
    let cert = cert_path(args);
    println!(
        "wrote {config} and {} for the upstream {} = {}",
        written.policy.display(),
        args.name,
        args.upstream
    );
    println!();
    println!("next steps:");
    println!("  portcullis --config {config} policy test        # the policy's test cases");
    println!("  portcullis --config {config} user add --email you@example.com --role editor");
    println!("  portcullis --config {config} serve");
    println!("  curl --cacert {} https://localhost:{port}/health", cert.display());
    println!();
    // The variable outlives a change of directory: an absolute path.
    let absolute = std::fs::canonicalize(&written.config).unwrap_or_else(|_| written.config.clone());
    println!(
        "(or export PORTCULLIS_CONFIG={} and leave out --config)",
        absolute.display()
    );
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn upstream_names_are_bare_keys_and_file_names() {
        for good in ["api", "orders-v2", "a_b", "x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "API", "2api", "../x", "a/b", "a b", "a.b", "a\"b", &"a".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
