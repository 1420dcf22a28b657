//! Tenants: who owns a DAG (and, later, its runs, Variables, Connections and Pools).
//!
//! A tenant is a name. Events recorded before tenants existed belong to [`DEFAULT_TENANT`], and
//! so does everything Lite registers.

/// The tenant of everything recorded without one, and of Lite.
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant name: short enough for a label, a claim or a path segment.
const MAX_LEN: usize = 63;

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
