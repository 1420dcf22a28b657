//! The server's external datastores: Postgres (sized pool, statement timeout, the schema this
//! binary was built for) and Redis (a single node, TLS, or Sentinel). Pro never falls back to
//! a local one: each is checked at start, and a failure names what is wrong and how to fix it.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use leoflow_postgres::datastore::{connect_sized, mask_url};
use leoflow_postgres::migrate::{MIGRATOR, applied_versions, latest_version};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use super::config::ServerConfig;

/// How long a Redis connection attempt or reply may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects the pool the configuration sizes, every session under its statement timeout, and
/// checks the database answers.
pub async fn open_postgres(config: &ServerConfig) -> Result<PgPool> {
    let url = config.database_url.expose();
    let timeout_ms = config.database_statement_timeout.as_millis().to_string();
    // Named in pg_stat_activity, so an operator (and the failover tests) can tell replicas'
    // sessions apart.
    let application_name = format!(
        "leoflow-server {} pid {}",
        config.role.name(),
        std::process::id()
    );
    let options = PgConnectOptions::from_str(url)
        .context("database_url")?
        .application_name(&application_name)
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            // The server drops a replica it cannot reach within ~4 s (a partition, a host that
            // vanished without closing its sockets), which frees a dead leader's lock in time
            // for a standby to lead within the 5 s failover budget.
            ("tcp_keepalives_idle", "2"),
            ("tcp_keepalives_interval", "1"),
            ("tcp_keepalives_count", "2"),
            ("tcp_user_timeout", "4000"),
        ]);
    let target = mask_url(url);
    Ok(connect_sized(
        options,
        &target,
        "check the URL, the network path and the credentials (sslmode=verify-full needs \
         sslrootcert)",
        config.database_pool_size,
    )
    .await?)
}

/// Where the database's schema stands against this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// Exactly the migrations this binary has.
    Current(i64),
    /// Never migrated, or missing some of this binary's migrations.
    Older {
        /// The newest applied version (0: none).
        found: i64,
        /// This binary's newest.
        known: i64,
    },
    /// Migrated by a newer Leoflow.
    Newer {
        /// The newest applied version.
        found: i64,
        /// This binary's newest.
        known: i64,
    },
}

impl Schema {
    /// Compares the applied versions with this binary's migrations.
    pub fn of(applied: &BTreeSet<i64>) -> Self {
        let known: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        let found = applied.last().copied().unwrap_or(0);
        let latest = latest_version();
        if applied.iter().any(|v| !known.contains(v)) {
            Self::Newer {
                found,
                known: latest,
            }
        } else if known.iter().any(|v| !applied.contains(v)) {
            Self::Older {
                found,
                known: latest,
            }
        } else {
            Self::Current(found)
        }
    }

    /// Reads it from the database.
    pub async fn read(pool: &PgPool) -> sqlx::Result<Self> {
        Ok(Self::of(&applied_versions(pool).await?))
    }

    /// `Ok` for the current schema, else the refusal that says which command fixes it.
    pub fn require_current(&self) -> Result<i64> {
        match self {
            Self::Current(version) => Ok(*version),
            Self::Older { found: 0, known } => bail!(
                "the database has no Leoflow schema (this server needs version {known}): run \
                 `leoflow db migrate` against it (the Helm chart's migration Job does)"
            ),
            Self::Older { found, known } => bail!(
                "the database's schema is at version {found}, older than this server's \
                 ({known}): run `leoflow db migrate` against it (the Helm chart's migration \
                 Job does), then start the server again"
            ),
            Self::Newer { found, known } => bail!(
                "the database's schema is at version {found}, newer than this server's \
                 ({known}): a newer Leoflow migrated it. Run the server image of that release \
                 (never run an older `leoflow db migrate` against it)"
            ),
        }
    }
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One node (`redis://` or `rediss://`).
    Node(String),
    /// The master the Sentinels name (`redis+sentinel://` or `rediss+sentinel://`).
    Sentinel {
        /// The Sentinels, `host:port`.
        sentinels: Vec<(String, u16)>,
        /// The master's name.
        master: String,
        /// The database number.
        db: i64,
        /// TLS to the Sentinels and the master.
        tls: bool,
        /// The master's user name, if any.
        username: Option<String>,
        /// The master's password, if any.
        password: Option<String>,
    },
}

impl RedisTarget {
    /// Reads a URL: `redis://[user:password@]host[:port][/db]`, `rediss://` the same over TLS,
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]…]/master[/db]` (and
    /// `rediss+sentinel://`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
        match scheme {
            "redis" | "rediss" => {
                let info = url.into_connection_info().map_err(|e| e.to_string())?;
                if let ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } =
                    info.addr()
                    && host.is_empty()
                {
                    return Err("has no host".into());
                }
                Ok(Self::Node(url.to_owned()))
            }
            "redis+sentinel" | "rediss+sentinel" => parse_sentinel(scheme, rest),
            other => Err(format!(
                "scheme {other:?}: use redis://, rediss:// (TLS) or \
                 redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER"
            )),
        }
    }
}

fn parse_sentinel(scheme: &str, rest: &str) -> Result<RedisTarget, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (
                Some(percent_decode(user)?).filter(|u| !u.is_empty()),
                Some(percent_decode(password)?),
            ),
            None => (Some(percent_decode(info)?), None),
        },
        None => (None, None),
    };
    let sentinels = hosts
        .split(',')
        .map(|host| match host.rsplit_once(':') {
            Some((name, port)) => port
                .parse::<u16>()
                .map(|port| (name.to_owned(), port))
                .map_err(|_| format!("{host:?} has no valid port")),
            None => Ok((host.to_owned(), 26379)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.iter().any(|(host, _)| host.is_empty()) {
        return Err("has no host".into());
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts
        .next()
        .ok_or("a Sentinel URL names its master: redis+sentinel://HOST:PORT/MASTER")?
        .to_owned();
    let db = match parts.next() {
        Some(db) => db
            .parse()
            .map_err(|_| format!("database {db:?} is not a number"))?,
        None => 0,
    };
    Ok(RedisTarget::Sentinel {
        sentinels,
        master,
        db,
        tls: scheme.starts_with("rediss"),
        username,
        password,
    })
}

/// `%XX` escapes decoded, as in a URL's user info (`+` stays a plus).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password is not UTF-8".into())
}

/// A connection to Redis that reconnects by itself.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    /// When a call last failed: Redis is left alone for [`REDIS_BACKOFF`] after.
    failed_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// The longest one call of the shared state may take.
const CALL_DEADLINE: Duration = Duration::from_millis(500);

/// How long Redis is left alone after a call failed: a Redis that is gone must not add its
/// timeout to every request.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

impl Redis {
    /// Connects and checks Redis answers `PING`; refuses to go on otherwise.
    pub async fn connect(url: &str) -> Result<Self> {
        let target = RedisTarget::parse(url).map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
        let masked = mask_url(url);
        let client = match tokio::time::timeout(REDIS_TIMEOUT * 2, client(&target)).await {
            Ok(client) => client,
            Err(_) => Err(anyhow::anyhow!("no answer within {:?}", REDIS_TIMEOUT * 2)),
        }
        .with_context(|| format!("Redis at {masked} is unreachable"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .with_context(|| {
                format!(
                    "Redis at {masked} is unreachable: check the URL, the network path and the \
                     password (rediss:// for TLS)"
                )
            })?;
        let redis = Self {
            connection,
            failed_at: std::sync::Arc::default(),
        };
        redis
            .ping()
            .await
            .with_context(|| format!("Redis at {masked} does not answer PING"))?;
        Ok(redis)
    }

    /// A connection for commands (cheap: they share one multiplexed connection).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs `call` unless Redis failed within the backoff, cut off after the call deadline;
    /// a failure starts the backoff.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        if let Some(at) = *self.failed_at.lock().expect("not poisoned")
            && at.elapsed() < REDIS_BACKOFF
        {
            return Err("Redis failed moments ago".into());
        }
        let outcome = match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(format!("Redis: {error}")),
            Err(_) => Err(format!("Redis did not answer within {CALL_DEADLINE:?}")),
        };
        *self.failed_at.lock().expect("not poisoned") =
            outcome.is_err().then(std::time::Instant::now);
        outcome
    }

    /// `PING`, cut off after the reply timeout.
    pub async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        let reply: String = redis::cmd("PING").query_async(&mut connection).await?;
        if reply != "PONG" {
            bail!("PING answered {reply:?}");
        }
        Ok(())
    }
}

/// The client of a node, or of the master the Sentinels name now.
async fn client(target: &RedisTarget) -> Result<redis::Client> {
    match target {
        RedisTarget::Node(url) => Ok(redis::Client::open(url.as_str())?),
        RedisTarget::Sentinel {
            sentinels,
            master,
            db,
            tls,
            username,
            password,
        } => {
            let addresses = sentinels.iter().map(|(host, port)| {
                if *tls {
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(host.clone(), *port)
                }
            });
            let mut builder =
                SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)?
                    .set_client_to_redis_db(*db);
            if *tls {
                builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            }
            if let Some(username) = username {
                builder = builder.set_client_to_redis_username(username);
            }
            if let Some(password) = password {
                builder = builder.set_client_to_redis_password(password);
            }
            Ok(builder.build()?.async_get_client().await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_single_node_tls_and_sentinel() {
        assert_eq!(
            RedisTarget::parse("rediss://:pw@redis.internal:6380/2").unwrap(),
            RedisTarget::Node("rediss://:pw@redis.internal:6380/2".into())
        );
        assert_eq!(
            RedisTarget::parse("redis+sentinel://:p%40s+s@s1:26379,s2/mymaster/3").unwrap(),
            RedisTarget::Sentinel {
                sentinels: vec![("s1".into(), 26379), ("s2".into(), 26379)],
                master: "mymaster".into(),
                db: 3,
                tls: false,
                username: None,
                password: Some("p@s+s".into()),
            }
        );
        let no_master = RedisTarget::parse("redis+sentinel://s1:26379").unwrap_err();
        assert!(no_master.contains("names its master"), "{no_master}");
        let bad_port = RedisTarget::parse("redis+sentinel://s1:x/m").unwrap_err();
        assert!(bad_port.contains("port"), "{bad_port}");
        let scheme = RedisTarget::parse("http://redis:6379").unwrap_err();
        assert!(scheme.contains("redis://"), "{scheme}");
    }

    #[test]
    fn the_schema_is_current_only_with_exactly_this_binarys_migrations() {
        let known: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        let latest = latest_version();
        assert_eq!(Schema::of(&known), Schema::Current(latest));
        let none = Schema::of(&BTreeSet::new()).require_current().unwrap_err();
        assert!(none.to_string().contains("leoflow db migrate"), "{none}");
        let mut older = known.clone();
        older.pop_last();
        let older = Schema::of(&older).require_current().unwrap_err();
        assert!(
            older.to_string().contains("older than this server"),
            "{older}"
        );
        let mut newer = known;
        newer.insert(latest + 1);
        let newer = Schema::of(&newer).require_current().unwrap_err();
        assert!(
            newer.to_string().contains("newer than this server"),
            "{newer}"
        );
    }
}
