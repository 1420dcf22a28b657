//! The browser's side of single sign-on: the UI's login redirect starts an authorization code
//! flow with PKCE, the callback finishes it into Leoflow's session cookie, logout ends both
//! sessions. What the callback must check (state, nonce, PKCE verifier, where to go after) rides
//! in a signed, short-lived, HttpOnly cookie, so any replica can finish a sign-in another began;
//! each state is used once, on every replica (the shared store).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, Scope,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use super::{IdToken, Oidc, OidcError};
use crate::auth::{self, User};
use crate::query::Params;
use crate::state::ApiState;

/// The cookie carrying a sign-in in progress.
const LOGIN_COOKIE: &str = "_leoflow_oidc";
/// How long a sign-in may take at the provider.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// What the callback needs to finish a sign-in (signed by the server's session key).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LoginState {
    /// The `state` sent to the provider (and the sign-in's one-time id).
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// Where the UI was when it needed a sign-in (a path on this site).
    pub next: String,
}

/// `GET /api/v2/auth/login?next=…` (and `/auth/login`) in `oidc` mode: to the provider.
pub(crate) async fn begin(State(state): State<ApiState>, params: Params) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return error_page(StatusCode::NOT_FOUND, "Single sign-on is not configured.");
    };
    let next = same_site_path(params.str("next"), &oidc.settings().base_url);
    let discovered = match oidc.current().await {
        Ok(discovered) => discovered,
        Err(error) => return unavailable(&error),
    };
    let client = match oidc.client(&discovered) {
        Ok(client) => client,
        Err(error) => return unavailable(&error),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in oidc.settings().scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let login = LoginState {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next,
    };
    let cookie = state.auth.sign(&login, LOGIN_LIFETIME);
    let mut response = Redirect::to(url.as_str()).into_response();
    set_cookie(&mut response, &login_cookie(&cookie, LOGIN_LIFETIME));
    response
}

/// `GET /auth/oidc/callback?code=…&state=…`: checks the sign-in, then to where the UI was,
/// with Leoflow's session in the `_token` cookie.
pub(crate) async fn callback(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let Some(oidc) = state.oidc.as_ref() else {
        return error_page(StatusCode::NOT_FOUND, "Single sign-on is not configured.");
    };
    let finished = finish(&state, oidc, &headers, &params).await;
    let mut response = match finished {
        Ok((user, next)) => {
            tracing::info!(
                subject = %user.username,
                role = %user.role,
                tenant = user.tenant.as_deref().unwrap_or_default(),
                "signed in through {}",
                oidc.settings().issuer
            );
            let token = state.auth.issue_session(&user);
            let mut response = Redirect::to(&next).into_response();
            set_cookie(&mut response, &auth::session_cookie(&token, &headers));
            response
        }
        Err(Failure::Unavailable(error)) => unavailable(&error),
        Err(Failure::Refused(message)) => {
            tracing::warn!("a sign-in was refused: {message}");
            error_page(
                StatusCode::UNAUTHORIZED,
                &format!("The sign-in was refused: {message}."),
            )
        }
    };
    // The sign-in in progress is over, whatever its outcome.
    set_cookie(&mut response, &login_cookie("", Duration::ZERO));
    response
}

/// Why a callback did not sign anyone in.
#[derive(Debug)]
enum Failure {
    Unavailable(OidcError),
    Refused(String),
}

impl From<OidcError> for Failure {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::Refused(message) => Failure::Refused(message),
            unavailable => Failure::Unavailable(unavailable),
        }
    }
}

async fn finish(
    state: &ApiState,
    oidc: &Oidc,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(User, String), Failure> {
    if let Some(error) = params.str("error") {
        let description = params.str("error_description").unwrap_or_default();
        return Err(Failure::Refused(format!(
            "the provider answered {error} {description}"
        )));
    }
    let login: LoginState = auth::cookie(headers, LOGIN_COOKIE)
        .and_then(|cookie| state.auth.open(&cookie))
        .ok_or_else(|| {
            Failure::Refused(
                "this sign-in was not started here or took longer than 10 minutes; start again"
                    .into(),
            )
        })?;
    let returned = params.str("state").unwrap_or_default();
    if !leoflow_events::digest::equal_in_constant_time(returned.as_bytes(), login.state.as_bytes())
    {
        return Err(Failure::Refused(
            "the state does not match the sign-in this browser started".into(),
        ));
    }
    if let Some(iss) = params.str("iss")
        && iss.trim_end_matches('/') != oidc.settings().issuer.trim_end_matches('/')
    {
        return Err(Failure::Refused(format!("the answer came from {iss}")));
    }
    if !state
        .auth
        .claim_once(&format!("oidc-state:{}", login.state), LOGIN_LIFETIME)
        .await
    {
        return Err(Failure::Refused("this sign-in was already used".into()));
    }
    let code = params
        .str("code")
        .ok_or_else(|| Failure::Refused("the provider sent no code".into()))?;
    let raw = exchange(oidc, code, &login.verifier).await?;
    let user = verify_id_token(oidc, &raw, &login.nonce).await?;
    Ok((user, login.next))
}

/// Exchanges the code (with the PKCE verifier) for the provider's tokens; the ID token, as
/// sent.
async fn exchange(oidc: &Oidc, code: &str, verifier: &str) -> Result<String, Failure> {
    let discovered = oidc.current().await?;
    let client = oidc.client(&discovered)?;
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| oidc.unavailable(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
    let tokens = request.request_async(&oidc.http).await.map_err(|error| {
        use openidconnect::RequestTokenError;
        match error {
            RequestTokenError::ServerResponse(answer) => {
                Failure::Refused(format!("the provider refused the code: {}", answer.error()))
            }
            other => Failure::Unavailable(oidc.unavailable(format!("its token endpoint: {other}"))),
        }
    })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| Failure::Refused("the provider sent no ID token".into()))?;
    Ok(id_token.to_string())
}

/// The user an ID token stands for, if it verifies: signature by one of the provider's keys
/// (fetched again once when it names a key they lack), issuer, audience, expiry, nonce.
async fn verify_id_token(oidc: &Oidc, raw: &str, nonce: &str) -> Result<User, Failure> {
    let token: IdToken = raw
        .parse()
        .map_err(|e| Failure::Refused(format!("the ID token is malformed: {e}")))?;
    let nonce = Nonce::new(nonce.to_owned());
    let discovered = oidc.current().await?;
    let claims = match check_id_token(oidc, &discovered, &token, &nonce) {
        Err(Rejection::UnknownKey) => {
            let kid = jsonwebtoken::decode_header(raw).ok().and_then(|h| h.kid);
            let fresh = oidc
                .refetch_for_unknown_key(kid.as_deref())
                .await
                .ok_or_else(|| Failure::Refused("the ID token names an unknown key".into()))?;
            check_id_token(oidc, &fresh, &token, &nonce)
        }
        checked => checked,
    }
    .map_err(|rejection| Failure::Refused(rejection.to_string()))?;
    Ok(oidc.settings().role_map.user(oidc.settings(), &claims))
}

/// Why an ID token was refused.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("the ID token names an unknown key")]
    UnknownKey,
    #[error("the ID token does not verify: {0}")]
    Invalid(String),
}

/// The ID token's claims (as JSON) if it verifies against `discovered`'s keys.
fn check_id_token(
    oidc: &Oidc,
    discovered: &super::Discovered,
    token: &IdToken,
    nonce: &Nonce,
) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
    use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
    let client = oidc
        .client(discovered)
        .map_err(|e| Rejection::Invalid(e.to_string()))?;
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(super::allowed_signing_algorithms());
    let claims = token
        .claims(&verifier, nonce)
        .map_err(|error| match error {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => Rejection::UnknownKey,
            other => Rejection::Invalid(other.to_string()),
        })?;
    match serde_json::to_value(claims) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Invalid("its claims are not an object".into())),
    }
}

/// `GET /api/v2/auth/logout` in `oidc` mode: ends Leoflow's session (on every replica), then
/// the provider's, through its end-session endpoint when it has one.
pub(crate) async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(token) = auth::session_token(&headers) {
        state.auth.revoke(&token).await;
    }
    let Some(oidc) = state.oidc.as_ref() else {
        return error_page(StatusCode::NOT_FOUND, "Single sign-on is not configured.");
    };
    let signed_out = oidc.settings().signed_out_uri();
    let target = match oidc.end_session_endpoint().await {
        Some(endpoint) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("client_id", &oidc.settings().client_id)
                .append_pair("post_logout_redirect_uri", &signed_out)
                .finish();
            let separator = if endpoint.contains('?') { '&' } else { '?' };
            format!("{endpoint}{separator}{query}")
        }
        None => signed_out,
    };
    let mut response = Redirect::to(&target).into_response();
    set_cookie(&mut response, &auth::cleared_session_cookie());
    response
}

/// `GET /auth/oidc/signed-out`: where the provider sends the browser after signing out.
pub(crate) async fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "Signed out",
        "<p>You are signed out of Leoflow.</p><p><a href=\"/\">Sign in again</a></p>",
    )
}

/// `POST /auth/token` in `oidc` mode: no passwords; people sign in at the provider.
pub(crate) async fn no_passwords() -> Response {
    crate::error::ApiError::detail(
        StatusCode::NOT_FOUND,
        "Password sign-in is off: this server signs people in through its OpenID provider \
         (auth.mode: oidc); machines use the provider's access tokens or Leoflow API tokens",
    )
    .into_response()
}

/// `next` when it is a path on this site (relative, or absolute under `base_url`), else `/`:
/// a sign-in never ends on another site.
fn same_site_path(next: Option<&str>, base_url: &str) -> String {
    let Some(next) = next else {
        return "/".into();
    };
    let base = base_url.trim_end_matches('/');
    let path = match next.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        Some(_) => return "/".into(),
        None => next,
    };
    let safe = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control);
    if safe && !path.is_empty() {
        path.to_owned()
    } else {
        "/".into()
    }
}

fn login_cookie(value: &str, lifetime: Duration) -> String {
    format!(
        "{LOGIN_COOKIE}={value}; Path=/auth/oidc; Max-Age={}; SameSite=Lax; HttpOnly",
        lifetime.as_secs()
    )
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn unavailable(error: &OidcError) -> Response {
    tracing::warn!("{error}");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{error}. Try again in a moment; if it lasts, tell the platform team."),
    )
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<p>{}</p><p><a href=\"/api/v2/auth/login\">Sign in again</a></p>",
        escape(message)
    );
    page(status, "Cannot sign in", &body)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · Leoflow</title>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_only_ends_on_this_site() {
        let base = "https://leoflow.example.com";
        let cases = [
            (None, "/"),
            (Some("/dags/etl?tab=runs"), "/dags/etl?tab=runs"),
            (Some("https://leoflow.example.com/dags"), "/dags"),
            (Some("https://leoflow.example.com"), "/"),
            (Some("https://leoflow.example.com.evil.org/x"), "/"),
            (Some("https://evil.org/"), "/"),
            (Some("//evil.org/"), "/"),
            (Some("/\\evil.org"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/a\r\nSet-Cookie: x=y"), "/"),
        ];
        for (next, expected) in cases {
            assert_eq!(same_site_path(next, base), expected, "{next:?}");
        }
    }

    use serde_json::json;

    use crate::oidc::testing::*;

    fn id_claims() -> serde_json::Value {
        json!({
            "iss": ISSUER, "aud": "leoflow", "sub": "alice", "name": "Alice Admin",
            "iat": now(), "exp": now() + 300, "nonce": "the-nonce",
            "groups": ["admins"], "tenant": "acme",
        })
    }

    #[tokio::test]
    async fn a_verified_id_token_names_the_person_their_role_and_tenant() {
        let oidc = provider().await;
        let token = signed(&id_claims(), PROVIDER_KEY, KID);
        let user = verify_id_token(&oidc, &token, "the-nonce").await.unwrap();
        assert_eq!(
            (
                user.username.as_str(),
                user.display_name.as_str(),
                user.role.as_str()
            ),
            ("alice", "Alice Admin", "Admin")
        );
        assert_eq!(user.tenant.as_deref(), Some("acme"));
    }

    #[tokio::test]
    async fn forged_expired_unsigned_misaddressed_and_replayed_id_tokens_are_refused() {
        let oidc = provider().await;
        let good = id_claims();
        let cases = [
            ("forged", signed(&good, OTHER_KEY, KID), "does not verify"),
            (
                "unknown key",
                signed(&good, PROVIDER_KEY, "gone"),
                "unknown key",
            ),
            ("alg none", unsigned(&good), ""),
            (
                "expired",
                signed(
                    &with(good.clone(), "exp", json!(now() - 120)),
                    PROVIDER_KEY,
                    KID,
                ),
                "Expired",
            ),
            (
                "wrong audience",
                signed(
                    &with(good.clone(), "aud", json!("someone-else")),
                    PROVIDER_KEY,
                    KID,
                ),
                "audience",
            ),
            (
                "wrong issuer",
                signed(
                    &with(good.clone(), "iss", json!("https://evil.example.com")),
                    PROVIDER_KEY,
                    KID,
                ),
                "issuer",
            ),
            // Another sign-in's token (its nonce): a replayed ID token.
            (
                "replayed",
                signed(
                    &with(good.clone(), "nonce", json!("another-sign-in")),
                    PROVIDER_KEY,
                    KID,
                ),
                "nonce",
            ),
            ("not a token", "abc".to_owned(), "malformed"),
        ];
        for (what, token, reason) in cases {
            match verify_id_token(&oidc, &token, "the-nonce").await {
                Err(Failure::Refused(message)) => {
                    assert!(message.contains(reason), "{what}: {message}")
                }
                other => panic!("{what} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn error_pages_escape_what_they_quote() {
        assert_eq!(escape("<script>\"&"), "&lt;script&gt;&quot;&amp;");
    }
}

/// Where `leoflow login` learns how this server signs people in.
pub const CLI_LOGIN_PATH: &str = "/leoflow/api/login";

/// What `GET /leoflow/api/login` answers: the admin's password login, or the provider and the
/// public client the CLI signs people in with through the device flow (no secret).
#[derive(Debug, Serialize)]
pub struct CliLogin {
    /// `admin` or `oidc`.
    pub mode: &'static str,
    /// The provider's issuer (single sign-on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The public client of the device flow, when the server names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The audience (resource) the access tokens must be for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The scopes to ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `GET /leoflow/api/login` (public: it holds nothing secret).
pub async fn cli_login(State(state): State<ApiState>) -> axum::Json<CliLogin> {
    axum::Json(match &state.oidc {
        None => CliLogin {
            mode: "admin",
            issuer: None,
            client_id: None,
            audience: None,
            scopes: None,
        },
        Some(oidc) => {
            let settings = oidc.settings();
            CliLogin {
                mode: "oidc",
                issuer: Some(settings.issuer.clone()),
                client_id: settings.cli_client_id.clone(),
                audience: Some(settings.audience.clone()),
                scopes: Some(settings.scopes.clone()),
            }
        }
    })
}
