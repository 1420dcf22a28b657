//! Finding a PostgreSQL server build on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBuild {
    /// The `bin` directory.
    pub bin_dir: PathBuf,
}

/// Where [`PgBuild::locate_with`] looks, in order. [`Lookup::from_env`] is the real one;
/// tests build their own instead of changing the process environment.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// `LEOFLOW_PG_BIN`: when set it must hold a server build, nothing else is tried.
    pub explicit_bin: Option<PathBuf>,
    /// The `pg_config` to ask for `--bindir` (`None`: skip this step).
    pub pg_config: Option<PathBuf>,
    /// The directory whose `*/bin` subdirectories are Debian's versioned builds.
    pub versioned_root: PathBuf,
}

impl Lookup {
    /// `LEOFLOW_PG_BIN`, `pg_config` on the `PATH`, `/usr/lib/postgresql`.
    pub fn from_env() -> Self {
        Self {
            explicit_bin: std::env::var_os("LEOFLOW_PG_BIN").map(PathBuf::from),
            pg_config: Some(PathBuf::from("pg_config")),
            versioned_root: PathBuf::from("/usr/lib/postgresql"),
        }
    }
}

/// No usable PostgreSQL server build was found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// `LEOFLOW_PG_BIN` names a directory without a server build.
    #[error(
        "LEOFLOW_PG_BIN={} does not hold a PostgreSQL server build (initdb, pg_ctl and postgres \
         are needed there). Point it at a PostgreSQL bin directory, or unset it to search the \
         system."
    , .0.display())]
    BadExplicit(PathBuf),
    /// Nothing found anywhere.
    #[error(
        "no PostgreSQL server build found (looked in: {}). Install one with \
         `apt-get install postgresql` (Debian/Ubuntu) or `dnf install postgresql-server`, or set \
         LEOFLOW_PG_BIN to a directory holding initdb, pg_ctl and postgres."
    , .searched.join(", "))]
    NotFound {
        /// What was searched.
        searched: Vec<String>,
    },
}

impl PgBuild {
    /// Finds a server build with [`Lookup::from_env`].
    pub fn locate() -> Result<Self, LocateError> {
        Self::locate_with(&Lookup::from_env())
    }

    /// Finds a server build the way `lookup` says.
    pub fn locate_with(lookup: &Lookup) -> Result<Self, LocateError> {
        if let Some(dir) = &lookup.explicit_bin {
            return if is_server_build(dir) {
                Ok(Self {
                    bin_dir: dir.clone(),
                })
            } else {
                Err(LocateError::BadExplicit(dir.clone()))
            };
        }
        let mut searched = Vec::new();
        if let Some(pg_config) = &lookup.pg_config {
            searched.push(format!("`{} --bindir`", pg_config.display()));
            let answer = Command::new(pg_config).arg("--bindir").output();
            if let Ok(out) = answer
                && out.status.success()
            {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if is_server_build(&dir) {
                    return Ok(Self { bin_dir: dir });
                }
            }
        }
        searched.push(format!("{}/*/bin", lookup.versioned_root.display()));
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(&lookup.versioned_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                is_server_build(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, bin_dir)) => Ok(Self { bin_dir }),
            None => Err(LocateError::NotFound { searched }),
        }
    }

    /// Path of one of the build's programs.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

fn is_server_build(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|tool| dir.join(tool).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(explicit: Option<&str>, root: &str) -> Lookup {
        Lookup {
            explicit_bin: explicit.map(PathBuf::from),
            pg_config: None,
            versioned_root: PathBuf::from(root),
        }
    }

    #[test]
    fn an_explicit_dir_without_binaries_is_refused_by_name() {
        let err = PgBuild::locate_with(&lookup(Some("/nonexistent/bin"), "/usr/lib/postgresql"))
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("LEOFLOW_PG_BIN=/nonexistent/bin"),
            "{message}"
        );
        assert!(message.contains("initdb, pg_ctl and postgres"), "{message}");
    }

    #[test]
    fn nothing_found_says_where_it_looked_and_how_to_fix_it() {
        let err = PgBuild::locate_with(&lookup(None, "/nonexistent")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/*/bin"), "{message}");
        assert!(message.contains("apt-get install postgresql"), "{message}");
    }

    #[test]
    fn the_newest_versioned_build_wins() {
        let root = std::env::temp_dir().join(format!("leoflow-locate-{}", std::process::id()));
        for version in ["9", "15", "16"] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            // Version 16 is incomplete: it must be passed over.
            let tools: &[&str] = if version == "16" {
                &["initdb"]
            } else {
                &["initdb", "pg_ctl", "postgres"]
            };
            for tool in tools {
                std::fs::write(bin.join(tool), "").unwrap();
            }
        }
        let found = PgBuild::locate_with(&lookup(None, root.to_str().unwrap())).unwrap();
        assert_eq!(found.bin_dir, root.join("15").join("bin"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
