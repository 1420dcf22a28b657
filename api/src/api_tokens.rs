//! Leoflow's API tokens, for machines (CI, GitOps) calling `/api/v2` with
//! `Authorization: Bearer lf_<id>_<secret>`, as the official `apache-airflow-client` does.
//!
//! A token is shown once, when it is issued (`leoflow tokens create`); the log and the read
//! models keep only the SHA-256 digest of its secret (the secret is 244 random bits: a fast
//! hash is enough, and a slow one would cost every request). A presented token is looked up by
//! its id in `api_token`, which every replica reads: a revocation holds everywhere at once.

use base64::Engine;
use chrono::{DateTime, Utc};
use leoflow_events::digest::equal_in_constant_time;
use leoflow_projector::read::api_tokens::{self, ApiTokenRecord};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::User;
use crate::permissions::Role;

/// How every API token starts, so it is told from a session JWT at a glance.
pub const PREFIX: &str = "lf_";

/// A token just issued: the whole token (shown once) and what the log keeps of it.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its id (public: listed, revoked by).
    pub id: String,
    /// `lf_<id>_<secret>`: given to the machine, never stored.
    pub token: String,
    /// SHA-256 of the secret, hex: what the log keeps.
    pub digest: String,
}

/// A new random token.
pub fn generate() -> NewToken {
    let id = Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut random = [0u8; 32];
    random[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    random[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    NewToken {
        token: format!("{PREFIX}{id}_{secret}"),
        digest: digest(&secret),
        id,
    }
}

/// SHA-256 of a secret, hex.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A presented token's id and secret, if it has the shape of an API token.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id) && !secret.is_empty()).then_some((id, secret))
}

/// Whether a presented token is an API token (not a session's JWT).
pub fn is_api_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The user a presented API token acts as, if it is one that holds now: issued, its secret
/// matching, not revoked, not expired.
pub async fn authenticate(pool: &PgPool, token: &str) -> sqlx::Result<Option<User>> {
    let Some((id, secret)) = parse(token) else {
        return Ok(None);
    };
    let Some(record) = api_tokens::find(pool, id).await? else {
        return Ok(None);
    };
    Ok(holds(&record, secret, Utc::now()).then(|| User {
        tenant: crate::dag_access::tenant_of(record.tenant),
        token_id: Some(record.token_id.clone()),
        // As a sign-in mapped to custom roles carries them: per-DAG `access_control` grants
        // reach the token through these (crate::permissions::authorize).
        dag_roles: record.dag_roles,
        ..User::named(format!("token:{}", record.token_id), record.role)
    }))
}

/// Checks a custom role's name for a token (`--dag-role`): not empty, no whitespace or
/// control characters (the name is matched exactly against the roles DAGs' `access_control`
/// names), and not one of Airflow's five roles, which a token takes as its `--role`.
pub fn check_dag_role(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a custom role's name cannot be empty".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{name:?} holds whitespace or a control character; a custom role is named as \
             the DAGs' access_control names it, e.g. team_a"
        ));
    }
    if let Ok(role) = name.parse::<Role>() {
        return Err(format!(
            "{name:?} is Airflow's role {}, not a custom role: give it with --role",
            role.name()
        ));
    }
    Ok(())
}

/// Whether `record` accepts `secret` at `now`.
fn holds(record: &ApiTokenRecord, secret: &str, now: DateTime<Utc>) -> bool {
    // Compared in constant time: how long a refusal takes says nothing of the digest.
    let same = equal_in_constant_time(record.digest.as_bytes(), digest(secret).as_bytes());
    // A role this build does not know grants nothing rather than failing open.
    same && record.revoked_at.is_none()
        && record.expires_at.is_none_or(|at| now < at)
        && record.role.parse::<Role>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(new: &NewToken) -> ApiTokenRecord {
        ApiTokenRecord {
            token_id: new.id.clone(),
            role: "Admin".into(),
            tenant: "default".into(),
            dag_roles: Vec::new(),
            digest: new.digest.clone(),
            description: None,
            created_by: None,
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_token_reads_back_and_only_its_own_secret_matches() {
        let new = generate();
        let (id, secret) = parse(&new.token).expect("an API token");
        assert_eq!(id, new.id);
        assert!(!new.digest.contains(secret));
        let now = Utc::now();
        assert!(holds(&record(&new), secret, now));
        assert!(!holds(&record(&new), "another-secret", now));
        assert!(!holds(&record(&generate()), secret, now));
    }

    #[test]
    fn revoked_expired_and_unknown_role_tokens_do_not_hold() {
        let new = generate();
        let (_, secret) = parse(&new.token).unwrap();
        let now = Utc::now();
        let revoked = ApiTokenRecord {
            revoked_at: Some(now),
            ..record(&new)
        };
        let expired = ApiTokenRecord {
            expires_at: Some(now - chrono::Duration::seconds(1)),
            ..record(&new)
        };
        let unknown = ApiTokenRecord {
            role: "Superuser".into(),
            ..record(&new)
        };
        for record in [revoked, expired, unknown] {
            assert!(!holds(&record, secret, now), "{record:?}");
        }
    }

    #[test]
    fn a_token_issued_before_custom_roles_reads_as_having_none() {
        use leoflow_events::Event;
        let recorded = serde_json::json!({
            "token_id": "0123456789abcdef", "role": "Viewer", "tenant": "default",
            "digest": "ab", "expires_at": null, "description": null,
        });
        let event = Event::decode("ApiTokenIssued", 1, recorded.clone()).unwrap();
        let Event::ApiTokenIssued(issued) = &event else {
            panic!("{event:?}")
        };
        assert!(issued.dag_roles.is_empty());
        // A token without custom roles records what it always did.
        assert_eq!(event.payload(), recorded);
        let with_roles = Event::ApiTokenIssued(leoflow_events::catalog::ApiTokenIssued {
            dag_roles: vec!["team_a".into()],
            ..issued.clone()
        });
        assert_eq!(
            with_roles.payload()["dag_roles"],
            serde_json::json!(["team_a"])
        );
    }

    #[test]
    fn custom_role_names_are_checked() {
        for good in ["team_a", "team-a", "Team.A", "ops:eu", "données"] {
            assert_eq!(check_dag_role(good), Ok(()), "{good}");
        }
        for (bad, said) in [
            ("", "cannot be empty"),
            ("team a", "holds whitespace"),
            (" team_a", "holds whitespace"),
            ("team_a\t", "holds whitespace"),
            ("team\u{7}", "holds whitespace"),
            ("Viewer", "is Airflow's role Viewer"),
            ("admin", "is Airflow's role Admin"),
        ] {
            let error = check_dag_role(bad).unwrap_err();
            assert!(error.contains(said), "{bad:?}: {error}");
        }
    }

    #[test]
    fn malformed_tokens_are_not_api_tokens() {
        for bad in [
            "",
            "lf_",
            "lf_abc_def",
            "lf_0123456789abcdef_",
            "eyJhbGciOi.x.y",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
