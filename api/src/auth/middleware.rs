//! What a request presents and the middleware that checks it: the token (a bearer header or
//! the `_token` cookie), the rules a cookie-authenticated request must also pass (CSRF), and
//! the [`User`] handed to the handlers.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Algorithm;

use super::{TOKEN_COOKIE, User, session_cookie};
use crate::error::ApiError;
use crate::state::ApiState;

/// Where a request's token came from.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Presented {
    /// `Authorization: Bearer …`: sent by code that chose to, never by a browser on its own.
    Bearer(String),
    /// The `_token` cookie: a browser attaches it to any request to this site, so a request
    /// carrying only the cookie must prove it comes from the site's own pages.
    Cookie(String),
}

impl Presented {
    pub(super) fn token(&self) -> &str {
        match self {
            Self::Bearer(token) | Self::Cookie(token) => token,
        }
    }
}

/// The token of a request: its bearer token, else its `_token` cookie.
pub(super) fn token(headers: &HeaderMap) -> Option<Presented> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(Presented::Bearer(token.trim().to_owned()));
    }
    cookie(headers, TOKEN_COOKIE).map(Presented::Cookie)
}

/// The value of the cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_owned())
}

/// The session token a request presents (bearer or cookie).
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    token(headers).map(|presented| presented.token().to_owned())
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
    let known = request.extensions_mut().remove::<Authenticated>();
    let mut user = match known {
        Some(Authenticated(user)) => user,
        None => match authenticate(&state, &presented).await {
            Ok(user) => user,
            Err(refusal) => return refusal.into_response(),
        },
    };
    if matches!(presented, Presented::Cookie(_))
        && let Some(refusal) = cross_site_refusal(&request)
    {
        return refusal.into_response();
    }
    user.client = state.auth.client_address(&request);
    request.extensions_mut().insert(user);
    // A browser's single sign-on session is renewed while it is used.
    let renewal = match &presented {
        Presented::Cookie(token) => state
            .auth
            .renewed(token)
            .map(|renewed| session_cookie(&renewed, request.headers())),
        Presented::Bearer(_) => None,
    };
    let mut response = next.run(request).await;
    if let Some(cookie) = renewal.and_then(|cookie| cookie.parse().ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The user a request's token stands for, found before routing (by the tenant's names, which
/// must translate a path before the router reads it): [`require_user`] takes it rather than
/// checking the token twice.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub(crate) User);

/// The user the request's token stands for, if it presents a valid one; the refusal of any
/// other is [`require_user`]'s.
pub(crate) async fn presented_user(state: &ApiState, headers: &HeaderMap) -> Option<User> {
    authenticate(state, &token(headers)?).await.ok()
}

/// The user `presented` stands for: a Leoflow API token, a session this server issued, or
/// (single sign-on, bearer only) an access token from the OpenID provider.
async fn authenticate(state: &ApiState, presented: &Presented) -> Result<User, ApiError> {
    let token = presented.token();
    if crate::api_tokens::is_api_token(token) {
        return match crate::api_tokens::authenticate(state.store.pool(), token).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(ApiError::unauthorized("Invalid API token")),
            Err(error) => Err(ApiError::from(error)),
        };
    }
    if let Some(user) = state.auth.authenticate(token).await {
        return Ok(user);
    }
    match (&state.oidc, presented) {
        (Some(oidc), Presented::Bearer(token)) if !is_own_token(token) => {
            oidc.authenticate_bearer(token).await.map_err(|error| {
                tracing::debug!("a provider token was refused: {error}");
                ApiError::unauthorized("Invalid JWT token")
            })
        }
        _ => Err(ApiError::unauthorized("Invalid JWT token")),
    }
}

/// Whether `token` claims to be one this server signs (HS512): such a token that did not
/// verify is never handed to the provider's checks.
fn is_own_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|header| header.alg == Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

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
