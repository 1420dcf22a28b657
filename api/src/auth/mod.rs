//! Authentication as Airflow's simple auth manager does it, so the unmodified UI logs in: the
//! login page posts `{username, password}` to `POST /auth/token`, gets a JWT (HS512, audience
//! `apache-airflow`, 24 h) and keeps it in the `_token` cookie; API clients send it as
//! `Authorization: Bearer …`. Every `/api/v2` and `/ui` route but login, logout and the health
//! check refuses a request without a valid token (401, which sends the UI to the login page).
//! Failed logins are limited per client address; logging out revokes the session. Replicas
//! of `leoflow server` share both through [`SharedSessions`] (Redis).
//!
//! This module issues and checks tokens ([`Auth`]: sessions, revocation, the failed-login
//! limiter) and names the user a request acts as ([`User`]); `middleware` checks what a
//! request presents, `login` serves the password login's routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::credentials::Credentials;
use crate::error::{ApiError, ApiResult};
use crate::sessions::{SharedError, SharedSessions};
use leoflow_events::Actor;

mod client;
mod login;
mod middleware;

pub use client::TrustedProxies;

pub(crate) use login::{
    cleared_session_cookie, create_token, login_redirect, logout, session_cookie,
};
pub(crate) use middleware::{Authenticated, cookie, presented_user, require_user, session_token};

/// The cookie the UI keeps its token in (Airflow's `COOKIE_NAME_JWT_TOKEN`).
const TOKEN_COOKIE: &str = "_token";
/// The audience Airflow's tokens carry.
const AUDIENCE: &str = "apache-airflow";
/// How long a token is valid (Airflow's `jwt_expiration_time`).
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a single sign-on session's token is valid: short, so a person removed at the
/// provider or revoked here loses access soon; renewed while the browser uses it.
const SSO_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The longest a single sign-on session is renewed before the provider is asked again.
const SSO_SESSION_LIMIT: Duration = Duration::from_secs(12 * 3600);
/// The audience of what [`Auth::sign`] signs: never a session's.
const SIGNED_AUDIENCE: &str = "leoflow-signed";
/// Failed logins allowed per client address within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
/// How long a replica trusts the shared store's "not revoked" for a session: a session
/// revoked on one replica is refused by the others within this time.
const REVOCATION_RECHECK: Duration = Duration::from_secs(1);
/// The window failed logins are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Password verifications that may run at once: half the cores (at least one), so a storm of
/// logins leaves the other half to the scheduler, the agents' calls and the API.
fn max_concurrent_hashes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// A token's claims (the same names Airflow's have).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    /// The user.
    pub sub: String,
    /// Their role (`admin` in Lite).
    pub role: String,
    /// Token id.
    pub jti: String,
    /// `apache-airflow`.
    pub aud: String,
    /// Not before (seconds since the epoch).
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Their display name (single sign-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their tenant (single sign-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Their custom roles (single sign-on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dag_roles: Vec<String>,
    /// When they signed in at the provider: a single sign-on session is short-lived and
    /// renewed while in use, up to [`SSO_SESSION_LIMIT`] after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

impl Claims {
    /// When the session ends for good: its token's expiry, or a renewed session's limit.
    fn session_end(&self) -> u64 {
        self.auth_time
            .map_or(self.exp, |at| at + SSO_SESSION_LIMIT.as_secs())
    }
}

impl Claims {
    fn user(self) -> User {
        User {
            display_name: self.name.unwrap_or_else(|| self.sub.clone()),
            tenant: self.tenant,
            dag_roles: self.dag_roles,
            token_id: Some(self.jti),
            ..User::named(self.sub, self.role)
        }
    }
}

/// The authenticated user of a request, as its token names them (the middleware that checks
/// the token puts it in the request's extensions): the actor of the events their changes
/// append. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Who the token was issued to (its `sub`): whose favourite DAGs the UI shows.
    pub username: String,
    /// The name people know them by (the provider's `name` claim; the username otherwise).
    pub display_name: String,
    /// Their role, as the token carries it (`admin` in Lite): the strongest of Airflow's five
    /// they hold.
    pub role: String,
    /// Their custom roles: each reaches the DAGs whose `access_control` names it.
    pub dag_roles: Vec<String>,
    /// Their tenant (Pro); `None` in Lite.
    pub tenant: Option<String>,
    /// The id of the credential presented: the session's id, the API token's id, or the
    /// provider's access token id. Never the credential itself.
    pub token_id: Option<String>,
    /// The address the request came from, when known.
    pub client: Option<IpAddr>,
}

impl User {
    /// A user known by name only (the display name is the username).
    pub fn named(username: impl Into<String>, role: impl Into<String>) -> Self {
        let username = username.into();
        Self {
            display_name: username.clone(),
            username,
            role: role.into(),
            dag_roles: Vec::new(),
            tenant: None,
            token_id: None,
            client: None,
        }
    }

    /// What the keys of their tenant's DAGs start with when the keys are not the DAGs' ids
    /// (`acme:`, [`leoflow_events::dag_key`]); `None` in the default tenant and in every tenant.
    pub fn dag_key_prefix(&self) -> Option<String> {
        self.tenant
            .as_deref()
            .and_then(leoflow_events::dag_key_prefix)
    }
}

/// The request's user as the events their changes append record them: who, by which name,
/// in which tenant, from where, with which credential (its id).
impl From<&User> for Actor {
    fn from(user: &User) -> Self {
        Actor {
            subject: user.username.clone(),
            display_name: user.display_name.clone(),
            tenant: user.tenant.clone(),
            client: user.client,
            token_id: user.token_id.clone(),
        }
    }
}

/// Checks passwords and tokens.
pub struct Auth {
    credentials: Mutex<Credentials>,
    /// Where the credentials were read from: re-read when it changes, so a
    /// `leoflow lite reset-password` takes effect without a restart.
    source: Option<(PathBuf, Option<SystemTime>)>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Sessions revoked through this process: session id → expiry (seconds since the epoch).
    revoked: Mutex<HashMap<String, u64>>,
    /// Revocations the shared store has not taken yet (it was away): sent when it answers.
    unshared: Mutex<Vec<(String, u64)>>,
    /// Sessions the shared store said were not revoked, and when: asked again only after
    /// [`REVOCATION_RECHECK`], so a busy client costs one Redis call a second, not one per
    /// request.
    not_revoked: Mutex<HashMap<String, Instant>>,
    /// The replicas' shared store, when there are replicas.
    shared: Option<Arc<dyn SharedSessions>>,
    /// Whether the shared store failed last time (its loss and return are logged once).
    shared_down: AtomicBool,
    /// The proxies whose `X-Forwarded-For` names a request's client.
    proxies: TrustedProxies,
    hashing: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    /// Auth over `credentials`; with `home`, later changes to its credentials file are picked
    /// up at the next login.
    pub fn new(credentials: Credentials, home: Option<PathBuf>) -> Self {
        let key = credentials.token_signing_key.clone();
        let source = home.map(|home| {
            let path = Credentials::path(&home);
            let modified = modified(&path);
            (home, modified)
        });
        Self {
            credentials: Mutex::new(credentials),
            source,
            encoding: EncodingKey::from_secret(&key).expect("an HMAC key of 32 bytes or more"),
            decoding: DecodingKey::from_secret(&key).expect("an HMAC key of 32 bytes or more"),
            failures: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
            unshared: Mutex::new(Vec::new()),
            not_revoked: Mutex::new(HashMap::new()),
            shared: None,
            shared_down: AtomicBool::new(false),
            proxies: TrustedProxies::default(),
            hashing: tokio::sync::Semaphore::new(max_concurrent_hashes()),
        }
    }

    /// Shares failed logins and revoked sessions with other replicas through `shared`.
    pub fn with_shared(mut self, shared: Arc<dyn SharedSessions>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Takes a request's client from `X-Forwarded-For` when its peer is one of `proxies`
    /// (`auth.trusted_proxies`); without, the peer is the client.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Issues a token for `username`.
    pub fn issue(&self, username: &str) -> String {
        let now = now_seconds();
        let claims = Claims {
            sub: username.to_owned(),
            role: "admin".into(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            aud: AUDIENCE.into(),
            nbf: now,
            exp: now + TOKEN_LIFETIME.as_secs(),
            iat: now,
            name: None,
            tenant: None,
            dag_roles: Vec::new(),
            auth_time: None,
        };
        self.encode(&claims)
    }

    fn encode(&self, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), claims, &self.encoding)
            .expect("HS512 signs any claims")
    }

    /// Issues a single sign-on session for `user`, who just signed in at the provider.
    pub fn issue_session(&self, user: &User) -> String {
        let now = now_seconds();
        self.encode(&Claims {
            sub: user.username.clone(),
            role: user.role.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            aud: AUDIENCE.into(),
            nbf: now,
            exp: now + SSO_TOKEN_LIFETIME.as_secs(),
            iat: now,
            name: Some(user.display_name.clone()),
            tenant: user.tenant.clone(),
            dag_roles: user.dag_roles.clone(),
            auth_time: Some(now),
        })
    }

    /// A renewed token for a single sign-on session whose token is past half its life (the
    /// same session: logging out revokes both), unless the session reached its limit.
    pub fn renewed(&self, token: &str) -> Option<String> {
        let claims = self.claims(token)?;
        let auth_time = claims.auth_time?;
        let now = now_seconds();
        let half = SSO_TOKEN_LIFETIME.as_secs() / 2;
        if claims.exp > now + half || now >= auth_time + SSO_SESSION_LIMIT.as_secs() {
            return None;
        }
        let exp = (now + SSO_TOKEN_LIFETIME.as_secs()).min(claims.session_end());
        Some(self.encode(&Claims {
            nbf: now,
            iat: now,
            exp,
            ..claims
        }))
    }

    /// `value`, signed with the session key to come back within `lifetime` (a sign-in in
    /// progress); never valid as a session.
    pub(crate) fn sign<T: Serialize>(&self, value: &T, lifetime: Duration) -> String {
        let mut claims = serde_json::to_value(value).expect("plain data serializes");
        if let Some(object) = claims.as_object_mut() {
            object.insert("aud".into(), SIGNED_AUDIENCE.into());
            object.insert("exp".into(), (now_seconds() + lifetime.as_secs()).into());
        }
        self.encode(&claims)
    }

    /// What [`Auth::sign`] signed, if `token` is such, unexpired and untampered.
    pub(crate) fn open<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[SIGNED_AUDIENCE]);
        validation.leeway = 0;
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// Marks `id` used, here and on every replica: `true` only the first time.
    pub(crate) async fn claim_once(&self, id: &str, lifetime: Duration) -> bool {
        if let Some(shared) = &self.shared
            && let Some(first) = self.shared_outcome(shared.claim_once(id, lifetime).await)
        {
            return first;
        }
        // Without the shared store (or while it is away), this replica's own record.
        let mut revoked = self.revoked.lock().expect("not poisoned");
        let now = now_seconds();
        revoked.retain(|_, expiry| *expiry > now);
        revoked
            .insert(format!("used:{id}"), now + lifetime.as_secs())
            .is_none()
    }

    /// The user a token stands for, if it is signed by this server's key and unexpired (not
    /// asking whether it was revoked: see [`Auth::authenticate`]).
    pub fn verify(&self, token: &str) -> Option<User> {
        Some(self.claims(token)?.user())
    }

    fn claims(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        Some(
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
                .ok()?
                .claims,
        )
    }

    /// The user a token stands for, if it is valid, unexpired and not revoked (here, or on
    /// another replica when the shared store answers).
    pub async fn authenticate(&self, token: &str) -> Option<User> {
        let claims = self.claims(token)?;
        if self
            .revoked
            .lock()
            .expect("not poisoned")
            .contains_key(&claims.jti)
        {
            return None;
        }
        if let Some(shared) = &self.shared
            && !self.recently_not_revoked(&claims.jti)
        {
            match self.shared_outcome(shared.is_revoked(&claims.jti).await) {
                Some(true) => return None,
                Some(false) => {
                    self.remember_not_revoked(&claims.jti);
                    self.share_revocations(shared.as_ref()).await;
                }
                None => {}
            }
        }
        Some(claims.user())
    }

    /// Whether the shared store said within [`REVOCATION_RECHECK`] that `id` is not revoked.
    fn recently_not_revoked(&self, id: &str) -> bool {
        self.not_revoked
            .lock()
            .expect("not poisoned")
            .get(id)
            .is_some_and(|at| at.elapsed() < REVOCATION_RECHECK)
    }

    fn remember_not_revoked(&self, id: &str) {
        let mut checked = self.not_revoked.lock().expect("not poisoned");
        if checked.len() >= 10_000 {
            checked.retain(|_, at| at.elapsed() < REVOCATION_RECHECK);
        }
        checked.insert(id.to_owned(), Instant::now());
    }

    /// Revokes the session `token` stands for, on every replica: it is refused from now on
    /// although it has not expired. A token that is not valid revokes nothing.
    pub async fn revoke(&self, token: &str) {
        let Some(claims) = self.claims(token) else {
            return;
        };
        self.not_revoked
            .lock()
            .expect("not poisoned")
            .remove(&claims.jti);
        {
            let mut revoked = self.revoked.lock().expect("not poisoned");
            let now = now_seconds();
            revoked.retain(|_, expiry| *expiry > now);
            revoked.insert(claims.jti.clone(), claims.session_end());
        }
        if let Some(shared) = &self.shared {
            self.unshared
                .lock()
                .expect("not poisoned")
                .push((claims.jti.clone(), claims.session_end()));
            self.share_revocations(shared.as_ref()).await;
        }
    }

    /// Hands the revocations the shared store has not taken yet to it, keeping those it does
    /// not take (it is away) for the next time it answers.
    async fn share_revocations(&self, shared: &dyn SharedSessions) {
        let pending = std::mem::take(&mut *self.unshared.lock().expect("not poisoned"));
        let now = now_seconds();
        for (at, (id, expiry)) in pending.iter().enumerate() {
            if *expiry <= now {
                continue;
            }
            let lifetime = Duration::from_secs(expiry - now + 5);
            if self
                .shared_outcome(shared.revoke(id, lifetime).await)
                .is_none()
            {
                let mut unshared = self.unshared.lock().expect("not poisoned");
                unshared.extend(pending[at..].iter().cloned());
                return;
            }
        }
    }

    /// `Some` with what the shared store answered, `None` when it failed (logged when it
    /// starts failing and when it answers again).
    fn shared_outcome<T>(&self, outcome: Result<T, SharedError>) -> Option<T> {
        match outcome {
            Ok(value) => {
                if self.shared_down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the shared session store answers again");
                }
                Some(value)
            }
            Err(error) => {
                if !self.shared_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{error}; until it is back this replica limits logins and refuses \
                         revoked sessions on its own"
                    );
                }
                None
            }
        }
    }

    /// Checks a login; counts failures per client and refuses while a client has too many.
    ///
    /// The attempt is counted *before* the password is verified and forgotten only when it
    /// succeeds, so concurrent attempts cannot overshoot the limit. Verifying (argon2, tens of
    /// milliseconds of CPU) runs on the blocking pool, on at most half the cores at a time, so
    /// a storm of logins never stalls the async workers the scheduler and the API share.
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        username: &str,
        password: &str,
    ) -> ApiResult<String> {
        if let Some(ip) = client {
            self.reserve_attempt(ip).await?;
        }
        self.reload_if_changed();
        let credentials = self.credentials.lock().expect("not poisoned").clone();
        let ok = {
            let _permit = self.hashing.acquire().await.expect("never closed");
            let (username, password) = (username.to_owned(), password.to_owned());
            tokio::task::spawn_blocking(move || credentials.check(&username, &password))
                .await
                .map_err(ApiError::internal)?
        };
        if !ok {
            return Err(ApiError::unauthorized("Invalid credentials"));
        }
        if let Some(ip) = client {
            self.failures.lock().expect("not poisoned").remove(&ip);
            if let Some(shared) = &self.shared {
                self.shared_outcome(shared.forget_attempts(ip).await);
            }
        }
        Ok(self.issue(username))
    }

    /// Counts an attempt of `ip` as failed until it succeeds; refuses it (429) when the client
    /// already has [`MAX_FAILURES`] in the window — counted by all replicas together when the
    /// shared store answers, by this one alone when it does not.
    async fn reserve_attempt(&self, ip: IpAddr) -> ApiResult<()> {
        if let Some(shared) = &self.shared
            && let Some((count, left)) =
                self.shared_outcome(shared.count_attempt(ip, FAILURE_WINDOW).await)
        {
            if count > MAX_FAILURES {
                let wait = left.as_secs().max(1);
                return Err(too_many_failures(ip, wait));
            }
            return Ok(());
        }
        self.reserve_attempt_here(ip)
    }

    /// [`Auth::reserve_attempt`] with this process's counts.
    fn reserve_attempt_here(&self, ip: IpAddr) -> ApiResult<()> {
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        if entry.0 >= MAX_FAILURES {
            let wait = FAILURE_WINDOW
                .saturating_sub(entry.1.elapsed())
                .as_secs()
                .max(1);
            return Err(too_many_failures(ip, wait));
        }
        entry.0 += 1;
        Ok(())
    }

    fn reload_if_changed(&self) {
        let Some((home, loaded_at)) = &self.source else {
            return;
        };
        let current = modified(&Credentials::path(home));
        if current != *loaded_at
            && let Ok(fresh) = Credentials::load(home)
        {
            // Only the password may change under a running server: the keys stay.
            self.credentials
                .lock()
                .expect("not poisoned")
                .take_password_from(fresh);
        }
    }
}

fn too_many_failures(ip: IpAddr, wait: u64) -> ApiError {
    ApiError::too_many(
        format!("Too many failed logins from {ip}; try again in {wait} s"),
        wait,
    )
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn auth() -> Auth {
        Auth::new(Credentials::new("pw"), None)
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let auth = auth();
        let token = auth.issue("admin");
        assert_eq!(auth.verify(&token).unwrap().username, "admin");
        let other = Auth::new(Credentials::new("pw"), None);
        assert!(other.verify(&token).is_none(), "signed with another key");
        assert!(auth.verify("garbage").is_none());
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(auth.verify(&tampered).is_none());
    }

    #[tokio::test]
    async fn failed_logins_are_limited_per_client() {
        let auth = auth();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            let e = auth.login(Some(ip), "admin", "wrong").await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        }
        let blocked = auth.login(Some(ip), "admin", "pw").await.unwrap_err();
        assert_eq!(
            blocked.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "even the right password waits"
        );
        let elsewhere: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(auth.login(Some(elsewhere), "admin", "pw").await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_failed_logins_cannot_overshoot_the_limit() {
        let auth = std::sync::Arc::new(auth());
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let attempts: Vec<_> = (0..40)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.login(Some(ip), "admin", "wrong").await })
            })
            .collect();
        let mut verified = 0;
        for attempt in attempts {
            let status = attempt.await.unwrap().unwrap_err().status();
            if status == StatusCode::UNAUTHORIZED {
                verified += 1;
            } else {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            }
        }
        assert_eq!(
            verified, MAX_FAILURES,
            "only the allowed attempts were verified"
        );
    }

    /// A shared store in memory, as Redis would share it between replicas; it can be taken
    /// away.
    #[derive(Default)]
    struct MemoryShared {
        attempts: Mutex<HashMap<IpAddr, u32>>,
        revoked: Mutex<Vec<String>>,
        away: AtomicBool,
    }

    impl MemoryShared {
        fn answer<T>(&self, value: T) -> futures_util::future::BoxFuture<'_, Result<T, SharedError>>
        where
            T: Send + 'static,
        {
            let away = self.away.load(Ordering::Relaxed);
            Box::pin(async move {
                if away {
                    Err(SharedError("away".into()))
                } else {
                    Ok(value)
                }
            })
        }
    }

    impl SharedSessions for MemoryShared {
        fn count_attempt(
            &self,
            client: IpAddr,
            window: Duration,
        ) -> futures_util::future::BoxFuture<'_, Result<(u32, Duration), SharedError>> {
            if self.away.load(Ordering::Relaxed) {
                return self.answer((0, window));
            }
            let mut attempts = self.attempts.lock().unwrap();
            let count = attempts.entry(client).or_default();
            *count += 1;
            self.answer((*count, window))
        }

        fn forget_attempts(
            &self,
            client: IpAddr,
        ) -> futures_util::future::BoxFuture<'_, Result<(), SharedError>> {
            self.attempts.lock().unwrap().remove(&client);
            self.answer(())
        }

        fn revoke(
            &self,
            id: &str,
            _: Duration,
        ) -> futures_util::future::BoxFuture<'_, Result<(), SharedError>> {
            if !self.away.load(Ordering::Relaxed) {
                self.revoked.lock().unwrap().push(id.to_owned());
            }
            self.answer(())
        }

        fn is_revoked(
            &self,
            id: &str,
        ) -> futures_util::future::BoxFuture<'_, Result<bool, SharedError>> {
            let revoked = self.revoked.lock().unwrap().iter().any(|r| r == id);
            self.answer(revoked)
        }

        fn claim_once(
            &self,
            id: &str,
            _: Duration,
        ) -> futures_util::future::BoxFuture<'_, Result<bool, SharedError>> {
            let mut used = self.revoked.lock().unwrap();
            let first = !self.away.load(Ordering::Relaxed) && !used.iter().any(|u| u == id);
            if first {
                used.push(id.to_owned());
            }
            self.answer(first)
        }
    }

    /// Two replicas' `Auth` on one store and the same keys.
    fn replicas() -> (Auth, Auth, Arc<MemoryShared>) {
        let shared = Arc::new(MemoryShared::default());
        let credentials = Credentials::new("pw");
        let a = Auth::new(credentials.clone(), None).with_shared(shared.clone());
        let b = Auth::new(credentials, None).with_shared(shared.clone());
        (a, b, shared)
    }

    fn sso_user() -> User {
        User {
            display_name: "Alice Admin".into(),
            tenant: Some("acme".into()),
            ..User::named("alice", "Admin")
        }
    }

    /// A single sign-on session's token as it was `age` seconds after a sign-in `since`
    /// seconds ago.
    fn aged_session(auth: &Auth, since: u64, age: u64) -> String {
        let signed_in = now_seconds() - since;
        let issued = signed_in + age;
        auth.encode(&Claims {
            sub: "alice".into(),
            role: "Admin".into(),
            jti: "session-1".into(),
            aud: AUDIENCE.into(),
            nbf: issued,
            iat: issued,
            exp: issued + SSO_TOKEN_LIFETIME.as_secs(),
            name: Some("Alice Admin".into()),
            tenant: Some("acme".into()),
            dag_roles: Vec::new(),
            auth_time: Some(signed_in),
        })
    }

    #[tokio::test]
    async fn a_single_sign_on_session_is_short_lived_and_renewed_while_used_up_to_its_limit() {
        let auth = auth();
        let fresh = auth.issue_session(&sso_user());
        let user = auth.authenticate(&fresh).await.unwrap();
        assert_eq!(
            (
                user.username.as_str(),
                user.display_name.as_str(),
                user.tenant.as_deref()
            ),
            ("alice", "Alice Admin", Some("acme"))
        );
        assert!(
            auth.renewed(&fresh).is_none(),
            "a fresh token is not renewed"
        );
        // Two thirds through its life: renewed, the same session.
        let old = aged_session(&auth, 600, 0);
        let renewed = auth.renewed(&old).expect("renewed past half its life");
        let claims = auth.claims(&renewed).unwrap();
        assert_eq!(claims.jti, "session-1");
        assert!(claims.exp >= now_seconds() + SSO_TOKEN_LIFETIME.as_secs() - 1);
        // At the session's limit: no more renewals, the provider is asked again.
        let limit = SSO_SESSION_LIMIT.as_secs();
        let ending = aged_session(&auth, limit + 1, limit - 600);
        assert!(auth.renewed(&ending).is_none());
        // Lite's admin tokens are not single sign-on sessions: never renewed.
        assert!(auth.renewed(&auth.issue("admin")).is_none());
    }

    #[tokio::test]
    async fn what_the_server_signs_for_a_sign_in_is_never_a_session() {
        let auth = auth();
        let signed = auth.sign(&serde_json::json!({"state": "s1"}), Duration::from_secs(60));
        let opened: serde_json::Value = auth.open(&signed).unwrap();
        assert_eq!(opened["state"], "s1");
        assert!(auth.authenticate(&signed).await.is_none(), "not a session");
        let session = auth.issue("admin");
        assert!(
            auth.open::<serde_json::Value>(&session).is_none(),
            "a session is not a sign-in"
        );
        let other = Auth::new(Credentials::new("pw"), None);
        assert!(
            other.open::<serde_json::Value>(&signed).is_none(),
            "another key"
        );
        let expired = auth.sign(&serde_json::json!({"state": "s2"}), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            auth.open::<serde_json::Value>(&expired).is_none(),
            "expired"
        );
    }

    #[tokio::test]
    async fn a_sign_in_state_is_used_once_across_replicas() {
        let (a, b, _) = replicas();
        assert!(a.claim_once("state-1", Duration::from_secs(60)).await);
        assert!(!b.claim_once("state-1", Duration::from_secs(60)).await);
        assert!(!a.claim_once("state-1", Duration::from_secs(60)).await);
        let lite = auth();
        assert!(lite.claim_once("state-2", Duration::from_secs(60)).await);
        assert!(!lite.claim_once("state-2", Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn a_revoked_session_is_refused_here_and_on_every_replica() {
        let lite = auth();
        let token = lite.issue("admin");
        assert!(lite.authenticate(&token).await.is_some());
        lite.revoke(&token).await;
        assert!(lite.authenticate(&token).await.is_none(), "Lite forgets it");
        assert!(lite.verify(&token).is_some(), "the signature is still good");

        let (a, b, _) = replicas();
        let token = a.issue("admin");
        assert!(a.authenticate(&token).await.is_some());
        a.revoke(&token).await;
        assert!(
            b.authenticate(&token).await.is_none(),
            "revoked on the other"
        );
        let other = a.issue("admin");
        assert!(
            b.authenticate(&other).await.is_some(),
            "shared keys; only that session"
        );
    }

    #[tokio::test]
    async fn a_replica_that_just_checked_a_session_sees_its_revocation_within_a_second() {
        let (a, b, _) = replicas();
        let token = a.issue("admin");
        assert!(b.authenticate(&token).await.is_some(), "checked on b");
        a.revoke(&token).await;
        assert!(
            b.authenticate(&token).await.is_some(),
            "b trusts its check for up to {REVOCATION_RECHECK:?}"
        );
        tokio::time::sleep(REVOCATION_RECHECK + Duration::from_millis(100)).await;
        assert!(b.authenticate(&token).await.is_none(), "then asks again");
    }

    #[tokio::test]
    async fn failed_logins_count_across_replicas_and_still_count_with_the_store_away() {
        let (a, b, shared) = replicas();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for i in 0..MAX_FAILURES {
            let replica = if i % 2 == 0 { &a } else { &b };
            let e = replica.login(Some(ip), "admin", "wrong").await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        }
        for replica in [&a, &b] {
            let blocked = replica.login(Some(ip), "admin", "pw").await.unwrap_err();
            assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
        }

        // The store away: each replica limits on its own, never lets attempts through freely.
        shared.away.store(true, Ordering::Relaxed);
        let ip: IpAddr = "10.0.0.10".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            let e = a.login(Some(ip), "admin", "wrong").await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        }
        let blocked = a.login(Some(ip), "admin", "pw").await.unwrap_err();
        assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
        // A session revoked through a replica while the store is away is refused there, and
        // on the others once the store is back.
        let token = a.issue("admin");
        a.revoke(&token).await;
        assert!(a.authenticate(&token).await.is_none());
        shared.away.store(false, Ordering::Relaxed);
        assert!(a.authenticate(&a.issue("admin")).await.is_some());
        assert!(b.authenticate(&token).await.is_none(), "shared once back");
    }
}
