//! Account administration (`portcullis user ...`): one [`execute`] for both ways it runs.
//!
//! sled locks its directory, so while the gateway runs it answers these commands itself
//! over a Unix socket at `data_dir/admin.sock` (mode 0600, in a 0700 directory: only the
//! owner can connect); when it is stopped, the command line opens the database directly.
//! Either way the same code changes the same state, and revocations take effect at once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::auth::tokens::random_token;
use crate::auth::{normalize_email, AuthService};

/// Longest request line the socket reads.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    Add {
        email: String,
        roles: Vec<String>,
        password: Option<String>,
        name: Option<String>,
    },
    List,
    Show {
        email: String,
    },
    Unlock {
        email: String,
    },
    Roles {
        email: String,
        roles: Vec<String>,
    },
    Disable {
        email: String,
    },
    Revoke {
        email: String,
    },
    /// Sets a password (a generated one when `None`).
    Password {
        email: String,
        password: Option<String>,
    },
    Enable {
        email: String,
    },
    /// Removes the account's TOTP and recovery codes and revokes every session.
    ResetMfa {
        email: String,
    },
    /// Sets and removes attributes (both empty: lists them); access tokens go stale.
    Attr {
        email: String,
        set: std::collections::BTreeMap<String, String>,
        unset: Vec<String>,
    },
    AuditList {
        query: crate::audit::Query,
    },
    AuditVerify {
        /// A checkpoint exported earlier, to hold the chain to as well.
        #[serde(default)]
        checkpoint: Option<crate::audit::Checkpoint>,
    },
    /// Signs a checkpoint of the head when it moved, and returns the newest.
    AuditCheckpoint,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// A password that meets any reasonable policy: 128 random bits plus one of each class.
pub fn generate_password() -> String {
    format!("{}-Aa7", &random_token()[..22])
}

async fn user_json(auth: &AuthService, u: &crate::store::User) -> Value {
    let now_ms = auth.clock().now_ms();
    let locked_until = auth.store().locked_until(&u.email, now_ms).await.ok().flatten();
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "roles": u.roles,
        "attributes": u.attributes,
        "confirmed": u.confirmed,
        "disabled": u.disabled,
        "mfa_enabled": u.mfa_enabled(),
        "locked_for_secs": locked_until.map(|t| (t - now_ms).div_ceil(1000)),
    })
}

/// Writes the audit record of an administrative change, before the command answers.
async fn audited(auth: &AuthService, event: crate::audit::EventKind, user: &crate::store::User, reason: String) {
    let mut ev = crate::audit::Event::new(event);
    ev.user_id = Some(user.id.clone());
    ev.email = Some(user.email.clone());
    ev.reason = Some(reason);
    auth.audit().durable(ev).await;
}

/// Runs one command against the identity service.
pub async fn execute(auth: &AuthService, req: AdminRequest) -> Result<Value, String> {
    let find = |email: String| async move {
        let user = auth.store().user_by_email(&normalize_email(&email)).await;
        user.map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account with email {}", normalize_email(&email)))
    };
    let flush = || async { auth.store().flush().await.map_err(|e| e.to_string()) };
    match req {
        AdminRequest::Add {
            email,
            roles,
            password,
            name,
        } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generate_password);
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_owned());
            let user = auth.add_user(&email, roles, password.clone(), &name).await?;
            audited(
                auth,
                crate::audit::EventKind::UserCreated,
                &user,
                format!("by admin command; roles [{}]", user.roles.join(", ")),
            )
            .await;
            let mut out = json!({ "id": user.id, "email": user.email, "roles": user.roles });
            if generated {
                out["password"] = password.into();
            }
            Ok(out)
        }
        AdminRequest::List => {
            let users = auth.store().users().await.map_err(|e| e.to_string())?;
            let listed = futures_util::future::join_all(users.iter().map(|u| user_json(auth, u))).await;
            Ok(Value::Array(listed))
        }
        AdminRequest::Show { email } => Ok(user_json(auth, &find(email.clone()).await?).await),
        AdminRequest::Attr { email, set, unset } => {
            let c = auth.change_attributes(&email, set, unset).await?;
            Ok(json!({ "email": c.user.email, "attributes": c.user.attributes, "set": c.set, "removed": c.removed }))
        }
        AdminRequest::Unlock { email } => {
            // Failures are counted for unknown addresses too; clearing one is no unlock.
            let email = find(email.clone()).await?.email;
            auth.store().clear_failures(&email).await.map_err(|e| e.to_string())?;
            flush().await?;
            let mut ev = crate::audit::Event::new(crate::audit::EventKind::UserUnlocked);
            ev.email = Some(email.clone());
            ev.reason = Some("by admin command".into());
            auth.audit().durable(ev).await;
            Ok(json!({ "unlocked": email }))
        }
        AdminRequest::Roles { email, roles } => {
            if roles.is_empty() {
                return Err("give at least one role".into());
            }
            let user = find(email.clone()).await?;
            let changed = auth.store().update_user(&user.id, |u| u.roles = roles.clone()).await;
            changed.map_err(|e| e.to_string())?;
            // Tokens carry roles: the old ones must not outlive the change.
            auth.revoke_user(&user.id).await.map_err(|e| e.to_string())?;
            flush().await?;
            let change = format!(
                "by admin command; [{}] -> [{}]",
                user.roles.join(", "),
                roles.join(", ")
            );
            audited(auth, crate::audit::EventKind::RolesChanged, &user, change).await;
            Ok(json!({ "email": user.email, "roles": roles, "sessions_revoked": true }))
        }
        AdminRequest::Disable { email } => {
            let user = find(email.clone()).await?;
            let changed = auth.store().update_user(&user.id, |u| u.disabled = true).await;
            changed.map_err(|e| e.to_string())?;
            auth.revoke_user(&user.id).await.map_err(|e| e.to_string())?;
            flush().await?;
            audited(
                auth,
                crate::audit::EventKind::UserDisabled,
                &user,
                "by admin command; sessions revoked".into(),
            )
            .await;
            Ok(json!({ "disabled": user.email }))
        }
        AdminRequest::Password { email, password } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(generate_password);
            let user = auth.set_password(&email, password.clone()).await?;
            let why = "by admin command; every session revoked, lockout cleared".into();
            audited(auth, crate::audit::EventKind::PasswordChanged, &user, why).await;
            let mut out = json!({ "email": user.email, "sessions_revoked": true });
            if generated {
                out["password"] = password.into();
            }
            Ok(out)
        }
        AdminRequest::Enable { email } => {
            let user = auth.enable_user(&email).await?;
            audited(
                auth,
                crate::audit::EventKind::UserEnabled,
                &user,
                "by admin command".into(),
            )
            .await;
            Ok(json!({ "enabled": user.email }))
        }
        AdminRequest::AuditList { query } => {
            let records = crate::audit::list(auth.store(), &query).await;
            serde_json::to_value(records.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
        }
        AdminRequest::AuditVerify { checkpoint } => {
            let report = crate::audit::verify_anchored(auth.store(), auth.keys(), checkpoint.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
        AdminRequest::AuditCheckpoint => {
            crate::audit::sign_checkpoint(auth.store(), auth.keys(), auth.clock().now_ms())
                .await
                .map_err(|e| e.to_string())?;
            let latest = crate::audit::latest_checkpoint(auth.store()).await;
            match latest.map_err(|e| e.to_string())? {
                Some(c) => serde_json::to_value(c).map_err(|e| e.to_string()),
                None => Err("the audit trail is empty: there is nothing to sign".into()),
            }
        }
        AdminRequest::Revoke { email } => {
            let user = find(email.clone()).await?;
            auth.revoke_user(&user.id).await.map_err(|e| e.to_string())?;
            flush().await?;
            audited(
                auth,
                crate::audit::EventKind::SessionsRevoked,
                &user,
                "by admin command".into(),
            )
            .await;
            Ok(json!({ "sessions_revoked": user.email }))
        }
        AdminRequest::ResetMfa { email } => {
            let user = find(email.clone()).await?;
            // The secret goes, so the replay guard of its codes can go with it: the next
            // enrolment's codes are checked against a new secret.
            auth.store()
                .update_user(&user.id, |u| {
                    u.totp_secret = None;
                    u.totp_last_step = 0;
                    u.recovery_codes.clear();
                })
                .await
                .map_err(|e| e.to_string())?;
            auth.revoke_user(&user.id).await.map_err(|e| e.to_string())?;
            flush().await?;
            audited(
                auth,
                crate::audit::EventKind::MfaReset,
                &user,
                "by admin command; TOTP and recovery codes removed, sessions revoked".into(),
            )
            .await;
            Ok(json!({ "mfa_reset": user.email, "sessions_revoked": true }))
        }
    }
}

/// Serves the admin socket until the listener is dropped, with the gateway's identity
/// service.
pub async fn serve_socket(listener: UnixListener, auth: Arc<AuthService>) {
    // The socket file was made by this process, so its owner is the gateway's user.
    let owner = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().and_then(|p| std::fs::metadata(p).ok()))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning on the
                // error, longer each time it repeats.
                tracing::warn!(error = %e, retry_in = ?backoff, "admin socket: accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let peer = stream.peer_cred().ok().map(|c| c.uid());
        let allowed = peer_allowed(peer, owner);
        if !allowed {
            tracing::warn!(peer_uid = ?peer, owner_uid = ?owner, "admin socket: connection from another user refused");
        }
        let auth = auth.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
            // The request is read whoever sent it (a refusal written over an unread
            // request can reach the caller as a reset instead), but never acted on for
            // another user; a caller that sends nothing is not waited for.
            let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
            let reply = match read {
                Err(_) => json!({ "error": "no request received in time" }),
                Ok(Err(e)) => json!({ "error": format!("cannot read: {e}") }),
                Ok(Ok(_)) if !allowed => {
                    json!({ "error": "the admin socket answers only the gateway's own user and root" })
                }
                Ok(Ok(_)) => match serde_json::from_str::<AdminRequest>(&line) {
                    Ok(req) => match execute(&auth, req).await {
                        Ok(v) => json!({ "ok": v }),
                        Err(e) => json!({ "error": e }),
                    },
                    Err(e) => json!({ "error": format!("bad request: {e}") }),
                },
            };
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
        });
    }
}

/// How long a caller has to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a peer may use the admin socket: the gateway's own user, or root (who can
/// read the data directory anyway). The file's mode already keeps others out; this
/// holds even when the mode or the directory's has been loosened. Unknown
/// credentials are refused.
fn peer_allowed(peer_uid: Option<u32>, owner_uid: Option<u32>) -> bool {
    match (peer_uid, owner_uid) {
        (Some(0), _) => true,
        (Some(peer), Some(owner)) => peer == owner,
        _ => false,
    }
}

/// Binds the admin socket, replacing a stale one, readable and writable by the owner only.
pub fn bind_socket(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Sends a command to a running gateway. `None` when no gateway answers at the socket.
pub async fn send(data_dir: &Path, req: &AdminRequest) -> Option<Result<Value, String>> {
    let stream = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    let (read, mut write) = stream.into_split();
    let line = serde_json::to_string(req).ok()?;
    write.write_all(format!("{line}\n").as_bytes()).await.ok()?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await.ok()?;
    let v: Value = serde_json::from_str(&reply).ok()?;
    Some(match (v.get("ok"), v.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (_, Some(e)) => Err(e.as_str().unwrap_or("error").to_owned()),
        _ => Err("malformed reply from the gateway".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only the gateway's own user and root may use the admin socket; a peer whose
    // credentials cannot be read is refused.
    #[test]
    fn peers() {
        assert!(peer_allowed(Some(1000), Some(1000)));
        assert!(peer_allowed(Some(0), Some(1000)));
        assert!(!peer_allowed(Some(1001), Some(1000)));
        assert!(!peer_allowed(None, Some(1000)));
        assert!(!peer_allowed(Some(1000), None));
    }
}
