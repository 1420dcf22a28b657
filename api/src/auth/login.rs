//! The password login of `auth.mode: admin` and Lite, as Airflow's simple auth manager has it
//! (`POST /auth/token`, the login page's redirect, logout), and the session cookie single
//! sign-on sets too.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::TOKEN_COOKIE;
use super::middleware::token;
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;

/// The session cookie for `token`: `SameSite=Lax` so other sites' forms and scripts do not
/// carry it, `HttpOnly` so page scripts cannot read it (the UI never does; its login page's
/// own attempt to write the cookie is then ignored by the browser, keeping these attributes),
/// `Secure` when the request came over https.
pub(crate) fn session_cookie(token: &str, headers: &HeaderMap) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    format!("{TOKEN_COOKIE}={token}; Path=/; SameSite=Lax; HttpOnly{secure}")
}

/// A `Set-Cookie` value that makes the browser forget its session.
pub(crate) fn cleared_session_cookie() -> String {
    format!("{TOKEN_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly")
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
    // The address the audit trail records for this client's requests, so a client behind a
    // trusted proxy is limited by its own address, not the proxy's (which all clients share).
    let client = state.auth.client_address(&request);
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

/// `GET /api/v2/auth/logout`: revokes the session (on every replica), forgets its cookie and
/// goes to the login page.
pub(crate) async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(presented) = token(&headers) {
        state.auth.revoke(presented.token()).await;
    }
    let mut response = Redirect::temporary("/auth/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cleared_session_cookie().parse().expect("a valid header"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_lax_http_only_and_secure_behind_https() {
        let mut headers = HeaderMap::new();
        let cookie = session_cookie("t", &headers);
        assert_eq!(cookie, "_token=t; Path=/; SameSite=Lax; HttpOnly");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(session_cookie("t", &headers).ends_with("; Secure"));
    }
}
