//! Authentication as Airflow's simple auth manager does it, so the unmodified UI logs in: the
//! login page posts `{username, password}` to `POST /auth/token`, gets a JWT (HS512, audience
//! `apache-airflow`, 24 h) and keeps it in the `_token` cookie; API clients send it as
//! `Authorization: Bearer …`. Every `/api/v2` and `/ui` route but login, logout and the health
//! check refuses a request without a valid token (401, which sends the UI to the login page).
//! Failed logins are limited per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::credentials::Credentials;
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;

/// The cookie the UI keeps its token in (Airflow's `COOKIE_NAME_JWT_TOKEN`).
const TOKEN_COOKIE: &str = "_token";
/// The audience Airflow's tokens carry.
const AUDIENCE: &str = "apache-airflow";
/// How long a token is valid (Airflow's `jwt_expiration_time`).
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Failed logins allowed per client address within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
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
}

/// The authenticated user of a request, as its token names them (the middleware that checks
/// the token puts it in the request's extensions).
#[derive(Debug, Clone)]
pub struct User {
    /// Who the token was issued to (its `sub`): the actor of the events their changes append,
    /// and whose favourite DAGs the UI shows.
    pub username: String,
    /// Their role, as the token carries it (`admin` in Lite).
    pub role: String,
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
            hashing: tokio::sync::Semaphore::new(max_concurrent_hashes()),
        }
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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .expect("HS512 signs any claims")
    }

    /// The user a token stands for, if it is valid and unexpired.
    pub fn verify(&self, token: &str) -> Option<User> {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(User {
            username: data.claims.sub,
            role: data.claims.role,
        })
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
            self.reserve_attempt(ip)?;
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
        }
        Ok(self.issue(username))
    }

    /// Counts an attempt of `ip` as failed until it succeeds; refuses it (429) when the client
    /// already has [`MAX_FAILURES`] in the window.
    fn reserve_attempt(&self, ip: IpAddr) -> ApiResult<()> {
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
            return Err(ApiError::too_many(
                format!("Too many failed logins from {ip}; try again in {wait} s"),
                wait,
            ));
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

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where a request's token came from.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    /// `Authorization: Bearer …`: sent by code that chose to, never by a browser on its own.
    Bearer(String),
    /// The `_token` cookie: a browser attaches it to any request to this site, so a request
    /// carrying only the cookie must prove it comes from the site's own pages.
    Cookie(String),
}

impl Presented {
    fn token(&self) -> &str {
        match self {
            Self::Bearer(token) | Self::Cookie(token) => token,
        }
    }
}

/// The token of a request: its bearer token, else its `_token` cookie.
fn token(headers: &HeaderMap) -> Option<Presented> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(Presented::Bearer(token.trim().to_owned()));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| Presented::Cookie(value.to_owned()))
}

/// Why a state-changing request authenticated by the cookie alone is refused, if it is:
/// another site's page (a form, a script) made it, or its body is not JSON — the only body a
/// cross-site HTML form cannot send, and the only one the UI sends.
fn cross_site_refusal(request: &Request) -> Option<ApiError> {
    if request.method().is_safe() {
        return None;
    }
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let same_site = match (text("sec-fetch-site"), text("origin")) {
        (Some(site), _) => matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => {
            let authority = origin.split_once("://").map(|(_, rest)| rest);
            authority.is_some() && authority == text("host")
        }
        // Neither header: not a browser (browsers send Origin with every POST, PUT, PATCH
        // and DELETE), so not a forgery riding on a victim's cookie.
        (None, None) => true,
    };
    if !same_site {
        return Some(ApiError::detail(
            StatusCode::FORBIDDEN,
            "Cross-site request refused: a request authenticated by the session cookie must come \
             from this site's own pages",
        ));
    }
    let has_body = text("transfer-encoding").is_some()
        || text("content-length").is_some_and(|length| length.trim() != "0");
    let json = text("content-type").is_some_and(|kind| {
        let mime = kind.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/json")
    });
    (has_body && !json).then(|| {
        ApiError::detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type: a request authenticated by the session cookie must send \
             application/json",
        )
    })
}

/// Middleware: lets only requests with a valid token through; a cookie-authenticated request
/// that changes state must also pass [`cross_site_refusal`].
pub(crate) async fn require_user(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(presented) = token(request.headers()) else {
        return ApiError::unauthorized("Not authenticated").into_response();
    };
    let Some(user) = state.auth.verify(presented.token()) else {
        return ApiError::unauthorized("Invalid JWT token").into_response();
    };
    if matches!(presented, Presented::Cookie(_))
        && let Some(refusal) = cross_site_refusal(&request)
    {
        return refusal.into_response();
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// The session cookie for `token`: `SameSite=Lax` so other sites' forms and scripts do not
/// carry it, `HttpOnly` so page scripts cannot read it (the UI never does; its login page's
/// own attempt to write the cookie is then ignored by the browser, keeping these attributes),
/// `Secure` when the request came over https.
fn session_cookie(token: &str, headers: &HeaderMap) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    format!("{TOKEN_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly{secure}")
}

/// The body `POST /auth/token` takes (JSON or a form).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// `POST /auth/token`: a token for valid credentials (201), else 401.
pub(crate) async fn create_token(
    State(state): State<ApiState>,
    request: Request,
) -> ApiResult<Response> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = request.headers().clone();
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request("the login body is too large"))?;
    let body: LoginBody = if form {
        let params = Params::parse(&String::from_utf8_lossy(&bytes))?;
        let field = |name: &str| {
            params.str(name).map(str::to_owned).ok_or_else(|| {
                ApiError::invalid(
                    &["body", name],
                    "missing",
                    "Field required",
                    serde_json::Value::Null,
                )
            })
        };
        LoginBody {
            username: field("username")?,
            password: field("password")?,
        }
    } else {
        crate::body::parse(&bytes)?
    };
    let token = state
        .auth
        .login(client, &body.username, &body.password)
        .await?;
    let cookie = session_cookie(&token, &headers);
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        axum::Json(LoginResponse {
            access_token: token,
        }),
    )
        .into_response())
}

/// Airflow's `LoginResponse`.
#[derive(Debug, Serialize)]
struct LoginResponse {
    access_token: String,
}

/// `GET /api/v2/auth/login?next=…`: to the login page, keeping where to go afterwards.
pub(crate) async fn login_redirect(params: Params) -> Response {
    let next = params.str("next").unwrap_or("/");
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    Redirect::temporary(&format!("/auth/login?{query}")).into_response()
}

/// `GET /api/v2/auth/logout`: forgets the session cookie and goes to the login page.
pub(crate) async fn logout() -> Response {
    let mut response = Redirect::temporary("/auth/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        format!("{TOKEN_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly")
            .parse()
            .expect("a valid header"),
    );
    response
}

#[cfg(test)]
mod tests {
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

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri("/api/v2/x");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn cookie_requests_that_change_state_must_be_same_site_json() {
        let refused = |method, headers: &[(&str, &str)]| {
            cross_site_refusal(&request(method, headers)).map(|e| e.status().as_u16())
        };
        let json = ("content-type", "application/json");
        let sized = ("content-length", "2");
        let host = ("host", "leoflow.example:8088");
        assert_eq!(refused("GET", &[("sec-fetch-site", "cross-site")]), None);
        assert_eq!(
            refused("POST", &[("sec-fetch-site", "same-origin"), json, sized]),
            None
        );
        assert_eq!(
            refused("POST", &[("sec-fetch-site", "cross-site"), json, sized]),
            Some(403)
        );
        assert_eq!(
            refused("POST", &[("sec-fetch-site", "same-site"), json, sized]),
            Some(403)
        );
        let same = ("origin", "http://leoflow.example:8088");
        assert_eq!(refused("PATCH", &[same, host, json, sized]), None);
        let other = ("origin", "http://evil.example");
        assert_eq!(refused("PATCH", &[other, host, json, sized]), Some(403));
        assert_eq!(refused("DELETE", &[("origin", "null"), host]), Some(403));
        let plain = ("content-type", "text/plain");
        assert_eq!(refused("POST", &[same, host, plain, sized]), Some(415));
        assert_eq!(refused("POST", &[same, host, sized]), Some(415));
        assert_eq!(
            refused("DELETE", &[same, host]),
            None,
            "no body, no type needed"
        );
        let charset = ("content-type", "application/json; charset=utf-8");
        assert_eq!(refused("PUT", &[same, host, charset, sized]), None);
    }

    #[test]
    fn the_session_cookie_is_lax_http_only_and_secure_behind_https() {
        let mut headers = HeaderMap::new();
        let cookie = session_cookie("t", &headers);
        assert_eq!(cookie, "_token=t; Path=/; SameSite=Lax; HttpOnly");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(session_cookie("t", &headers).ends_with("; Secure"));
    }

    #[test]
    fn tokens_come_from_bearer_headers_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; _token=from-cookie".parse().unwrap());
        assert_eq!(
            token(&headers),
            Some(Presented::Cookie("from-cookie".into()))
        );
        headers.insert(header::AUTHORIZATION, "Bearer from-header".parse().unwrap());
        assert_eq!(
            token(&headers),
            Some(Presented::Bearer("from-header".into()))
        );
    }
}
