//! `portcullis demo`: the demo shop and the gateway together, the demo accounts, and the
//! printed walkthrough. Only in builds with the `demo` feature (the default).
//!
//! The accounts are the demo's own data ([`ACCOUNTS`]): each says which part of the
//! walkthrough it plays; whether it is enrolled in TOTP follows the configuration's
//! `[login] require_mfa_roles`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use portcullis::audit::{Event, EventKind};
use portcullis::auth::service::AuthService;
use portcullis::Config;

use super::args::LogFormat;
use super::serve::{build, init_logging, start, wait_then_shut_down};
use super::shared::{load_config, run_async};

/// A demo account, created on the first start.
struct Account {
    email: &'static str,
    role: &'static str,
    name: &'static str,
    /// The part of the printed walkthrough this account plays, if any.
    part: Option<Part>,
}

/// The parts of the printed walkthrough.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Logs in, edits and reads their own particulars, and is refused the staff
    /// account's particulars.
    Shopper,
    /// Logs in (with TOTP when its role requires it) and reads the staff records.
    Staff,
}

/// One account per role of the demo shop.
const ACCOUNTS: [Account; 4] = [
    Account {
        email: "customer@shop.example",
        role: "customer",
        name: "Customer",
        part: Some(Part::Shopper),
    },
    Account {
        email: "clerk@shop.example",
        role: "inventory",
        name: "Inventory",
        part: None,
    },
    Account {
        email: "support@shop.example",
        role: "support",
        name: "Support",
        part: None,
    },
    Account {
        email: "admin@shop.example",
        role: "admin",
        name: "Admin",
        part: Some(Part::Staff),
    },
];

/// The upstream the demo serves the shop on.
const SHOP_UPSTREAM: &str = "shop";

/// A demo account, as printed for the user (the file holding these is mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct DemoUser {
    id: String,
    email: String,
    role: String,
    password: String,
    totp_secret: Option<String>,
}

/// Starts the shop and the gateway, prints the walkthrough, and runs until a signal.
pub fn run(config_path: &Path, log_format: LogFormat, show_qr: bool) -> ExitCode {
    run_async(async {
        let _flush_logs = init_logging(log_format);
        let Some(config) = load_config(config_path) else {
            return ExitCode::FAILURE;
        };
        let (stop, shop) = match start_shop(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::FAILURE;
            }
        };
        let Some(gateway) = build(config.clone()).await else {
            return ExitCode::FAILURE;
        };
        let users = match ensure_demo_users(gateway.inner().auth(), &config).await {
            Ok(users) => users,
            Err(e) => {
                eprintln!("portcullis: cannot create the demo users: {e}");
                return ExitCode::FAILURE;
            }
        };
        let Some(running) = start(gateway).await else {
            return ExitCode::FAILURE;
        };
        print_demo(&config, running.tls_addr, &users, show_qr);
        wait_then_shut_down(running).await;
        let _ = stop.send(());
        let _ = shop.await;
        ExitCode::SUCCESS
    })
}

/// Starts the demo shop on the address of the `shop` upstream.
async fn start_shop(
    config: &Config,
) -> Result<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>), String> {
    let upstream = config.upstreams.get(SHOP_UPSTREAM).ok_or_else(|| {
        format!(
            "{}: the demo needs an upstream named {SHOP_UPSTREAM:?} in [upstreams]",
            config.source.display()
        )
    })?;
    let addr: SocketAddr = upstream.authority.as_str().parse().map_err(|_| {
        format!(
            "{}: [upstreams] {SHOP_UPSTREAM}: the demo serves the shop itself and needs an IP address and port, not {:?}",
            config.source.display(),
            upstream.authority.as_str()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot start the demo shop on {addr}: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(upstream_demo::serve(listener, upstream_demo::Shop::seeded(), async {
        let _ = stopped.await;
    }));
    Ok((stop, task))
}

/// Creates the [`ACCOUNTS`] on first start and remembers their credentials in
/// `data_dir/demo-users.json`; accounts whose role is in `require_mfa_roles` are enrolled
/// in TOTP already.
async fn ensure_demo_users(auth: &AuthService, config: &Config) -> Result<Vec<DemoUser>, String> {
    let path = config.server.data_dir.join("demo-users.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut users = Vec::new();
    for account in &ACCOUNTS {
        let password = portcullis::admin::generate_password();
        let user = auth
            .add_user(
                account.email,
                vec![account.role.to_owned()],
                password.clone(),
                account.name,
            )
            .await?;
        let mut ev = Event::new(EventKind::UserCreated);
        ev.user_id = Some(user.id.clone());
        ev.email = Some(user.email.clone());
        ev.reason = Some(format!("demo account; roles [{}]", account.role));
        auth.audit().durable(ev).await;
        let totp_secret = if config.login.require_mfa_roles.iter().any(|r| r == account.role) {
            let secret = portcullis::auth::totp::generate_secret();
            auth.set_totp(&user.id, &secret).await.map_err(|e| e.to_string())?;
            Some(secret)
        } else {
            None
        };
        users.push(DemoUser {
            id: user.id,
            email: account.email.to_owned(),
            role: account.role.to_owned(),
            password,
            totp_secret,
        });
    }
    let json = serde_json::to_string_pretty(&users).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(json.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(users)
}

/// The demo user who plays `part` in the walkthrough.
fn playing(users: &[DemoUser], part: Part) -> Option<&DemoUser> {
    let account = ACCOUNTS.iter().find(|a| a.part == Some(part))?;
    users.iter().find(|u| u.email == account.email)
}

/// Prints the accounts and ready-to-paste curl lines.
fn print_demo(config: &Config, addr: SocketAddr, users: &[DemoUser], show_qr: bool) {
    let host = config
        .server
        .public_url
        .authority()
        .map_or_else(|| addr.to_string(), ToString::to_string);
    let base = format!("https://{host}");
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "portcullis".into());
    println!();
    println!("Portcullis demo: the gateway on {base} in front of the demo shop.");
    println!("The certificate is self-signed, hence curl -k.");
    println!();
    println!(
        "Demo accounts (kept in {}):",
        config.server.data_dir.join("demo-users.json").display()
    );
    for u in users {
        println!(
            "  {:<10} {:<24} password {}{}",
            u.role,
            u.email,
            u.password,
            u.totp_secret
                .as_deref()
                .map(|s| format!("  TOTP secret {s}"))
                .unwrap_or_default()
        );
    }
    if show_qr {
        for u in users {
            let uri = u
                .totp_secret
                .as_deref()
                .and_then(|s| portcullis::auth::totp::otpauth_uri(s, &u.email, &config.totp.issuer));
            if let Some(qr) = uri.as_deref().and_then(qr_text) {
                println!();
                println!("TOTP of {} (scan with an authenticator app):", u.email);
                print!("{qr}");
            }
        }
    }
    println!();
    println!("Public routes and refusals:");
    println!("  curl -k {base}/api/products");
    println!("  curl -k -i {base}/api/orders                  # needs a token: 401");
    println!("  curl -k -i {base}/api/nothing-here            # no route: 404");
    println!("  curl -k -i '{base}/api/%2e%2e/staff'          # ambiguous path: 400, never forwarded");
    if let (Some(c), Some(a)) = (playing(users, Part::Shopper), playing(users, Part::Staff)) {
        let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]+)\".*/\\1/'");
        let login = |u: &DemoUser, name: &str| {
            format!(
                "curl -sk {base}/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"{}\"}}' | {}",
                u.email,
                u.password,
                field(name)
            )
        };
        println!();
        println!(
            "Log in as the {}, edit and read your own particulars, be refused someone else's:",
            c.role
        );
        println!("  TOKEN=$({})", login(c, "access_token"));
        println!("  curl -k -X PUT {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"name\":\"Casey\",\"address\":\"1 High St\",\"phone\":\"555-0100\"}}'", c.id);
        println!(
            "  curl -k {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\"",
            c.id
        );
        println!(
            "  curl -k -i {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\"   # 403",
            a.id
        );
        println!("  curl -k -i -X PUT {base}/api/customers/{} -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"name\":\"Casey\",\"role\":\"admin\"}}'   # 422 unknown_field", c.id);
        println!();
        match a.totp_secret.as_deref() {
            Some(secret) => {
                println!("Log in as the {} with TOTP and read the staff records:", a.role);
                println!("  MFA=$({})", login(a, "mfa_token"));
                println!(
                    "  ADMIN=$(curl -sk {base}/auth/mfa -H 'content-type: application/json' -d \"{{\\\"mfa_token\\\":\\\"$MFA\\\",\\\"code\\\":\\\"$({me} totp {secret})\\\"}}\" | {})",
                    field("access_token")
                );
            }
            None => {
                println!("Log in as the {} and read the staff records:", a.role);
                println!("  ADMIN=$({})", login(a, "access_token"));
            }
        }
        println!("  curl -k {base}/api/staff -H \"Authorization: Bearer $ADMIN\"");
    }
    println!();
    println!("Press Ctrl-C to stop.");
}

/// A QR code of `text` drawn with half blocks (two rows of modules per line, a quiet
/// zone of two modules), light modules drawn: right on a dark terminal.
fn qr_text(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let (quiet, size) = (2, qr.size());
    let light = |x: i32, y: i32| !qr.get_module(x, y);
    let mut out = String::new();
    for y in (-quiet..size + quiet).step_by(2) {
        for x in -quiet..size + quiet {
            out.push(match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each part of the walkthrough is played by exactly one account, and no two accounts
    // share an email.
    #[test]
    fn every_part_has_one_player() {
        for part in [Part::Shopper, Part::Staff] {
            assert_eq!(ACCOUNTS.iter().filter(|a| a.part == Some(part)).count(), 1);
        }
        let mut emails: Vec<&str> = ACCOUNTS.iter().map(|a| a.email).collect();
        emails.sort_unstable();
        emails.dedup();
        assert_eq!(emails.len(), ACCOUNTS.len());
    }

    // The walkthrough finds its players among the users read back from the file.
    #[test]
    fn players_are_found_by_email() {
        let users: Vec<DemoUser> = ACCOUNTS
            .iter()
            .map(|a| DemoUser {
                id: format!("u-{}", a.name),
                email: a.email.to_owned(),
                role: a.role.to_owned(),
                password: String::new(),
                totp_secret: None,
            })
            .collect();
        for part in [Part::Shopper, Part::Staff] {
            let player = playing(&users, part).expect("a player");
            assert!(ACCOUNTS.iter().any(|a| a.email == player.email && a.part == Some(part)));
        }
        assert!(playing(&[], Part::Shopper).is_none());
    }

    // The terminal drawing is a QR code a scanner reads back to the text.
    #[test]
    fn terminal_qr_decodes() {
        let uri = "otpauth://totp/Portcullis:admin%40shop.example?secret=JBSWY3DPEHPK3PXP&issuer=Portcullis";
        let text = super::qr_text(uri).unwrap();
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let (w, h, scale) = (lines[0].len() as u32, lines.len() as u32 * 2, 4);
        let img = image::GrayImage::from_fn(w * scale, h * scale, |x, y| {
            let c = lines[(y / scale / 2) as usize][(x / scale) as usize];
            let top = (y / scale) % 2 == 0;
            let light = match c {
                '█' => true,
                '▀' => top,
                '▄' => !top,
                _ => false,
            };
            image::Luma([if light { 255 } else { 0 }])
        });
        let mut prepared = rqrr::PreparedImage::prepare(img);
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().unwrap().1, uri);
    }
}
