//! The replicas' shared state in Redis — never the truth, each part with its way of going on
//! without Redis:
//!
//! - the API replicas' sessions: failed logins per client (one counter per address that
//!   expires with its window) and revoked sessions (one key per session id that expires with
//!   the token); without Redis each replica limits and revokes on its own
//!   (`leoflow_api::sessions`);
//! - agents' signs of life, by attempt digest (one key each, written in batches by the replica
//!   that hears the agent, read by the leader before it fails a try as silent); without Redis
//!   they go to Postgres (`leoflow_scheduler::Fallback`);
//! - large XCom values, by blob hash, for the many tasks of a fan-out that read one upstream
//!   result; without Redis they are read from Postgres, which always has them
//!   (`leoflow_scheduler::xcom_values`).
//!
//! Every call is cut off after a deadline, and after a failure Redis is left alone for a
//! second ([`Redis::call`]).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use leoflow_api::sessions::{SharedError, SharedSessions};
use leoflow_events::AttemptDigest;
use leoflow_scheduler::xcom_values::SharedBlobs;
use leoflow_scheduler::{LivenessError, SeenAt, SharedLiveness};
use redis::AsyncCommands;

use super::datastores::Redis;

/// How long a sign of life is kept when its attempt is never forgotten (a leader that died
/// between the end of a try and its flush): far beyond any heartbeat timeout.
const SEEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// [`SharedSessions`] over Redis.
pub struct RedisSessions {
    redis: Redis,
}

impl RedisSessions {
    /// Sessions shared through `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

fn failures_key(client: IpAddr) -> String {
    format!("leoflow:login-failures:{client}")
}

fn revoked_key(id: &str) -> String {
    format!("leoflow:revoked-session:{id}")
}

fn used_key(id: &str) -> String {
    format!("leoflow:used-once:{id}")
}

impl SharedSessions for RedisSessions {
    fn count_attempt(
        &self,
        client: IpAddr,
        window: Duration,
    ) -> BoxFuture<'_, Result<(u32, Duration), SharedError>> {
        Box::pin(async move {
            let key = failures_key(client);
            let mut connection = self.redis.connection();
            // One transaction: the count, the window starting with the first attempt (NX keeps
            // a running window), and what is left of it.
            let (count, left_ms): (u32, i64) = self
                .redis
                .call(
                    redis::pipe()
                        .atomic()
                        .incr(&key, 1)
                        .cmd("PEXPIRE")
                        .arg(&key)
                        .arg(window.as_millis() as u64)
                        .arg("NX")
                        .ignore()
                        .cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut connection),
                )
                .await
                .map_err(SharedError)?;
            Ok((count, Duration::from_millis(left_ms.max(0) as u64)))
        })
    }

    fn forget_attempts(&self, client: IpAddr) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.redis
                .call(connection.del::<_, ()>(failures_key(client)))
                .await
                .map_err(SharedError)
        })
    }

    fn revoke(&self, id: &str, lifetime: Duration) -> BoxFuture<'_, Result<(), SharedError>> {
        let key = revoked_key(id);
        Box::pin(async move {
            let mut connection = self.redis.connection();
            let millis = lifetime.as_millis().max(1) as u64;
            self.redis
                .call(connection.pset_ex::<_, _, ()>(key, 1, millis))
                .await
                .map_err(SharedError)
        })
    }

    fn is_revoked(&self, id: &str) -> BoxFuture<'_, Result<bool, SharedError>> {
        let key = revoked_key(id);
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.redis
                .call(connection.exists::<_, bool>(key))
                .await
                .map_err(SharedError)
        })
    }

    fn claim_once(&self, id: &str, lifetime: Duration) -> BoxFuture<'_, Result<bool, SharedError>> {
        let key = used_key(id);
        Box::pin(async move {
            let mut connection = self.redis.connection();
            // SET NX: only the first of any number of replicas sets it.
            let set: Option<String> = self
                .redis
                .call(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(lifetime.as_millis().max(1) as u64)
                        .query_async(&mut connection),
                )
                .await
                .map_err(SharedError)?;
            Ok(set.is_some())
        })
    }
}

/// [`SharedLiveness`] over Redis: each attempt's last sign of life in milliseconds since the
/// epoch.
#[derive(Clone)]
pub struct RedisLiveness {
    redis: Redis,
}

impl std::fmt::Debug for RedisLiveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisLiveness")
    }
}

impl RedisLiveness {
    /// Signs of life shared through `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

fn seen_key(attempt: &AttemptDigest) -> String {
    format!("leoflow:attempt-seen:{}", attempt.as_str())
}

impl SharedLiveness for RedisLiveness {
    fn write<'a>(
        &'a self,
        touched: &'a SeenAt,
        forgotten: &'a [AttemptDigest],
    ) -> BoxFuture<'a, Result<(), LivenessError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for (attempt, at) in touched {
                pipe.pset_ex(
                    seen_key(attempt),
                    at.timestamp_millis(),
                    SEEN_TTL.as_millis() as u64,
                )
                .ignore();
            }
            for attempt in forgotten {
                pipe.del(seen_key(attempt)).ignore();
            }
            let mut connection = self.redis.connection();
            self.redis
                .call(pipe.query_async::<()>(&mut connection))
                .await
                .map_err(LivenessError)
        })
    }

    fn read<'a>(
        &'a self,
        attempts: &'a [&'a AttemptDigest],
    ) -> BoxFuture<'a, Result<SeenAt, LivenessError>> {
        Box::pin(async move {
            if attempts.is_empty() {
                return Ok(SeenAt::new());
            }
            let keys: Vec<String> = attempts.iter().map(|a| seen_key(a)).collect();
            let mut connection = self.redis.connection();
            let values: Vec<Option<i64>> = self
                .redis
                .call(connection.mget(keys))
                .await
                .map_err(LivenessError)?;
            Ok(attempts
                .iter()
                .zip(values)
                .filter_map(|(attempt, millis)| {
                    let at = chrono::DateTime::from_timestamp_millis(millis?)?;
                    Some(((*attempt).clone(), at))
                })
                .collect())
        })
    }
}

/// How long a large XCom value stays in Redis after it was last read from Postgres: long
/// enough for a run's fan-out to read it, short enough that finished runs' values leave.
const BLOB_TTL: Duration = Duration::from_secs(3600);

/// Large XCom values in Redis, by blob hash (content-addressed: never stale).
pub struct RedisBlobs {
    redis: Redis,
}

impl std::fmt::Debug for RedisBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisBlobs")
    }
}

impl RedisBlobs {
    /// Values shared through `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

fn blob_key(hash: &str) -> String {
    format!("leoflow:xcom-blob:{hash}")
}

impl SharedBlobs for RedisBlobs {
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.redis.call(connection.get(blob_key(hash))).await
        })
    }

    fn put<'a>(&'a self, hash: &'a str, content: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.redis
                .call(connection.pset_ex(blob_key(hash), content, BLOB_TTL.as_millis() as u64))
                .await
        })
    }
}
