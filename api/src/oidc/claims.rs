//! Who a provider's token says someone is: their subject and name, their Airflow role from
//! the values of the roles claim (`auth.oidc.role_map`), and their tenant.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::OidcSettings;
use crate::auth::User;
use crate::permissions::Role;

/// The tenant of someone whose token and mapping name none.
pub const DEFAULT_TENANT: &str = "default";

/// What one value of the roles claim grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Airflow's roles among those it names.
    pub roles: Vec<Role>,
    /// The other roles it names: custom roles, which reach only the DAGs whose
    /// `access_control` names them.
    pub dag_roles: Vec<String>,
    /// The tenant, when the mapping names one (a tenant claim wins over it).
    pub tenant: Option<String>,
}

/// `auth.oidc.role_map`: claim value → a role, a list of roles, or `{role(s), tenant}`. Names
/// of Airflow's five roles are matched whatever their case; any other name is a custom role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMap(BTreeMap<String, Grant>);

/// One entry as the configuration spells it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Spelled {
    Role(String),
    Roles(Vec<String>),
    Grant {
        #[serde(default)]
        role: Option<String>,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        tenant: Option<String>,
    },
}

impl RoleMap {
    /// The map from its configuration (a JSON or YAML mapping), refusing malformed role names.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let spelled: BTreeMap<String, Spelled> = serde_json::from_value(value).map_err(|e| {
            format!(
                "expected a mapping of claim values to a role, a list of roles, or \
                 {{role, tenant}}: {e}"
            )
        })?;
        let mut map = BTreeMap::new();
        for (value, entry) in spelled {
            let (names, tenant) = match entry {
                Spelled::Role(role) => (vec![role], None),
                Spelled::Roles(roles) => (roles, None),
                Spelled::Grant {
                    role,
                    roles,
                    tenant,
                } => (role.into_iter().chain(roles).collect(), tenant),
            };
            if names.is_empty() {
                return Err(format!("{value:?} maps to no role"));
            }
            if tenant.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(format!("{value:?} maps to an empty tenant"));
            }
            let mut grant = Grant {
                roles: Vec::new(),
                dag_roles: Vec::new(),
                tenant,
            };
            for name in names {
                match name.parse::<Role>() {
                    Ok(role) => grant.roles.push(role),
                    Err(_) => grant.dag_roles.push(custom_role(&value, name)?),
                }
            }
            map.insert(value, grant);
        }
        Ok(Self(map))
    }

    /// Whether no claim value maps to a role (then everyone signs in as `Public`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The custom roles the map names (for the start-up log).
    pub fn custom_roles(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .0
            .values()
            .flat_map(|g| g.dag_roles.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// What `values` grant together: the strongest of Airflow's roles (`Public` when none),
    /// every custom role, and the tenant of the strongest grant that names one.
    fn combined<'a>(
        &self,
        values: impl IntoIterator<Item = &'a str>,
    ) -> (Role, Vec<String>, Option<String>) {
        let grants: Vec<&Grant> = values.into_iter().filter_map(|v| self.0.get(v)).collect();
        let role = grants
            .iter()
            .flat_map(|g| g.roles.iter().copied())
            .min_by_key(|r| rank(*r))
            .unwrap_or(Role::Public);
        let mut dag_roles: Vec<String> = grants.iter().flat_map(|g| g.dag_roles.clone()).collect();
        dag_roles.sort_unstable();
        dag_roles.dedup();
        let tenant = grants
            .iter()
            .filter(|g| g.tenant.is_some())
            .min_by_key(|g| g.roles.iter().map(|r| rank(*r)).min().unwrap_or(usize::MAX))
            .and_then(|g| g.tenant.clone());
        (role, dag_roles, tenant)
    }

    /// The user a verified token's `claims` stand for.
    pub fn user(&self, settings: &OidcSettings, claims: &Map<String, Value>) -> User {
        let values = strings(claim(claims, &settings.roles_claim));
        let (role, dag_roles, mapped_tenant) = self.combined(values.iter().map(String::as_str));
        let tenant = claim(claims, &settings.tenant_claim)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned)
            .or(mapped_tenant)
            .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let subject = text("sub").unwrap_or_default().to_owned();
        let display_name = ["name", "preferred_username", "client_id"]
            .into_iter()
            .find_map(text)
            .unwrap_or(&subject)
            .to_owned();
        User {
            display_name,
            tenant: crate::dag_access::tenant_of(tenant),
            token_id: text("jti").map(str::to_owned),
            dag_roles,
            ..User::named(subject, role.name())
        }
    }
}

/// A custom role's name, checked: letters, digits, `_`, `-`, `.` and spaces, as FAB's role
/// names are in practice.
fn custom_role(value: &str, name: String) -> Result<String, String> {
    let ok = !name.trim().is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "{value:?} maps to {name:?}, which is neither one of Airflow's roles (Admin, Op, \
             User, Viewer, Public) nor a usable custom role name (letters, digits, _ - . and \
             spaces)"
        ))
    }
}

/// A role's place, the most powerful first.
fn rank(role: Role) -> usize {
    Role::ALL
        .iter()
        .position(|r| *r == role)
        .unwrap_or(Role::ALL.len())
}

/// The claim at `path`: a name, or dotted names into nested objects (Keycloak's
/// `realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// A claim's values: the strings of an array, or one string.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(map: Value) -> OidcSettings {
        OidcSettings {
            issuer: "https://id.example.com".into(),
            client_id: "leoflow".into(),
            client_secret: "secret".into(),
            scopes: vec![],
            roles_claim: "groups".into(),
            tenant_claim: "tenant".into(),
            role_map: RoleMap::from_value(map).unwrap(),
            audience: "leoflow".into(),
            base_url: "https://leoflow.example.com".into(),
            cli_client_id: None,
        }
    }

    fn user(settings: &OidcSettings, claims: Value) -> User {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        settings.role_map.user(settings, &claims)
    }

    #[test]
    fn the_strongest_mapped_role_wins_and_unmapped_people_are_public() {
        let s = settings(json!({"viewers": "Viewer", "ops": "op", "staff": "User"}));
        let both = user(
            &s,
            json!({"sub": "u1", "groups": ["viewers", "ops", "other"]}),
        );
        assert_eq!(both.role, "Op");
        assert_eq!(both.display_name, "u1");
        let nobody = user(&s, json!({"sub": "u2", "groups": ["other"], "name": "Pat"}));
        assert_eq!(
            (nobody.role.as_str(), nobody.display_name.as_str()),
            ("Public", "Pat")
        );
        let absent = user(&s, json!({"sub": "u3"}));
        assert_eq!(absent.role, "Public");
        assert_eq!(absent.tenant.as_deref(), Some(DEFAULT_TENANT));
    }

    #[test]
    fn the_tenant_claim_wins_over_the_mapping_which_wins_over_the_default() {
        let mut s = settings(json!({"a-admins": {"role": "Admin", "tenant": "a"}}));
        let mapped = user(&s, json!({"sub": "x", "groups": "a-admins"}));
        assert_eq!(
            (mapped.role.as_str(), mapped.tenant.as_deref()),
            ("Admin", Some("a"))
        );
        let claimed = user(
            &s,
            json!({"sub": "x", "groups": ["a-admins"], "tenant": "b"}),
        );
        assert_eq!(claimed.tenant.as_deref(), Some("b"));
        s.roles_claim = "realm_access.roles".into();
        let nested = user(
            &s,
            json!({"sub": "x", "realm_access": {"roles": ["a-admins"]}}),
        );
        assert_eq!(nested.role, "Admin");
    }

    #[test]
    fn other_names_are_custom_roles_beside_the_strongest_of_airflows() {
        let s = settings(json!({
            "viewers": "Viewer", "team-a": ["Viewer", "team_a"], "team-b": {"roles": ["team_b"]}
        }));
        let both = user(&s, json!({"sub": "u", "groups": ["team-a", "team-b"]}));
        assert_eq!(both.role, "Viewer");
        assert_eq!(both.dag_roles, ["team_a", "team_b"]);
        let only_custom = user(&s, json!({"sub": "u", "groups": ["team-b"]}));
        assert_eq!(only_custom.role, "Public");
        assert_eq!(only_custom.dag_roles, ["team_b"]);
        assert_eq!(s.role_map.custom_roles(), ["team_a", "team_b"]);
    }

    #[test]
    fn unknown_roles_and_shapes_are_refused_naming_the_value() {
        let error = RoleMap::from_value(json!({"devs": "Super;user"})).unwrap_err();
        assert!(
            error.contains("\"devs\"") && error.contains("Super;user"),
            "{error}"
        );
        let error = RoleMap::from_value(json!({"devs": []})).unwrap_err();
        assert!(error.contains("maps to no role"), "{error}");
        let error = RoleMap::from_value(json!(["Admin"])).unwrap_err();
        assert!(error.contains("expected a mapping"), "{error}");
        let error = RoleMap::from_value(json!({"x": {"role": "Op", "tenant": " "}})).unwrap_err();
        assert!(error.contains("empty tenant"), "{error}");
    }
}
