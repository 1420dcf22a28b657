// Logs in through the served Airflow login page and visits pages of the unmodified Airflow UI
// in headless Debian Chromium, recording console errors, page errors and failed API calls.
//
//   BASE_URL=http://127.0.0.1:8088 ADMIN_PASSWORD=… PAGES='["/", "/dags"]' \
//     [EXPECT='{"/dags": ["etl"]}'] [SCREENSHOTS=docs/screenshots] [SHOTS='{"/": "home"}'] \
//     node ui-tests/visit.mjs
//
// EXPECT names, per page, texts the page must show (a DAG, a run, a task): a page that
// loads without errors but shows nothing of what it should is a problem too. When EXPECT is
// given, a page it says nothing about is a problem: every page visited must show something.
// Prints one JSON report on stdout; exits 1 when any page had a problem.
import { login, openPage } from "./browser.mjs";

const base = process.env.BASE_URL ?? "http://127.0.0.1:8088";
const password = process.env.ADMIN_PASSWORD;
const pages = JSON.parse(process.env.PAGES ?? '["/"]');
const shots = JSON.parse(process.env.SHOTS ?? "{}");
const expectations = process.env.EXPECT !== undefined;
const expected = JSON.parse(process.env.EXPECT ?? "{}");
const screenshots = process.env.SCREENSHOTS;
if (!password) {
  console.error("ADMIN_PASSWORD is required");
  process.exit(2);
}

const { browser, page } = await openPage();

let current = "login";
const problems = [];
const apiCalls = {};
page.on("console", (msg) => {
  if (msg.type() === "error") problems.push({ page: current, kind: "console", text: msg.text() });
});
page.on("pageerror", (error) => problems.push({ page: current, kind: "pageerror", text: String(error) }));
page.on("requestfailed", (request) => {
  const url = new URL(request.url());
  // Going to the next page aborts what the last one still polled: that is no failure (a
  // server error shows as a response status, below).
  if (request.failure()?.errorText === "net::ERR_ABORTED") return;
  if (url.origin === new URL(base).origin) {
    problems.push({ page: current, kind: "requestfailed", text: `${request.method()} ${url.pathname}${url.search}: ${request.failure()?.errorText}` });
  }
});
page.on("response", (response) => {
  const url = new URL(response.url());
  if (url.origin !== new URL(base).origin) return;
  if (!/^\/(api|ui|auth)\//.test(url.pathname)) return;
  (apiCalls[current] ??= []).push(`${response.request().method()} ${url.pathname} ${response.status()}`);
  if (response.status() >= 400) {
    problems.push({ page: current, kind: "http", text: `${response.request().method()} ${url.pathname}${url.search} -> ${response.status()}` });
  }
});

// Logging in: the UI sends an anonymous visitor to the login page, which posts /auth/token.
await login(page, base, password);
// The 401s that sent us to the login page are the login flow, not failures.
problems.length = 0;

/** The page's text once it shows every one of `texts`, or after 15 s what it shows then. */
async function textShowing(texts) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const text = await page.locator("body").innerText();
    if (texts.every((t) => text.includes(t)) || Date.now() > deadline) return text;
    await page.waitForTimeout(250);
  }
}

const visited = [];
let instanceNameShown = false;
for (const path of pages) {
  current = path;
  await page.goto(base + path, { waitUntil: "networkidle", timeout: 60000 });
  await page.waitForTimeout(500);
  const wanted = expected[path] ?? [];
  if (expectations && wanted.length === 0) {
    problems.push({ page: path, kind: "content", text: "EXPECT names nothing this page must show" });
  }
  const text = await textShowing(wanted);
  const missing = wanted.filter((t) => !text.includes(t));
  if (missing.length > 0) {
    problems.push({ page: path, kind: "content", text: `does not show ${JSON.stringify(missing)}` });
  }
  // The home page's heading is the instance name.
  if (path === "/") instanceNameShown = text.includes("Leoflow Lite");
  visited.push({ path, title: await page.title(), chars: text.length, calls: (apiCalls[path] ?? []).length });
  if (screenshots && shots[path]) {
    await page.screenshot({ path: `${screenshots}/${shots[path]}.png`, fullPage: false });
  }
}

const report = { visited, problems, instanceNameShown };
console.log(JSON.stringify(report, null, 2));
await browser.close();
process.exit(problems.length === 0 ? 0 : 1);
