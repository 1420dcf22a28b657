//! The API replicas' shared session state in Redis: failed logins per client (one counter per
//! address that expires with its window) and revoked sessions (one key per session id that
//! expires with the token). See `leoflow_api::sessions` for what happens while Redis is away.
//!
//! Every call is cut off after [`CALL_DEADLINE`], and after a failure Redis is not asked again
//! for [`BACKOFF`]: a Redis that is gone must not add its timeout to every request.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use leoflow_api::sessions::{SharedError, SharedSessions};
use redis::AsyncCommands;

use super::datastores::Redis;

/// The longest one call may take.
const CALL_DEADLINE: Duration = Duration::from_millis(500);

/// How long Redis is left alone after it failed.
const BACKOFF: Duration = Duration::from_secs(1);

/// [`SharedSessions`] over Redis.
pub struct RedisSessions {
    redis: Redis,
    failed_at: Mutex<Option<Instant>>,
}

impl RedisSessions {
    /// Sessions shared through `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            failed_at: Mutex::new(None),
        }
    }

    /// Runs `call` unless Redis failed within [`BACKOFF`]; a failure starts the backoff.
    async fn call<T, F>(&self, call: F) -> Result<T, SharedError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if let Some(at) = *self.failed_at.lock().expect("not poisoned")
            && at.elapsed() < BACKOFF
        {
            return Err(SharedError("Redis failed moments ago".into()));
        }
        let outcome = match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(SharedError(format!("Redis: {error}"))),
            Err(_) => Err(SharedError(format!(
                "Redis did not answer within {CALL_DEADLINE:?}"
            ))),
        };
        *self.failed_at.lock().expect("not poisoned") = outcome.is_err().then(Instant::now);
        outcome
    }
}

fn failures_key(client: IpAddr) -> String {
    format!("leoflow:login-failures:{client}")
}

fn revoked_key(id: &str) -> String {
    format!("leoflow:revoked-session:{id}")
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
                .await?;
            Ok((count, Duration::from_millis(left_ms.max(0) as u64)))
        })
    }

    fn forget_attempts(&self, client: IpAddr) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.call(connection.del::<_, ()>(failures_key(client)))
                .await
        })
    }

    fn revoke(&self, id: &str, lifetime: Duration) -> BoxFuture<'_, Result<(), SharedError>> {
        let key = revoked_key(id);
        Box::pin(async move {
            let mut connection = self.redis.connection();
            let millis = lifetime.as_millis().max(1) as u64;
            self.call(connection.pset_ex::<_, _, ()>(key, 1, millis))
                .await
        })
    }

    fn is_revoked(&self, id: &str) -> BoxFuture<'_, Result<bool, SharedError>> {
        let key = revoked_key(id);
        Box::pin(async move {
            let mut connection = self.redis.connection();
            self.call(connection.exists::<_, bool>(key)).await
        })
    }
}
