//! Single sign-on over OpenID Connect (Pro's `auth.mode: oidc`).
//!
//! People sign in with the authorization code flow and PKCE ([`login`]): the UI's login
//! redirect sends the browser to the provider, the callback checks the state, exchanges the
//! code, verifies the ID token (signature by the provider's keys, issuer, audience, expiry,
//! nonce) and sets Leoflow's own short-lived session in the `_token` cookie the UI expects.
//! Machines (CI, GitOps) send the provider's access tokens, from the client-credentials grant,
//! as `Authorization: Bearer`: [`Oidc::authenticate_bearer`] verifies them against the same
//! keys. The provider's metadata and keys are fetched once and again when a token names a key
//! they do not hold (the provider rotated its keys). Roles and tenants come from the tokens'
//! claims through [`claims::RoleMap`].

pub mod claims;
pub mod login;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, Client, ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, ProviderMetadataWithLogout, RedirectUrl,
    StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::User;
use claims::RoleMap;

/// How long fetched metadata and keys are used before they are fetched again.
const METADATA_LIFETIME: Duration = Duration::from_secs(3600);
/// The least time between two fetches a token with an unknown key causes: a stream of tokens
/// naming keys that do not exist must not become a stream of requests to the provider. A
/// token arriving sooner waits for the gap to pass rather than being refused, so a sign-in
/// right after the provider rotated its keys still succeeds.
const REFETCH_GAP: Duration = Duration::from_secs(2);
/// How long a call to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock difference tolerated between the provider and this server.
const LEEWAY_SECONDS: u64 = 30;
/// The signature algorithms accepted from the provider: asymmetric only, so a token "signed"
/// with a public key as an HMAC secret, or not at all (`alg: none`), never verifies.
const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Single sign-on's settings (`auth.oidc.*` in the server's configuration).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's issuer URL (its discovery document is under it).
    pub issuer: String,
    /// Leoflow's client id at the provider.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The scopes a sign-in asks for (`openid` is always asked for).
    pub scopes: Vec<String>,
    /// The claim holding a person's or machine's groups or roles.
    pub roles_claim: String,
    /// The claim holding their tenant.
    pub tenant_claim: String,
    /// Claim values → Airflow roles (and tenants).
    pub role_map: RoleMap,
    /// The audience machines' access tokens must carry (default: the client id).
    pub audience: String,
    /// Where people reach Leoflow (`https://leoflow.example.com`): the callback and the page
    /// after sign-out are under it.
    pub base_url: String,
    /// The provider's public client `leoflow login` signs people in with (the device flow).
    pub cli_client_id: Option<String>,
}

impl OidcSettings {
    /// The redirect URI registered at the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/oidc/callback", self.base_url.trim_end_matches('/'))
    }

    /// Where the provider sends the browser after signing out.
    pub fn signed_out_uri(&self) -> String {
        format!(
            "{}/auth/oidc/signed-out",
            self.base_url.trim_end_matches('/')
        )
    }
}

/// Every claim of a token, beyond the standard ones openidconnect types.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims(#[serde(default)] pub Map<String, Value>);

impl AdditionalClaims for ExtraClaims {}

type IdTokenFieldsExtra = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// The token endpoint's answer, its ID token carrying every claim.
type TokenResponse = StandardTokenResponse<IdTokenFieldsExtra, CoreTokenType>;
/// An ID token whose extra claims are kept.
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// The client a sign-in uses, built from the provider's metadata.
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What went wrong talking to the provider or checking what it sent.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider cannot be reached or answered something unusable.
    #[error("the sign-in provider at {issuer} cannot be used: {reason}")]
    Unavailable {
        /// Its issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// A token or an answer was refused.
    #[error("{0}")]
    Refused(String),
}

/// The provider's metadata and keys, as last fetched.
struct Discovered {
    metadata: ProviderMetadataWithLogout,
    /// The same keys as the metadata's, for verifying access tokens.
    keys: JwkSet,
    fetched_at: Instant,
}

/// The provider, as this server knows it.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
    /// When a fetch was last made (success or not): see [`REFETCH_GAP`].
    last_fetch: Mutex<Option<Instant>>,
    /// Held while fetching for an unknown key: one such fetch at a time.
    refetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// The provider `settings` name (nothing is fetched yet).
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer send this server anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .expect("a client with rustls builds");
        Self {
            settings,
            http,
            discovered: tokio::sync::RwLock::new(None),
            last_fetch: Mutex::new(None),
            refetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Fetches the provider's metadata and keys now (at start-up: a provider that is down
    /// then is only warned about; sign-ins fetch again).
    pub async fn discover(&self) -> Result<(), OidcError> {
        self.fetch().await.map(|_| ())
    }

    /// The metadata and keys: cached, or fetched when there are none or they are old.
    async fn current(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(discovered) = self.discovered.read().await.as_ref()
            && discovered.fetched_at.elapsed() < METADATA_LIFETIME
        {
            return Ok(discovered.clone());
        }
        self.fetch().await
    }

    /// The metadata and keys fetched again after a token named the key `kid` the cached set
    /// lacks (the provider rotated its keys): at most one fetch per [`REFETCH_GAP`], callers
    /// waiting for it in turn; `None` when the fetch failed.
    async fn refetch_for_unknown_key(&self, kid: Option<&str>) -> Option<Arc<Discovered>> {
        let asked = Instant::now();
        let _turn = self.refetching.lock().await;
        // Another caller may have fetched the key while this one waited its turn.
        if let Some(discovered) = self.discovered.read().await.as_ref()
            && discovered.fetched_at >= asked
            && find_key(&discovered.keys, kid).is_some()
        {
            return Some(discovered.clone());
        }
        let last = *self.last_fetch.lock().expect("not poisoned");
        if let Some(at) = last {
            tokio::time::sleep(REFETCH_GAP.saturating_sub(at.elapsed())).await;
        }
        match self.fetch().await {
            Ok(discovered) => Some(discovered),
            Err(error) => {
                tracing::warn!("{error}");
                None
            }
        }
    }

    async fn fetch(&self) -> Result<Arc<Discovered>, OidcError> {
        *self.last_fetch.lock().expect("not poisoned") = Some(Instant::now());
        let issuer = self.settings.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let mut metadata: ProviderMetadataWithLogout = self.get_json(&url).await?;
        if metadata.issuer().as_str().trim_end_matches('/') != issuer {
            return Err(self.unavailable(format!(
                "its discovery document names the issuer {}, not {issuer}",
                metadata.issuer().as_str()
            )));
        }
        let keys_text = self.get_text(metadata.jwks_uri().url().as_str()).await?;
        let core_keys: CoreJsonWebKeySet = serde_json::from_str(&keys_text)
            .map_err(|e| self.unavailable(format!("its key set is not valid: {e}")))?;
        let keys: JwkSet = serde_json::from_str(&keys_text)
            .map_err(|e| self.unavailable(format!("its key set is not valid: {e}")))?;
        metadata = metadata.set_jwks(core_keys);
        let discovered = Arc::new(Discovered {
            metadata,
            keys,
            fetched_at: Instant::now(),
        });
        *self.discovered.write().await = Some(discovered.clone());
        Ok(discovered)
    }

    async fn get_text(&self, url: &str) -> Result<String, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unavailable(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(self.unavailable(format!("GET {url} answered {}", response.status())));
        }
        response
            .text()
            .await
            .map_err(|e| self.unavailable(format!("GET {url}: {e}")))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let text = self.get_text(url).await?;
        serde_json::from_str(&text).map_err(|e| self.unavailable(format!("{url}: {e}")))
    }

    fn unavailable(&self, reason: impl Into<String>) -> OidcError {
        OidcError::Unavailable {
            issuer: self.settings.issuer.clone(),
            reason: reason.into(),
        }
    }

    /// The client a sign-in uses.
    fn client(&self, discovered: &Discovered) -> Result<OidcClient, OidcError> {
        let redirect = RedirectUrl::new(self.settings.redirect_uri())
            .map_err(|e| OidcError::Refused(format!("base_url: {e}")))?;
        Ok(OidcClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's end-session endpoint, if it has one.
    async fn end_session_endpoint(&self) -> Option<String> {
        let discovered = self.current().await.ok()?;
        discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|url| url.url().to_string())
    }

    /// The user a provider's access token (from the client-credentials grant) stands for, if
    /// it verifies: signed by one of the provider's keys with an asymmetric algorithm, issued
    /// by the provider, for [`OidcSettings::audience`], unexpired, and not an ID token.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<User, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Refused(format!("not a token: {e}")))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::Refused(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut discovered = self.current().await?;
        let key = match find_key(&discovered.keys, header.kid.as_deref()) {
            Some(key) => key,
            None => {
                discovered = self
                    .refetch_for_unknown_key(header.kid.as_deref())
                    .await
                    .ok_or_else(|| OidcError::Refused("signed by an unknown key".into()))?;
                find_key(&discovered.keys, header.kid.as_deref())
                    .ok_or_else(|| OidcError::Refused("signed by an unknown key".into()))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[discovered.metadata.issuer().as_str()]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| OidcError::Refused(format!("the token does not verify: {e}")))?
            .claims;
        if claims.contains_key("nonce") {
            return Err(OidcError::Refused(
                "an ID token is not an access token".into(),
            ));
        }
        Ok(self.settings.role_map.user(&self.settings, &claims))
    }
}

/// [`ALLOWED_ALGORITHMS`] as openidconnect names them (for ID tokens).
fn allowed_signing_algorithms() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    vec![
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
        A::EdDsa,
    ]
}

/// The decoding key `kid` names (the only key, when the token names none and there is one).
fn find_key(keys: &JwkSet, kid: Option<&str>) -> Option<DecodingKey> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return None,
    };
    DecodingKey::from_jwk(jwk).ok()
}

/// Checks a provider's issuer URL as the configuration gives it.
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("{issuer:?} is not a URL: {e}"))?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(format!("{issuer:?} is not an http(s) URL"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A provider known without fetching: its metadata and a test-only key pair (the private
    //! key lives only in `testdata/`, for signing tokens in tests).

    use super::*;

    /// Nothing listens there: a fetch for an unknown key fails at once.
    pub const ISSUER: &str = "http://127.0.0.1:9";
    pub const KID: &str = "test-key-1";
    pub const PROVIDER_KEY: &[u8] = include_bytes!("testdata/provider-key.der");
    pub const OTHER_KEY: &[u8] = include_bytes!("testdata/other-key.der");
    const JWKS: &str = include_str!("testdata/provider-jwks.json");

    pub fn settings() -> OidcSettings {
        OidcSettings {
            issuer: ISSUER.into(),
            client_id: "leoflow".into(),
            client_secret: "client-secret".into(),
            scopes: vec!["openid".into(), "groups".into()],
            roles_claim: "groups".into(),
            tenant_claim: "tenant".into(),
            role_map: RoleMap::from_value(serde_json::json!({
                "admins": "Admin", "ops": "Op", "viewers": "Viewer"
            }))
            .unwrap(),
            audience: "urn:leoflow:api".into(),
            base_url: "https://leoflow.example.com".into(),
            cli_client_id: None,
        }
    }

    /// The provider of [`settings`], its metadata and keys already known (a token naming
    /// another key makes it fetch them again, which fails: nothing listens at [`ISSUER`]).
    pub async fn provider() -> Oidc {
        let oidc = Oidc::new(settings());
        let metadata: ProviderMetadataWithLogout = serde_json::from_value(serde_json::json!({
            "issuer": ISSUER,
            "authorization_endpoint": format!("{ISSUER}/auth"),
            "token_endpoint": format!("{ISSUER}/token"),
            "jwks_uri": format!("{ISSUER}/jwks"),
            "end_session_endpoint": format!("{ISSUER}/session/end"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .unwrap();
        let metadata = metadata.set_jwks(serde_json::from_str(JWKS).unwrap());
        *oidc.discovered.write().await = Some(Arc::new(Discovered {
            metadata,
            keys: serde_json::from_str(JWKS).unwrap(),
            fetched_at: Instant::now(),
        }));
        oidc
    }

    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// `claims` signed RS256 by `key`, naming `kid`.
    pub fn signed(claims: &Value, key: &[u8], kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = jsonwebtoken::EncodingKey::from_rsa_der(key);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// `claims` with `key` set to `value`.
    pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    /// `claims` with `alg: none` and no signature.
    pub fn unsigned(claims: &Value) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{KID}"}}"#));
        format!("{header}.{}.", b64.encode(claims.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::*;

    fn access_claims() -> serde_json::Value {
        json!({
            "iss": ISSUER, "aud": "urn:leoflow:api", "sub": "ci-robot", "client_id": "ci-robot",
            "jti": "at-1", "iat": now(), "exp": now() + 300, "groups": ["ops"], "tenant": "acme",
        })
    }

    #[tokio::test]
    async fn a_provider_access_token_signs_in_a_machine_with_its_mapped_role() {
        let oidc = provider().await;
        let token = signed(&access_claims(), PROVIDER_KEY, KID);
        let user = oidc.authenticate_bearer(&token).await.unwrap();
        assert_eq!(user.username, "ci-robot");
        assert_eq!(user.display_name, "ci-robot");
        assert_eq!(user.role, "Op");
        assert_eq!(user.tenant.as_deref(), Some("acme"));
        assert_eq!(user.token_id.as_deref(), Some("at-1"));
    }

    #[tokio::test]
    async fn forged_expired_unsigned_misaddressed_and_id_tokens_are_refused() {
        let oidc = provider().await;
        let good = access_claims();
        let cases = [
            ("forged", signed(&good, OTHER_KEY, KID)),
            ("unknown key", signed(&good, PROVIDER_KEY, "rotated-away")),
            ("alg none", unsigned(&good)),
            (
                "expired",
                signed(
                    &with(good.clone(), "exp", json!(now() - 120)),
                    PROVIDER_KEY,
                    KID,
                ),
            ),
            (
                "wrong audience",
                signed(
                    &with(good.clone(), "aud", json!("leoflow-other")),
                    PROVIDER_KEY,
                    KID,
                ),
            ),
            (
                "wrong issuer",
                signed(
                    &with(good.clone(), "iss", json!("https://evil.example.com")),
                    PROVIDER_KEY,
                    KID,
                ),
            ),
            (
                "an ID token",
                signed(&with(good.clone(), "nonce", json!("n")), PROVIDER_KEY, KID),
            ),
            (
                "no expiry",
                signed(
                    &{
                        let mut c = good.clone();
                        c.as_object_mut().unwrap().remove("exp");
                        c
                    },
                    PROVIDER_KEY,
                    KID,
                ),
            ),
            ("not a token", "abc.def".to_owned()),
        ];
        for (what, token) in cases {
            let refused = oidc.authenticate_bearer(&token).await;
            assert!(refused.is_err(), "{what} was accepted: {refused:?}");
        }
        let hmac = {
            // Signed as HS256 with the provider's public key as the secret: the classic
            // algorithm confusion.
            let jwks = include_str!("testdata/provider-jwks.json");
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(KID.into());
            jsonwebtoken::encode(
                &header,
                &good,
                &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()).unwrap(),
            )
            .unwrap()
        };
        assert!(oidc.authenticate_bearer(&hmac).await.is_err());
    }
}
