//! The raw layer of `gateway.toml`: exactly what the file says, as serde reads it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::units::{ByteSize, HumanDuration, Rate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) upstreams: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) rate_limit: RawRateLimit,
    #[serde(default)]
    pub(super) tokens: RawTokens,
    #[serde(default)]
    pub(super) login: RawLogin,
    #[serde(default)]
    pub(super) password: RawPassword,
    pub(super) email: Option<RawEmail>,
    #[serde(default)]
    pub(super) roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) policy: RawPolicyMode,
    #[serde(default)]
    pub(super) registration: super::registration::RawRegistration,
    pub(super) cors: Option<super::cors::RawCors>,
    pub(super) totp: Option<super::totp::RawTotp>,
    #[serde(default)]
    pub(super) upstream_tls: BTreeMap<Spanned<String>, super::upstream_tls::RawUpstreamTls>,
    pub(super) store: Option<super::store::RawStore>,
    pub(super) forward_auth: Option<super::forward_auth::RawForwardAuth>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyMode {
    pub(super) mode: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) retain: Option<HumanDuration>,
    pub(super) queue: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Spanned<String>,
    pub(super) plain_listen: Option<Spanned<String>>,
    pub(super) public_url: Spanned<String>,
    pub(super) data_dir: String,
    pub(super) policies: String,
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) drain_timeout: Option<HumanDuration>,
    pub(super) trusted_proxies: Option<super::proxies::RawTrustedProxies>,
    pub(super) proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_body: Option<ByteSize>,
    pub(super) upstream_timeout: Option<HumanDuration>,
    pub(super) max_header_bytes: Option<ByteSize>,
    pub(super) max_headers: Option<usize>,
    pub(super) header_read_timeout: Option<HumanDuration>,
    pub(super) idle_timeout: Option<HumanDuration>,
    pub(super) tls_handshake_timeout: Option<HumanDuration>,
    pub(super) h2_max_streams: Option<u32>,
    pub(super) max_connections: Option<usize>,
    pub(super) body_read_timeout: Option<HumanDuration>,
    pub(super) request_timeout: Option<HumanDuration>,
    pub(super) upstream_max_connections: Option<usize>,
    pub(super) upstream_idle_timeout: Option<HumanDuration>,
    pub(super) max_filtered_response: Option<ByteSize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub(super) auth_per_ip: Option<Rate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub(super) access_ttl: Option<HumanDuration>,
    pub(super) refresh_ttl: Option<HumanDuration>,
    pub(super) algorithm: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<HumanDuration>,
    pub(super) audience: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub(super) max_failures: Option<u32>,
    pub(super) lockout: Option<HumanDuration>,
    pub(super) mfa_ttl: Option<HumanDuration>,
    pub(super) require_mfa_roles: Option<Vec<String>>,
    pub(super) hash_concurrency: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassword {
    pub(super) min_length: Option<usize>,
    pub(super) require: Option<Vec<Spanned<String>>>,
    pub(super) reject_common: Option<bool>,
    pub(super) reset_ttl: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) outbox: Option<String>,
    pub(super) from: Option<Spanned<String>>,
    pub(super) smtp: Option<RawSmtp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: Spanned<String>,
    pub(super) port: Option<u16>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) username: Option<Spanned<String>>,
    /// Refused with a message pointing at the environment variable: the password is
    /// never read from the file.
    pub(super) password: Option<Spanned<toml::Value>>,
    /// Optional: `[email] from` (or its default) when absent.
    pub(super) from: Option<Spanned<String>>,
    pub(super) ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    #[serde(default)]
    pub(super) description: String,
}
