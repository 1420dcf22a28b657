// Does what users do in the Airflow UI, through its own buttons and dialogs: trigger a DAG
// (which unpauses it), clear the run, mark it failed, and star the DAG; with QUESTION (a task
// instance's "required actions" page) and ANSWER, answer its question with that option. Every
// change the UI sends must be accepted (2xx), and the API must then tell the new state.
//
//   BASE_URL=http://127.0.0.1:8088 ADMIN_PASSWORD=… DAG_ID=etl node ui-tests/actions.mjs
//
// Prints one JSON report; exits 1 on the first step that does not do what it should.
import { login, openPage, waitUntil } from "./browser.mjs";

const base = process.env.BASE_URL ?? "http://127.0.0.1:8088";
const password = process.env.ADMIN_PASSWORD;
const dagId = process.env.DAG_ID ?? "etl";
const question = process.env.QUESTION;
const answer = process.env.ANSWER;

const { browser, page } = await openPage();
const changes = [];
page.on("response", (response) => {
  const url = new URL(response.url());
  const method = response.request().method();
  if (/^\/(api|ui)\//.test(url.pathname) && method !== "GET") {
    changes.push({ method, path: url.pathname, status: response.status(), body: response.request().postData() });
  }
});
const steps = [];

async function api(path) {
  const response = await page.request.get(base + path);
  if (!response.ok()) throw new Error(`GET ${path}: ${response.status()}`);
  return response.json();
}

const until = (what, check, seconds) => waitUntil(page, what, check, seconds);

async function step(name, action) {
  const before = changes.length;
  await action();
  const sent = changes.slice(before);
  const refused = sent.filter((c) => c.status >= 400);
  steps.push({ name, sent: sent.map((c) => `${c.method} ${c.path} ${c.status}`) });
  if (refused.length) throw new Error(`${name}: the API refused ${JSON.stringify(refused)}`);
}

let failure = null;
try {
  await login(page, base, password);
  const runsBefore = (await api(`/api/v2/dags/${dagId}/dagRuns`)).total_entries;

  await step("trigger from the DAG page", async () => {
    await page.goto(`${base}/dags/${dagId}`, { waitUntil: "networkidle" });
    await page.getByRole("button", { name: "Trigger Dag" }).click();
    await page.getByRole("dialog").getByRole("button", { name: /^Trigger$/ }).click();
    await until("the new run", async () => (await api(`/api/v2/dags/${dagId}/dagRuns`)).total_entries > runsBefore);
  });
  const run = (await api(`/api/v2/dags/${dagId}/dagRuns?order_by=-run_after&limit=1`)).dag_runs[0];
  const runPath = `/api/v2/dags/${dagId}/dagRuns/${encodeURIComponent(run.dag_run_id)}`;
  await until("the run to succeed", async () => (await api(runPath)).state === "success", 120);

  await step("clear the run", async () => {
    await page.goto(`${base}/dags/${dagId}/runs/${encodeURIComponent(run.dag_run_id)}`, { waitUntil: "networkidle" });
    await page.getByRole("button", { name: "Clear Dag Run" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await until("second tries", async () => {
      const tis = (await api(`${runPath}/taskInstances`)).task_instances;
      return tis.every((t) => t.try_number === 2 && t.state === "success") && (await api(runPath)).state === "success";
    }, 120);
  });

  await step("mark the run failed", async () => {
    await page.getByRole("button", { name: "Mark Dag Run as..." }).click();
    await page.getByRole("menuitem", { name: /failed/i }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await until("a failed run", async () => (await api(runPath)).state === "failed");
  });

  await step("star the DAG", async () => {
    await page.goto(`${base}/dags/${dagId}`, { waitUntil: "networkidle" });
    await page.getByRole("button", { name: /favorite/i }).first().click();
    await until("a favorite", async () => (await api(`/ui/dags?is_favorite=true`)).total_entries === 1);
  });

  if (question) {
    // The page's path is the API's task instance path, with the UI's names for its parts.
    const [, dag, run, task] = question.match(/^\/dags\/([^/]+)\/runs\/([^/]+)\/tasks\/([^/]+)\//);
    const detail = `/api/v2/dags/${dag}/dagRuns/${run}/taskInstances/${task}/-1/hitlDetails`;
    await step("answer a question from its page", async () => {
      await page.goto(base + question, { waitUntil: "networkidle" });
      await page.getByTestId(`hitl-option-${answer}`).click();
      await until("the answer recorded", async () => {
        const asked = await api(detail);
        return asked.response_received && asked.chosen_options?.[0] === answer;
      });
    });
  }
} catch (error) {
  failure = String(error);
}
console.log(JSON.stringify({ steps, failure }, null, 2));
await browser.close();
process.exit(failure ? 1 : 0);
