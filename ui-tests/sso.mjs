// Single sign-on in the unmodified Airflow UI: an anonymous visitor is sent to the OpenID
// provider, signs in there, lands back in the UI on the page they asked for, triggers a run
// with the UI's own button, and logs out through the UI's menu, which ends the session at
// Leoflow and at the provider.
//
//   BASE_URL=http://127.0.0.1:8080 ISSUER=http://127.0.0.1:9400 SSO_USER=alice DAG_ID=greet node ui-tests/sso.mjs
//
// Prints one JSON report; exits 1 on the first step that does not do what it should.
import { openPage, waitUntil } from "./browser.mjs";

const base = process.env.BASE_URL;
const issuer = process.env.ISSUER;
const user = process.env.SSO_USER ?? "alice";
const dagId = process.env.DAG_ID ?? "greet";

const { browser, page } = await openPage();
const steps = [];
const step = (name, detail = {}) => steps.push({ name, url: page.url(), ...detail });

async function api(path) {
  const response = await page.request.get(base + path);
  return { status: response.status(), body: response.ok() ? await response.json() : null };
}

const until = (what, check, seconds) => waitUntil(page, what, check, seconds);

let failure = null;
try {
  await page.goto(`${base}/dags/${dagId}`);
  await page.waitForURL((url) => url.href.startsWith(issuer), { timeout: 30_000 });
  step("sent to the provider");
  await page.locator('input[name="login"]').fill(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => url.href.startsWith(`${base}/dags/${dagId}`), { timeout: 30_000 });
  await page.waitForLoadState("networkidle");
  step("back on the page asked for");
  const me = await api("/ui/auth/me");
  if (me.body?.username !== user) throw new Error(`signed in as ${JSON.stringify(me)}`);

  const before = (await api(`/api/v2/dags/${dagId}/dagRuns`)).body.total_entries;
  await page.getByRole("button", { name: "Trigger Dag" }).click();
  await page.getByRole("dialog").getByRole("button", { name: /^Trigger$/ }).click();
  await until("the new run", async () => (await api(`/api/v2/dags/${dagId}/dagRuns`)).body.total_entries > before);
  step("triggered a run");

  await page.getByRole("button", { name: "User" }).click();
  await page.getByRole("menuitem", { name: "Logout" }).click();
  await page.getByRole("dialog").getByRole("button", { name: /confirm|logout|yes/i }).click();
  await page.waitForURL((url) => url.href.startsWith(issuer), { timeout: 30_000 });
  step("at the provider's logout");
  await page.getByRole("button", { name: /sign me out/i }).click();
  await page.waitForURL((url) => url.href.startsWith(`${base}/auth/oidc/signed-out`), { timeout: 30_000 });
  const text = await page.textContent("body");
  if (!/signed out/i.test(text)) throw new Error(`the page after logout says: ${text}`);
  const after = await api(`/api/v2/dags/${dagId}/dagRuns`);
  if (after.status !== 401) throw new Error(`after logout the API answered ${after.status}`);
  step("signed out", { api: after.status });
} catch (error) {
  failure = String(error?.stack ?? error);
  if (process.env.SCREENSHOTS) await page.screenshot({ path: `${process.env.SCREENSHOTS}/sso-failure.png` });
}
await browser.close();
console.log(JSON.stringify({ steps, failure }, null, 2));
process.exit(failure ? 1 : 0);
