//! Tenants: who owns a DAG (and, later, its runs, Variables, Connections and Pools).
//!
//! A tenant is a name. Events recorded before tenants existed belong to [`DEFAULT_TENANT`], and
//! so does everything Lite registers.
//!
//! DAG ids repeat across tenants: a DAG is recorded under its **key**, [`dag_key`] of its tenant
//! and the id its file gives it (its **name**). A DAG of the default tenant is keyed by its name,
//! so Lite's log and everything recorded before tenants is unchanged; a DAG of tenant `acme` is
//! keyed `acme:etl`. Airflow's DAG ids are letters, digits, `_`, `.` and `-`, never `:`, so a
//! key is never a name of another DAG and [`dag_name`] finds the name again. The log, the read
//! models, the scheduler and the executors carry keys; what a tenant's callers and tasks see is
//! the name.

/// The tenant of everything recorded without one, and of Lite.
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant name: short enough for a label, a claim or a path segment.
const MAX_LEN: usize = 63;

/// The key the DAG `name` of `tenant` is recorded under: `name` in the default tenant,
/// `tenant:name` in any other.
pub fn dag_key(tenant: &str, name: &str) -> String {
    match dag_key_prefix(tenant) {
        Some(prefix) => format!("{prefix}{name}"),
        None => name.to_owned(),
    }
}

/// What the keys of `tenant`'s DAGs start with (`acme:`); `None` for the default tenant, whose
/// keys are their names.
pub fn dag_key_prefix(tenant: &str) -> Option<String> {
    (tenant != DEFAULT_TENANT).then(|| format!("{tenant}:"))
}

/// The id the DAG keyed `key` has in its tenant (its file's `dag_id`).
pub fn dag_name(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, name)| name)
}

/// Checks that `name` can be a tenant: `[a-z0-9][a-z0-9_-]{0,62}`. The message names the value
/// and what a tenant name may be.
///
/// `*` is refused with its own message: it is how tokens and sign-ins say "every tenant", never
/// a tenant something can belong to.
pub fn check_tenant(name: &str) -> Result<(), String> {
    if name == "*" {
        return Err(
            "\"*\" is not a tenant: it means every tenant (for tokens and sign-ins), and nothing \
             can belong to it; name one tenant"
                .to_owned(),
        );
    }
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if starts_well && rest_ok && name.len() <= MAX_LEN {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a tenant name: use 1 to {MAX_LEN} lowercase letters, digits, `_` or \
             `-`, starting with a letter or a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dag_s_key_is_its_name_in_the_default_tenant_and_prefixed_in_others() {
        assert_eq!(dag_key(DEFAULT_TENANT, "etl"), "etl");
        assert_eq!(dag_key("acme", "etl"), "acme:etl");
        assert_eq!(dag_name("acme:etl"), "etl");
        assert_eq!(dag_name("etl"), "etl");
        assert_eq!(dag_name(&dag_key("team-2", "a.b-c_d")), "a.b-c_d");
    }

    #[test]
    fn tenant_names_are_short_lowercase_words() {
        for good in [
            DEFAULT_TENANT,
            "acme",
            "a",
            "0",
            "team-a_1",
            &"x".repeat(63),
        ] {
            assert_eq!(check_tenant(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "Bad Name",
            "-acme",
            "_acme",
            "acme.io",
            "é",
            &"x".repeat(64),
        ] {
            let message = check_tenant(bad).unwrap_err();
            assert!(
                message.contains(&format!("{bad:?} is not a tenant name")),
                "{message}"
            );
        }
    }

    #[test]
    fn every_tenant_is_not_a_tenant() {
        let message = check_tenant("*").unwrap_err();
        assert!(message.contains("every tenant"), "{message}");
    }
}
