//! What replicas of the API must share about sessions, and that must not go through the event
//! log: failed logins per client (the limiter) and revoked sessions (logged out before they
//! expire). Lite is one process and keeps both in [`crate::auth::Auth`]; `leoflow server` gives
//! its replicas a shared store (Redis) through [`SharedSessions`].
//!
//! The shared store is never the truth, and losing it never opens a way in: while it is away,
//! each replica limits logins with its own counts (so a client gets at most the limit per
//! replica) and refuses the sessions revoked through it, and says so in its log.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// The shared store failed (unreachable, timed out, answered an error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared session store failed: {0}")]
pub struct SharedError(pub String);

/// Failed logins and revoked sessions, shared by the replicas.
pub trait SharedSessions: Send + Sync + 'static {
    /// Counts one more login attempt by `client` in the current `window`; returns the count
    /// so far (this one included) and how long the window still runs.
    fn count_attempt(
        &self,
        client: IpAddr,
        window: Duration,
    ) -> BoxFuture<'_, Result<(u32, Duration), SharedError>>;

    /// Forgets `client`'s attempts (it logged in).
    fn forget_attempts(&self, client: IpAddr) -> BoxFuture<'_, Result<(), SharedError>>;

    /// Revokes the session `id` (a token's `jti`) for `lifetime` (until the token expires).
    fn revoke(&self, id: &str, lifetime: Duration) -> BoxFuture<'_, Result<(), SharedError>>;

    /// Whether the session `id` was revoked.
    fn is_revoked(&self, id: &str) -> BoxFuture<'_, Result<bool, SharedError>>;

    /// Marks `id` (a sign-in's state) used for `lifetime`, atomically: `true` for the first
    /// caller on any replica, `false` for every later one.
    fn claim_once(&self, id: &str, lifetime: Duration) -> BoxFuture<'_, Result<bool, SharedError>>;
}
