// A real OpenID provider (npm `oidc-provider`) on loopback, for the tests of Pro's single
// sign-on. It knows one user in each of Airflow's roles in tenant `acme`, an admin of tenant
// `beta`, a platform admin, and one machine client (client credentials) of `acme`. Its signing keys live in KEYS_FILE, so a restart with
// ROTATE=1 replaces them under the same issuer: that is a key rotation at the provider.
//
//   PORT=9400 LEOFLOW_URLS=http://127.0.0.1:8080 KEYS_FILE=/tmp/keys.json node ui-tests/oidc-provider.mjs
//
// LEOFLOW_URLS lists every Leoflow replica's base URL, comma-separated (each is a redirect
// URI of the `leoflow` client).
//
// Prints `listening <issuer>` once it serves. The sign-in page is a form with one field
// (`login`, the user's id) and no password: the tests sign in by naming a user.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { Provider } from "oidc-provider";

const port = Number(process.env.PORT ?? 9400);
const leoflows = (process.env.LEOFLOW_URLS ?? "http://127.0.0.1:8080").split(",");
const keysFile = process.env.KEYS_FILE;
const issuer = `http://127.0.0.1:${port}`;

/** The audience of the machine client's access tokens (Leoflow's `auth.oidc.audience`). */
export const AUDIENCE = "urn:leoflow:api";

const users = {
  "alice": { name: "Alice Admin", groups: ["airflow-admins"], tenant: "acme" },
  "oscar": { name: "Oscar Op", groups: ["airflow-ops"], tenant: "acme" },
  "ursula": { name: "Ursula User", groups: ["airflow-users", "staff"], tenant: "acme" },
  "victor": { name: "Victor Viewer", groups: ["airflow-viewers"], tenant: "acme" },
  "pat": { name: "Pat Public", groups: ["staff"], tenant: "acme" },
  "bea": { name: "Bea Beta", groups: ["airflow-admins"], tenant: "beta" },
  // No tenant claim: the platform admins' group maps to every tenant.
  "root": { name: "Platform Root", groups: ["platform-admins"] },
};

const machines = {
  "ci-robot": { groups: ["airflow-ops"], tenant: "acme" },
};

function signingKeys() {
  const fresh = () => {
    const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    return { ...privateKey.export({ format: "jwk" }), kid: crypto.randomUUID(), alg: "RS256", use: "sig" };
  };
  if (!keysFile) return [fresh()];
  let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, "utf8")) : [];
  if (keys.length === 0 || process.env.ROTATE === "1") keys = [fresh()];
  fs.writeFileSync(keysFile, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "leoflow",
      client_secret: "leoflow-secret",
      redirect_uris: leoflows.map((url) => `${url}/auth/oidc/callback`),
      post_logout_redirect_uris: leoflows.map((url) => `${url}/auth/oidc/signed-out`),
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
    {
      // `leoflow login`: a public client signing people in with the device flow.
      client_id: "leoflow-cli",
      token_endpoint_auth_method: "none",
      grant_types: ["urn:ietf:params:oauth:grant-type:device_code"],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: "ci-robot",
      client_secret: "ci-robot-secret",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
    },
  ],
  claims: {
    openid: ["sub"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
    tenant: ["tenant"],
  },
  scopes: ["openid", "profile", "groups", "tenant", "api"],
  // The ID token itself carries the claims (Leoflow reads no userinfo).
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: user.name, preferred_username: id, groups: user.groups, tenant: user.tenant };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Only the machine client's tokens are for Leoflow's API; sign-ins get an ID token.
      defaultResource: (_ctx, client) =>
        client.grantTypes.includes("client_credentials") || client.clientId === "leoflow-cli" ? AUDIENCE : undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "api",
        audience: AUDIENCE,
        accessTokenTTL: 600,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  async extraTokenClaims(_ctx, token) {
    if (token.kind === "ClientCredentials") return machines[token.clientId];
    // A person's access token for Leoflow's API (the CLI's device flow): their groups and tenant.
    const user = users[token.accountId];
    return user ? { groups: user.groups, tenant: user.tenant } : undefined;
  },
  pkce: { required: () => true },
  cookies: { keys: ["leoflow-test-provider-cookies"] },
  jwks: { keys: signingKeys() },
  ttl: { AccessToken: 600, AuthorizationCode: 60, ClientCredentials: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.on("server_error", (_ctx, error) => console.error("provider error:", error));

function page(res, status, body) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><html><head><title>Test provider</title></head><body>${body}</body></html>`);
}

function formBody(req) {
  return new Promise((resolve) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => resolve(new URLSearchParams(text)));
  });
}

/** The sign-in page and its answer: signing in also grants what Leoflow asked for. */
async function interaction(req, res) {
  const [, , uid, action] = new URL(req.url, issuer).pathname.split("/");
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, "unknown interaction");
  if (req.method === "GET") {
    return page(res, 200, `<h1>Sign in to the test provider</h1>
      <form method="post" action="/interaction/${uid}/login">
        <label>User <input name="login" autofocus></label>
        <button type="submit">Sign in</button>
      </form>`);
  }
  if (action !== "login") return page(res, 404, "no such step");
  const login = (await formBody(req)).get("login") ?? "";
  if (!users[login]) return page(res, 200, `<p>No user ${login}</p>`);
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  // The CLI's device flow asks for Leoflow's API as its resource.
  if (details.params.client_id === "leoflow-cli") grant.addResourceScope(AUDIENCE, "api");
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
http
  .createServer((req, res) => {
    if (req.url.startsWith("/interaction/")) {
      interaction(req, res).catch((error) => page(res, 500, String(error)));
    } else {
      callback(req, res);
    }
  })
  .listen(port, "127.0.0.1", () => console.log(`listening ${issuer}`));
