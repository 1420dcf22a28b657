// Lite's built-in editor as a user finds it: log in to the Airflow UI, follow "Editor" in its
// navigation bar (a plugin's external view, framed by the UI at /plugin/editor), open dag.py
// and leoflow.yaml in Monaco (highlighted as Python and YAML), append a line to dag.py and save
// it with Ctrl-S. The caller checks the file on disk and the hot reload. With SCREENSHOTS set,
// the page is saved there as editor.png.
//
//   BASE_URL=http://127.0.0.1:8088 ADMIN_PASSWORD=… LINE='# …' node ui-tests/editor.mjs
//
// Prints one JSON report; exits 1 on the first step that does not do what it should.
import { login, openPage } from "./browser.mjs";

const base = process.env.BASE_URL ?? "http://127.0.0.1:8088";
const password = process.env.ADMIN_PASSWORD;
const line = process.env.LINE ?? "# saved from the browser";

const { browser, page } = await openPage();
const problems = [];
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console: ${message.text()}`);
});
page.on("response", (response) => {
  if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
});
const report = { languages: {}, tokenClasses: {}, saved: null, url: null };

// Distinct Monaco token classes on the visible lines: one class means no highlighting.
async function tokenClasses(frame) {
  return frame.locator(".view-lines span[class^='mtk']").evaluateAll((spans) =>
    [...new Set(spans.map((span) => span.className))].length);
}

// Monaco first paints a file as plain text and colours it once the language's tokenizer has
// loaded (fetched on first use), so the classes are sampled until they appear or time runs out.
async function highlightedClasses(frame, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let classes = await tokenClasses(frame);
  while (classes < 3 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    classes = await tokenClasses(frame);
  }
  return classes;
}

let failure = null;
try {
  await login(page, base, password);
  await page.waitForLoadState("networkidle");
  problems.length = 0; // the UI's calls before the login are refused, as in Airflow

  await page.getByRole("link", { name: "Editor" }).or(page.getByRole("button", { name: "Editor" })).first().click();
  await page.waitForURL((url) => url.pathname === "/plugin/editor");
  report.url = new URL(page.url()).pathname;
  const frame = page.frameLocator('iframe[src="/leoflow/editor"]');
  // Monaco is loaded and the project listed (the editor stays empty until a file is opened).
  await frame.locator("#status", { hasText: /files: pick one to edit$/ }).waitFor({ timeout: 30_000 });

  for (const [file, language] of [["leoflow.yaml", "yaml"], ["dag.py", "python"]]) {
    await frame.getByRole("button", { name: file, exact: true }).click();
    await frame.locator("#status", { hasText: `${file} (${language})` }).waitFor();
    await frame.locator(".view-lines span[class^='mtk']").first().waitFor();
    report.languages[file] = language;
    report.tokenClasses[file] = await highlightedClasses(frame);
    if (report.tokenClasses[file] < 3) throw new Error(`${file} is not highlighted`);
  }

  await frame.locator(".monaco-editor .view-lines").click();
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Enter");
  // Typed as plain text: Monaco's auto-indent would otherwise indent after a block.
  await page.keyboard.press("Home");
  await page.keyboard.insertText(line);
  await page.keyboard.press("Control+s");
  const status = frame.locator("#status", { hasText: /^Saved dag\.py/ });
  await status.waitFor({ timeout: 15_000 });
  report.saved = await status.textContent();
  if (process.env.SCREENSHOTS) await page.screenshot({ path: `${process.env.SCREENSHOTS}/editor.png` });
  if (problems.length) throw new Error(problems.join("\n"));
} catch (error) {
  failure = String(error);
  const editorFrame = page.frames().find((f) => f.url().endsWith("/leoflow/editor"));
  report.editorStatus = editorFrame ? await editorFrame.locator("#status").textContent().catch(String) : "no editor frame";
}
console.log(JSON.stringify({ ...report, problems, failure }, null, 2));
await browser.close();
process.exit(failure ? 1 : 0);
