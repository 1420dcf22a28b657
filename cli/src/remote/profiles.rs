//! `$LEOFLOW_HOME/profiles.toml`: the servers `leoflow login` signed in to, each with its
//! token. The file holds bearer tokens, so it is written with mode 0600 (and refused when
//! others may read it), by writing a new file beside it and renaming it over the old one.
//!
//! ```toml
//! current = "prod"
//!
//! [profiles.prod]
//! server = "https://leoflow.example.com"
//! token = "…"
//! username = "admin"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The file's name under `$LEOFLOW_HOME`.
pub const FILE: &str = "profiles.toml";

/// One server signed in to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The server's base URL (`https://leoflow.example.com`).
    pub server: String,
    /// The bearer token requests carry.
    pub token: String,
    /// Who signed in (absent for a machine token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Every profile, and the one commands use when none is named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profiles {
    /// The profile commands use when neither `--profile` nor `LEOFLOW_PROFILE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// By name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl Profiles {
    /// The file under `home`.
    pub fn path(home: &Path) -> PathBuf {
        home.join(FILE)
    }

    /// Reads the file (none yet: no profiles). Refuses one that others may read, since it
    /// holds tokens, and one that is not a profiles file, naming what is wrong.
    pub fn load(home: &Path) -> Result<Self> {
        let path = Self::path(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} holds tokens but others may read it (mode {mode:o}): run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        basic_toml::from_str(&text)
            .with_context(|| format!("{} is not a profiles file", path.display()))
    }

    /// Writes the file with mode 0600, replacing the old one at once.
    pub fn save(&self, home: &Path) -> Result<()> {
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let path = Self::path(home);
        let text = basic_toml::to_string(self).context("profiles serialize")?;
        let fresh = path.with_extension("toml.new");
        let _ = std::fs::remove_file(&fresh);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&fresh)
            .with_context(|| format!("cannot write {}", fresh.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&fresh, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The profile named `name`, or a message saying which exist.
    pub fn get(&self, name: &str) -> Result<&Profile> {
        self.profiles.get(name).with_context(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("no profile {name:?}: log in first with `leoflow login --server URL`")
            } else {
                format!("no profile {name:?} (there are: {}); log in with `leoflow login --server URL --profile {name}`", known.join(", "))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_with_mode_0600() {
        let home = std::env::temp_dir().join(format!("lf-profiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        assert_eq!(Profiles::load(&home).unwrap(), Profiles::default());
        let mut profiles = Profiles::default();
        profiles.profiles.insert(
            "prod".into(),
            Profile {
                server: "https://leoflow.example.com".into(),
                token: "secret".into(),
                username: Some("admin".into()),
            },
        );
        profiles.current = Some("prod".into());
        profiles.save(&home).unwrap();
        let mode = std::fs::metadata(Profiles::path(&home))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Profiles::load(&home).unwrap(), profiles);

        // Readable by others: refused, saying how to fix it.
        std::fs::set_permissions(
            Profiles::path(&home),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let refused = Profiles::load(&home).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn a_missing_profile_names_those_there_are() {
        let mut profiles = Profiles::default();
        let none = profiles.get("prod").unwrap_err().to_string();
        assert!(none.contains("leoflow login --server"), "{none}");
        profiles.profiles.insert(
            "dev".into(),
            Profile {
                server: "http://localhost:8088".into(),
                token: "t".into(),
                username: None,
            },
        );
        let other = profiles.get("prod").unwrap_err().to_string();
        assert!(other.contains("there are: dev"), "{other}");
    }
}
