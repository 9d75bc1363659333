//! Account attributes changed by an administrator (`portcullis user attr ...`), and
//! the staleness of the access tokens that carried the old ones.
//!
//! Access tokens carry a user's attributes (claim `attrs`), so a change marks every
//! access token issued before it stale, as a logout would, without ending the sessions:
//! the next refresh issues a token with the new attributes. The bounds are those of
//! [`crate::attributes`].

use std::collections::BTreeMap;

use super::registration::normalize_email;
use super::service::AuthService;
use crate::attributes::{self, Attributes};
use crate::audit::{Event, EventKind};
use crate::store::{StoreError, User};

/// What an attribute change did: the account after it, and the keys set and removed.
pub struct AttributeChange {
    pub user: User,
    pub set: Vec<String>,
    pub removed: Vec<String>,
}

impl AuthService {
    /// Sets `set` and removes `unset` on the account of `email` (one write, all or
    /// nothing); with both empty, changes nothing and returns the account. A change
    /// makes the account's access tokens stale and is audited as
    /// `user_attributes_changed` with the keys (not the values).
    pub async fn change_attributes(
        &self,
        email: &str,
        set: BTreeMap<String, String>,
        unset: Vec<String>,
    ) -> Result<AttributeChange, String> {
        for (k, v) in &set {
            attributes::check_key(k)?;
            attributes::check_value(k, v)?;
        }
        for k in &unset {
            attributes::check_key(k)?;
            if set.contains_key(k) {
                return Err(format!("attribute {k:?} is both set and removed"));
            }
        }
        let email = normalize_email(email);
        let user = self
            .store
            .user_by_email(&email)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no account with email {email}"))?;
        if set.is_empty() && unset.is_empty() {
            return Ok(AttributeChange {
                user,
                set: Vec::new(),
                removed: Vec::new(),
            });
        }
        let mut refusal = None;
        let mut removed = Vec::new();
        let updated = self
            .store
            .try_update_user(&user.id, |u| {
                let mut next: Attributes = u.attributes.clone();
                removed = unset.iter().filter(|k| next.remove(*k).is_some()).cloned().collect();
                next.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                if let Err(e) = attributes::check(&next) {
                    refusal = Some(e);
                    return false;
                }
                u.attributes = next;
                true
            })
            .await
            .map_err(|e| match e {
                StoreError::NoSuchUser => format!("no account with email {email}"),
                other => other.to_string(),
            })?;
        let Some(user) = updated else {
            return Err(refusal.unwrap_or_else(|| "the attributes were not changed".into()));
        };
        self.stale_access_tokens(&user.id).await.map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        let set: Vec<String> = set.into_keys().collect();
        let mut ev = Event::new(EventKind::UserAttributesChanged);
        ev.user_id = Some(user.id.clone());
        ev.email = Some(user.email.clone());
        ev.reason = Some(format!(
            "by admin command; set [{}], removed [{}]; access tokens stale",
            set.join(", "),
            removed.join(", ")
        ));
        self.audit.durable(ev).await;
        Ok(AttributeChange { user, set, removed })
    }

    /// Refuses every access token of `user_id` issued until now; its sessions live on,
    /// so a refresh gets a token made from the account as it is now.
    ///
    /// It covers every token issued so far: its time is the one a token issued now would
    /// carry ([`Self::issued_at`]), which is one past an earlier revocation in the same
    /// second. (Only admin commands stale tokens; a burst of them within one second moves
    /// a user's token times ahead by one second each.)
    pub async fn stale_access_tokens(&self, user_id: &str) -> Result<(), StoreError> {
        let after = self.issued_at(user_id, self.clock.now());
        self.store.revoke_user_tokens(user_id, after).await?;
        self.revoked.users.insert(user_id.to_owned(), after);
        Ok(())
    }

    /// The `iat` of an access token issued now for `user_id`: never at or before a
    /// revocation of that user's tokens, so a token issued in the second of a revocation
    /// (a refresh right after an attribute change) is not refused with the old ones.
    pub(super) fn issued_at(&self, user_id: &str, now: u64) -> u64 {
        self.revoked.users.get(user_id).map_or(now, |after| past(now, *after))
    }
}

/// The second something made `now` carries (a token, a session, a later revocation) when
/// a revocation covered everything up to second `revoked`: `now`, or one past `revoked`
/// if that is not earlier, since times are whole seconds.
pub(super) fn past(now: u64, revoked: u64) -> u64 {
    now.max(revoked.saturating_add(1))
}
