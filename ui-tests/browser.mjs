// What the UI tests share: headless Debian Chromium with the flags this machine needs (without
// the background-networking ones, Chromium's own connections are refused by the closed
// network), and logging in through the Airflow UI's login page.
import { chromium } from "playwright-core";

/** Launches Chromium and opens one 1440×900 page. */
export async function openPage() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  return { browser, page: await context.newPage() };
}

/** Signs in as admin on the login page the UI shows an anonymous visitor of `base`. */
export async function login(page, base, password) {
  await page.goto(base + "/", { waitUntil: "networkidle" });
  await page.locator('input[name="username"]').fill("admin");
  await page.locator('input[name="password"]').fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => !url.pathname.startsWith("/auth/"));
}

/** Polls `check` on `page` every 300 ms until it returns something truthy (returned), or fails
 * naming `what` after `seconds`. */
export async function waitUntil(page, what, check, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await page.waitForTimeout(300);
  }
}
