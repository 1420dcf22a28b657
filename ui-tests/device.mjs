// `leoflow login` through the provider's device flow: a person opens the page the CLI printed,
// signs in at the provider and confirms the code; the CLI, polling, then gets its token.
//
//   VERIFY_URL='http://127.0.0.1:9400/device?user_code=ABCD-EFGH' SSO_USER=alice node ui-tests/device.mjs
//
// Prints one JSON report; exits 1 on the first step that does not do what it should.
import { openPage } from "./browser.mjs";

const url = process.env.VERIFY_URL;
const user = process.env.SSO_USER ?? "alice";

const { browser, page } = await openPage();
const steps = [];
let failure = null;
try {
  await page.goto(url);
  // The provider's pages, in whatever order it shows them: the code (filled in from the URL),
  // the sign-in, the confirmation; until it says the device is signed in.
  for (let i = 0; i < 8; i++) {
    await page.waitForLoadState("networkidle");
    const text = (await page.textContent("body")) ?? "";
    steps.push({ url: page.url(), text: text.replace(/\s+/g, " ").trim().slice(0, 80) });
    if (/success/i.test(text)) break;
    if (await page.locator('input[name="login"]').count()) {
      await page.locator('input[name="login"]').fill(user);
      await page.getByRole("button", { name: "Sign in" }).click();
      continue;
    }
    const submit = page.locator('button[type="submit"]:not([name="abort"]), button[autofocus]');
    if (!(await submit.count())) throw new Error(`no way on from: ${text}`);
    await submit.first().click();
  }
  const last = steps[steps.length - 1];
  if (!/success/i.test(last.text)) throw new Error(`never signed in: ${JSON.stringify(steps)}`);
} catch (error) {
  failure = String(error?.stack ?? error);
  if (process.env.SCREENSHOTS) await page.screenshot({ path: `${process.env.SCREENSHOTS}/device-failure.png` });
}
await browser.close();
console.log(JSON.stringify({ steps, failure }));
process.exit(failure ? 1 : 0);
