//! `agent_tls.*` and `allow_plaintext_agents`: TLS on the agents' gRPC channel. Each key is
//! also a flag (`--agent-tls-cert-file`) and a variable (`LEOFLOW_AGENT_TLS_CERT_FILE`). The
//! files are cert-manager's Secret mounted as files: `tls.crt`, `tls.key`, `ca.crt`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::{ConfigError, ServerConfig, key_error};
use crate::agent_tls::AgentTls;

/// The `agent_tls.*` keys and `allow_plaintext_agents` as flags and variables.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentTlsFlags {
    /// The certificate chain (PEM) the agents' gRPC port serves (cert-manager's tls.crt).
    #[arg(
        long = "agent-tls-cert-file",
        env = "LEOFLOW_AGENT_TLS_CERT_FILE",
        value_name = "FILE"
    )]
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM; cert-manager's tls.key).
    #[arg(
        long = "agent-tls-key-file",
        env = "LEOFLOW_AGENT_TLS_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// The CA (PEM) agents verify the server with, handed to them (cert-manager's ca.crt;
    /// default: the agents' system roots).
    #[arg(
        long = "agent-tls-ca-file",
        env = "LEOFLOW_AGENT_TLS_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Serve agents plain gRPC on an address beyond loopback (a network you trust only).
    #[arg(long, env = "LEOFLOW_ALLOW_PLAINTEXT_AGENTS")]
    pub allow_plaintext_agents: bool,
}

/// The file's `agent_tls:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentTlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// `agent_tls.*` from the flags over the file: `None` without a certificate; a certificate
/// and its key come together.
pub(super) fn agent_tls(
    flags: &AgentTlsFlags,
    file: Option<AgentTlsFile>,
) -> Result<Option<AgentTls>, ConfigError> {
    let file = file.unwrap_or_default();
    let cert_file = flags.cert_file.clone().or(file.cert_file);
    let key_file = flags.key_file.clone().or(file.key_file);
    let ca_file = flags.ca_file.clone().or(file.ca_file);
    match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => Ok(Some(AgentTls {
            cert_file,
            key_file,
            ca_file,
        })),
        (Some(_), None) => Err(missing(
            "agent_tls.key_file",
            "agent_tls.cert_file needs its certificate's private key (cert-manager's tls.key)",
        )),
        (None, Some(_)) => Err(missing(
            "agent_tls.cert_file",
            "agent_tls.key_file is the key of a certificate (cert-manager's tls.crt)",
        )),
        (None, None) if ca_file.is_some() => Err(missing(
            "agent_tls.cert_file",
            "agent_tls.ca_file is what agents verify the server's certificate with, which \
             needs the certificate and its key",
        )),
        (None, None) => Ok(None),
    }
}

fn missing(key: &'static str, why: &str) -> ConfigError {
    let env = key.replace('.', "_").to_uppercase();
    let flag = key.replace(['.', '_'], "-");
    key_error(
        key,
        format!("missing: {why}; set {key}, --{flag} or LEOFLOW_{env}"),
    )
}

/// A replica that serves agents serves them TLS with files agents will accept, or plain gRPC
/// only on loopback or when `allow_plaintext_agents` says the network is trusted: attempt
/// tokens, Variables and Connections cross this channel.
pub(super) fn check_agent_channel(config: &ServerConfig) -> Result<(), ConfigError> {
    if !config.role.runs_scheduler() {
        return Ok(());
    }
    let host: IpAddr = config
        .host
        .parse()
        .map_err(|_| key_error("host", "not an IP address"))?;
    match &config.agent_tls {
        Some(tls) => tls
            .check(&agents_dial(config, host))
            .map_err(|e| key_error(e.file.key(), e.message)),
        None if host.is_loopback() || config.allow_plaintext_agents => Ok(()),
        None => Err(key_error(
            "agent_tls.cert_file",
            format!(
                "missing: the agents' gRPC port listens on {host}, beyond this machine, and \
                 without TLS attempt tokens, Variables and Connections cross the network in \
                 clear. Give it a certificate (agent_tls.cert_file and agent_tls.key_file, and \
                 agent_tls.ca_file for the agents: cert-manager's tls.crt, tls.key and ca.crt) \
                 or, on a network you trust, set allow_plaintext_agents: true \
                 (--allow-plaintext-agents, LEOFLOW_ALLOW_PLAINTEXT_AGENTS)"
            ),
        )),
    }
}

/// The host agents dial, which the certificate must name: `advertise_grpc`'s, else this
/// replica's address (loopback when it listens on every interface: its subprocess agents
/// dial it there).
fn agents_dial(config: &ServerConfig, host: IpAddr) -> String {
    match &config.advertise_grpc {
        Some(address) => {
            let host = address
                .rsplit_once(':')
                .map_or(address.as_str(), |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        }
        None if host.is_unspecified() => "127.0.0.1".to_owned(),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ServerExecutor, ServerFlags};
    use super::*;
    use crate::agent_tls::test_pki::Pki;

    const DB: &str = "postgres://leoflow@db.internal:5432/leoflow";
    const REDIS: &str = "redis://redis.internal:6379";

    /// A scheduler replica on `host` running tries as subprocesses, with `tls`.
    fn flags(host: &str, tls: AgentTlsFlags) -> ServerFlags {
        ServerFlags {
            host: Some(host.into()),
            redis_url: Some(REDIS.into()),
            executor: Some(ServerExecutor::Subprocess),
            allow_unsandboxed: true,
            agent_tls: tls,
            ..ServerFlags::default()
        }
    }

    fn tls_of(files: &AgentTls) -> AgentTlsFlags {
        AgentTlsFlags {
            cert_file: Some(files.cert_file.clone()),
            key_file: Some(files.key_file.clone()),
            ca_file: files.ca_file.clone(),
            allow_plaintext_agents: false,
        }
    }

    fn refusal(flags: &ServerFlags) -> String {
        ServerConfig::load(flags, Some(DB)).unwrap_err().to_string()
    }

    #[test]
    fn plain_grpc_beyond_loopback_is_refused_unless_allowed() {
        let error = refusal(&flags("0.0.0.0", AgentTlsFlags::default()));
        assert!(
            error.starts_with(
                "agent_tls.cert_file: missing: the agents' gRPC port listens on 0.0.0.0"
            ) && error.contains("allow_plaintext_agents: true"),
            "{error}"
        );
        for host in ["127.0.0.1", "::1"] {
            let config = ServerConfig::load(&flags(host, AgentTlsFlags::default()), Some(DB));
            assert_eq!(config.unwrap().agent_tls, None, "{host}");
        }
        let allowed = AgentTlsFlags {
            allow_plaintext_agents: true,
            ..AgentTlsFlags::default()
        };
        let config = ServerConfig::load(&flags("0.0.0.0", allowed), Some(DB)).unwrap();
        assert!(config.allow_plaintext_agents);
        // An API replica serves no agents.
        let api = ServerFlags {
            role: Some(super::super::Role::Api),
            ..flags("0.0.0.0", AgentTlsFlags::default())
        };
        ServerConfig::load(&api, Some(DB)).unwrap();
    }

    #[test]
    fn a_certificate_agents_accept_serves_them_beyond_loopback() {
        let pki = Pki::new("config");
        let files = pki.issue("tls", &["127.0.0.1", "leoflow-grpc.ns.svc"], false);
        let config = ServerConfig::load(&flags("0.0.0.0", tls_of(&files)), Some(DB)).unwrap();
        assert_eq!(config.agent_tls, Some(files.clone()));
        let advertised = ServerFlags {
            advertise_grpc: Some("leoflow-grpc.ns.svc:9091".into()),
            ..flags("0.0.0.0", tls_of(&files))
        };
        ServerConfig::load(&advertised, Some(DB)).unwrap();
        // Without a CA file agents use their system's roots: nothing to check it against.
        let no_ca = AgentTls {
            ca_file: None,
            ..files
        };
        ServerConfig::load(&flags("0.0.0.0", tls_of(&no_ca)), Some(DB)).unwrap();
    }

    #[test]
    fn the_files_come_together_and_unusable_ones_are_refused_naming_their_key() {
        let (pki, other) = (Pki::new("refusals"), Pki::new("other"));
        let good = pki.issue("tls", &["127.0.0.1"], false);
        let foreign = other.issue("foreign", &["127.0.0.1"], false);
        let expired = pki.issue("expired", &["127.0.0.1"], true);
        let not_pem = pki.dir.join("not-pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let with = |change: &dyn Fn(&mut AgentTlsFlags)| {
            let mut tls = tls_of(&good);
            change(&mut tls);
            refusal(&flags("0.0.0.0", tls))
        };
        let cases: Vec<(String, &str)> = vec![
            (with(&|t| t.key_file = None), "agent_tls.key_file: missing"),
            (
                with(&|t| t.cert_file = None),
                "agent_tls.cert_file: missing",
            ),
            (
                with(&|t| (t.cert_file, t.key_file) = (None, None)),
                "agent_tls.cert_file: missing: agent_tls.ca_file is what agents verify",
            ),
            (
                with(&|t| t.cert_file = Some(pki.dir.join("absent.crt"))),
                "agent_tls.cert_file: cannot read",
            ),
            (
                with(&|t| t.cert_file = Some(not_pem.clone())),
                "agent_tls.cert_file: {dir}/not-pem holds no PEM certificate",
            ),
            (
                with(&|t| t.key_file = Some(not_pem.clone())),
                "agent_tls.key_file: {dir}/not-pem holds no PEM private key",
            ),
            (
                with(&|t| t.key_file = Some(foreign.key_file.clone())),
                "agent_tls.key_file: {other}/foreign.key is not the key of the certificate",
            ),
            (
                with(&|t| t.ca_file = Some(not_pem.clone())),
                "agent_tls.ca_file: {dir}/not-pem holds no PEM certificate",
            ),
            (
                with(&|t| t.ca_file = Some(other.ca_file())),
                "agent_tls.ca_file: agents could not verify the server with",
            ),
            (
                with(&|t| {
                    (t.cert_file, t.key_file) = (
                        Some(expired.cert_file.clone()),
                        Some(expired.key_file.clone()),
                    )
                }),
                "agent_tls.cert_file: {dir}/expired.crt: invalid peer certificate: certificate \
                 expired",
            ),
        ];
        for (error, expected) in cases {
            let expected = expected
                .replace("{dir}", &pki.dir.display().to_string())
                .replace("{other}", &other.dir.display().to_string());
            assert!(error.starts_with(&expected), "{expected:?} ≠ {error}");
        }
        let wrong_name = ServerFlags {
            advertise_grpc: Some("leoflow-grpc.ns.svc:9091".into()),
            ..flags("0.0.0.0", tls_of(&good))
        };
        let error = refusal(&wrong_name);
        assert!(
            error.starts_with("agent_tls.cert_file: ")
                && error.contains("does not serve leoflow-grpc.ns.svc"),
            "{error}"
        );
    }
}
