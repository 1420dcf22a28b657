//! Tries that wait without a process, on a real Lite: a custom operator that defers itself to a
//! time trigger resumes in its `method_name`, in the same try, with the trigger's event; a
//! sensor in reschedule mode ends its process between pokes; a deferral past its timeout
//! fails; triggers that are not time triggers run in the triggerer (a `FileTrigger`, a
//! deferrable `FileSensor`, a trigger of the project's that raises). The waits are in the log,
//! so they survive a kill -9 of the control plane.

mod common;

use std::time::Duration;

use common::lite::{Client, LiteProject};
use common::log_text;
use reqwest::Method;
use serde_json::{Value, json};

const DAG: &str = r#"
import datetime as dt
import os
from pathlib import Path

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator
from airflow.providers.standard.triggers.file import FileTrigger
from airflow.triggers.temporal import TimeDeltaTrigger

from my_triggers import Broken


class Waiter(BaseOperator):
    """Defers itself for `seconds`, then returns how long it asked for."""

    def __init__(self, *, seconds, timeout_seconds=None, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds
        self.timeout_seconds = timeout_seconds

    def execute(self, context):
        print(f"deferring for {self.seconds} s in process {os.getpid()}")
        timeout = None if self.timeout_seconds is None else dt.timedelta(seconds=self.timeout_seconds)
        self.defer(
            trigger=TimeDeltaTrigger(dt.timedelta(seconds=self.seconds)),
            method_name="done",
            kwargs={"asked": self.seconds},
            timeout=timeout,
        )

    def done(self, context, event=None, asked=None):
        assert isinstance(event, dt.datetime), event
        print(f"resumed after {asked} s with the trigger's moment {event.isoformat()}")
        return asked


class FileWaiter(BaseOperator):
    """Defers itself to a FileTrigger on `pattern` (the triggerer runs it)."""

    def __init__(self, *, pattern, **kwargs):
        super().__init__(**kwargs)
        self.pattern = pattern

    def execute(self, context):
        print(f"waiting for {self.pattern} in process {os.getpid()}")
        self.defer(trigger=FileTrigger(filepath=self.pattern, poke_interval=0.2), method_name="found")

    def found(self, context, event=None):
        print(f"found it, the trigger said {event!r}")
        return event


class BrokenWaiter(BaseOperator):
    def execute(self, context):
        self.defer(trigger=Broken(reason="the queue is gone"), method_name="never")

    def never(self, context, event=None):
        raise AssertionError("a failed trigger does not resume its method")


class FlagSensor(BaseSensorOperator):
    """Done when its flag file exists."""

    def __init__(self, *, flag, **kwargs):
        super().__init__(**kwargs)
        self.flag = flag

    def poke(self, context):
        print(f"poke in process {os.getpid()}, try {context['ti'].try_number}")
        return Path(self.flag).exists()


with DAG("deferral", schedule=None):
    Waiter(task_id="wait", seconds=8)
    FlagSensor(task_id="sense", flag="FLAG", mode="reschedule", poke_interval=1)
    Waiter(task_id="too_long", seconds=3600, timeout_seconds=2)
    FileWaiter(task_id="file", pattern="SCRATCH/in/*.csv")
    FileSensor(task_id="file_sensor", filepath="SCRATCH/in/ready", deferrable=True, poke_interval=0.2)
    BrokenWaiter(task_id="broken", retries=0)
    DateTimeSensorAsync(
        task_id="ends_there",
        target_time=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)).isoformat(),
        end_from_trigger=True,
    )
"#;

fn ti_path(run_id: &str, task_id: &str) -> String {
    format!("/api/v2/dags/deferral/dagRuns/{run_id}/taskInstances/{task_id}")
}

async fn trigger(client: &Client) -> String {
    let (status, body) = client
        .call(
            Method::PATCH,
            "/api/v2/dags/deferral",
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, run) = client
        .call(
            Method::POST,
            "/api/v2/dags/deferral/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run["dag_run_id"].as_str().unwrap().to_owned()
}

/// Polls a task instance until `done` holds (it may not exist yet: its run just started).
async fn ti_until(client: &Client, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ti) = client.call(Method::GET, path, None).await;
        if status == 200 && done(&ti) {
            return ti;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never got there: {ti}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: i64) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_and_rescheduled_tries_wait_without_a_process_and_survive_a_kill() {
    let project = LiteProject::new("deferral", DAG);
    // The sensor's flag file is made once the control plane was killed and restarted.
    let flag = project.scratch.join("flag");
    let scratch = project.scratch.to_str().unwrap();
    std::fs::write(
        project.project.join("dag.py"),
        DAG.replace("\"FLAG\"", &format!("{:?}", flag.to_str().unwrap()))
            .replace("SCRATCH", scratch),
    )
    .unwrap();
    std::fs::write(project.project.join("my_triggers.py"), MY_TRIGGERS).unwrap();
    let mut lite = project.lite();
    let client = Client::login(&lite.base).await;
    let run_id = trigger(&client).await;

    let waiting = ti_until(&client, &ti_path(&run_id, "wait"), |ti| {
        ti["state"] == "deferred"
    })
    .await;
    assert_eq!(waiting["try_number"], 1, "{waiting}");
    // The API shows what it waits for, as Airflow's shows its trigger row.
    let trigger = &waiting["trigger"];
    assert_eq!(
        trigger["classpath"], "airflow.providers.standard.triggers.temporal.DateTimeTrigger",
        "{waiting}"
    );
    assert!(
        trigger["kwargs"].as_str().is_some_and(
            |k| k.starts_with("{'moment': DateTime(") && k.contains("tzinfo=Timezone('UTC')")
        ),
        "{waiting}"
    );
    assert!(trigger["id"].as_i64().is_some_and(|id| id > 0), "{waiting}");
    assert!(trigger["created_date"].is_string(), "{waiting}");
    let sensing = ti_until(&client, &ti_path(&run_id, "sense"), |ti| {
        ti["state"] == "up_for_reschedule"
    })
    .await;
    // Neither holds a process while it waits: their agents are gone.
    for ti in [&waiting, &sensing] {
        let pid = ti["pid"].as_i64().expect("the try's agent had a pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!alive(pid), "the agent {pid} of {ti} still runs");
    }

    // Waiting on the triggerer, with no process of its own either; the API names its trigger
    // and masks its arguments (sealed in the log).
    for task_id in ["file", "file_sensor"] {
        let waiting = ti_until(&client, &ti_path(&run_id, task_id), |ti| {
            ti["state"] == "deferred"
        })
        .await;
        assert_eq!(
            waiting["trigger"]["classpath"], "airflow.providers.standard.triggers.file.FileTrigger",
            "{waiting}"
        );
        assert_eq!(waiting["trigger"]["kwargs"], "***", "{waiting}");
    }
    ti_until(&client, &ti_path(&run_id, "broken"), |ti| {
        ti["state"] == "failed"
    })
    .await;

    // The waits are events of the log: a control plane killed now finds them on restart, and
    // starts their triggers again.
    assert!(!lite.signal(libc::SIGKILL).success());
    let lite = project.lite();
    let client = Client::login(&lite.base).await;
    let still = client.get(&ti_path(&run_id, "wait")).await;
    assert!(
        ["deferred", "scheduled", "queued", "running", "success"]
            .contains(&still["state"].as_str().unwrap()),
        "{still}"
    );
    // The triggerer process is killed too: the control plane starts it again, with the
    // triggers it ran.
    let triggerer = wait_for_triggerer(lite.child.id(), None).await;
    // SAFETY: a plain signal to a process of this test's Lite.
    unsafe { libc::kill(triggerer, libc::SIGKILL) };
    // Another process within the wait's 30 s, else it fails naming Lite.
    wait_for_triggerer(lite.child.id(), Some(triggerer)).await;
    std::fs::write(&flag, "here").unwrap();
    std::fs::create_dir(project.scratch.join("in")).unwrap();
    std::fs::write(project.scratch.join("in/a.csv"), "a").unwrap();
    std::fs::write(project.scratch.join("in/ready"), "").unwrap();

    let run = client
        .until(&format!("/api/v2/dags/deferral/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    // `too_long` timed out, so the run failed; the other two succeeded.
    assert_eq!(run["state"], "failed", "{run}");
    let states: Vec<(String, Value, Value)> = {
        let mut found = Vec::new();
        for task_id in [
            "wait",
            "sense",
            "too_long",
            "file",
            "file_sensor",
            "broken",
            "ends_there",
        ] {
            let ti = client.get(&ti_path(&run_id, task_id)).await;
            // A task instance no longer deferred waits for no trigger.
            assert!(ti["trigger"].is_null(), "{ti}");
            found.push((
                task_id.to_owned(),
                ti["state"].clone(),
                ti["try_number"].clone(),
            ));
        }
        found
    };
    assert_eq!(
        states,
        [
            ("wait".to_owned(), json!("success"), json!(1)),
            ("sense".to_owned(), json!("success"), json!(1)),
            ("too_long".to_owned(), json!("failed"), json!(1)),
            ("file".to_owned(), json!("success"), json!(1)),
            ("file_sensor".to_owned(), json!("success"), json!(1)),
            ("broken".to_owned(), json!("failed"), json!(1)),
            ("ends_there".to_owned(), json!("success"), json!(1)),
        ]
    );

    let log = |task_id: &'static str| {
        let client = &client;
        let path = format!("{}/logs/1", ti_path(&run_id, task_id));
        async move { log_text(&client.get(&path).await) }
    };
    let wait_log = log("wait").await;
    assert!(wait_log.contains("deferring for 8 s"), "{wait_log}");
    assert!(
        wait_log.contains("resumed after 8 s with the trigger's moment"),
        "{wait_log}"
    );
    let xcom = client
        .get(&format!(
            "{}/xcomEntries/return_value",
            ti_path(&run_id, "wait")
        ))
        .await;
    assert_eq!(xcom["value"], 8, "{xcom}");

    let sense_log = log("sense").await;
    let pokes: Vec<&str> = sense_log
        .lines()
        .filter(|line| line.contains("poke in process"))
        .collect();
    assert!(pokes.len() >= 2, "{sense_log}");
    let processes: std::collections::BTreeSet<&str> = pokes
        .iter()
        .map(|line| line.split("process ").nth(1).unwrap())
        .collect();
    assert_eq!(
        processes.len(),
        pokes.len(),
        "each poke in a process of its own: {sense_log}"
    );

    // The timeout failed the try without a process: its log says why, after what the try
    // printed before it deferred.
    let too_long = log("too_long").await;
    let deferring = too_long.find("deferring for 3600 s").expect(&too_long);
    let timed_out = too_long.find("TaskDeferralTimeout").expect(&too_long);
    assert!(deferring < timed_out, "{too_long}");
    // Ended by its trigger: it succeeded at its moment without running again.
    let ends_there = log("ends_there").await;
    assert!(ends_there.contains("; the task ends there"), "{ends_there}");
    assert!(
        !ends_there.contains("after the trigger fired"),
        "{ends_there}"
    );
    // The triggerer ran the file trigger (its log lines are the try's), then the try resumed
    // in its method with the trigger's event.
    let file = log("file").await;
    let waiting = file.find("waiting for").expect(&file);
    let found = file.find("[triggerer] INFO - Found file").expect(&file);
    let resumed = file.find("found it, the trigger said True").expect(&file);
    assert!(waiting < found && found < resumed, "{file}");
    let sensor = log("file_sensor").await;
    assert!(sensor.contains("completed successfully as"), "{sensor}");
    // A trigger that raised failed its try, its traceback in the try's log.
    let broken = log("broken").await;
    assert!(broken.contains("the try's trigger failed"), "{broken}");
    assert!(
        broken.contains("RuntimeError: the queue is gone"),
        "{broken}"
    );
    assert!(
        !broken.contains("a failed trigger does not resume"),
        "{broken}"
    );
}

/// The pid of the triggerer process `lite` runs (its child running `leoflow.triggerer`), once
/// there is one.
/// The triggerer process of Lite `lite`, once one runs that is not `not` (a triggerer just
/// killed stays listed, with its command line, until it has exited).
async fn wait_for_triggerer(lite: u32, not: Option<i32>) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .find_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let parent: u32 = stat
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
                (parent == lite
                    && Some(pid) != not
                    && cmdline.contains("leoflow.triggerer")
                    && alive(pid.into()))
                .then_some(pid)
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Lite {lite} runs no triggerer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A trigger of the project's own, which the triggerer imports from the project.
const MY_TRIGGERS: &str = r#"
from airflow.triggers.base import BaseTrigger


class Broken(BaseTrigger):
    def __init__(self, reason):
        super().__init__()
        self.reason = reason

    def serialize(self):
        return ("my_triggers.Broken", {"reason": self.reason})

    async def run(self):
        raise RuntimeError(self.reason)
        yield
"#;

const GATED: &str = r#"
from airflow.sdk import DAG, BaseOperator

from my_triggers import Gate


class Waits(BaseOperator):
    def execute(self, context):
        self.defer(trigger=Gate(), method_name="done")

    def done(self, context, event=None):
        print(f"the gate said {event}")
        return event


with DAG("gated", schedule=None, is_paused_upon_creation=False):
    Waits(task_id="wait")
"#;

/// `my_triggers.Gate` as it is first: it never fires.
const CLOSED_GATE: &str = r#"
import asyncio
from airflow.triggers.base import BaseTrigger, TriggerEvent


class Gate(BaseTrigger):
    def serialize(self):
        return ("my_triggers.Gate", {})

    async def run(self):
        self.log.info("the gate is closed")
        await asyncio.sleep(3600)
        yield TriggerEvent("closed")
"#;

/// `my_triggers.Gate` edited while a try waits on it: it fires at once.
const OPEN_GATE: &str = r#"
from airflow.triggers.base import BaseTrigger, TriggerEvent


class Gate(BaseTrigger):
    def serialize(self):
        return ("my_triggers.Gate", {})

    async def run(self):
        yield TriggerEvent("opened by the new code")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_reload_starts_the_triggerer_again_with_the_projects_new_code() {
    let project = LiteProject::new("gated", GATED);
    std::fs::write(project.project.join("my_triggers.py"), CLOSED_GATE).unwrap();
    let lite = project.lite();
    let client = Client::login(&lite.base).await;
    let (status, run) = client
        .call(
            Method::POST,
            "/api/v2/dags/gated/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let ti = format!("/api/v2/dags/gated/dagRuns/{run_id}/taskInstances/wait");
    ti_until(&client, &ti, |ti| ti["state"] == "deferred").await;
    let before = wait_for_triggerer(lite.child.id(), None).await;
    // The triggerer runs the first code (its log line is in the try's log).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log_text(&client.get(&format!("{ti}/logs/1")).await).contains("the gate is closed") {
        assert!(std::time::Instant::now() < deadline, "the gate never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The trigger's module changes (and the DAG file, so the project registers a new version).
    std::fs::write(project.project.join("my_triggers.py"), OPEN_GATE).unwrap();
    std::fs::write(
        project.project.join("dag.py"),
        format!("{GATED}\n# edited\n"),
    )
    .unwrap();
    lite.wait_line("new version registered");

    let done = ti_until(&client, &ti, |ti| ti["state"] == "success").await;
    assert_eq!(done["try_number"], 1, "{done}");
    let log = log_text(&client.get(&format!("{ti}/logs/1")).await);
    assert!(
        log.contains("the gate said opened by the new code"),
        "{log}"
    );
    // The new code runs in a new triggerer process (within the wait's 30 s, else it fails).
    wait_for_triggerer(lite.child.id(), Some(before)).await;
}

const ENDED: &str = r#"
from airflow.sdk import DAG, BaseOperator

from ending import Ends


class EndsThere(BaseOperator):
    def __init__(self, *, state, **kwargs):
        super().__init__(**kwargs)
        self.state = state

    def execute(self, context):
        print(f"deferring to end {self.state}")
        self.defer(trigger=Ends(state=self.state), method_name="never")

    def never(self, context, event=None):
        raise AssertionError("a task its trigger ended does not resume")


def told(context):
    print(f"{context['ti'].task_id} failed: told")


with DAG("ended", schedule=None, is_paused_upon_creation=False):
    EndsThere(task_id="succeeds", state="success", on_success_callback=told)
    EndsThere(task_id="fails", state="failed", retries=2, on_failure_callback=told)
    EndsThere(task_id="skips", state="skipped")
"#;

const ENDING: &str = r#"
from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent


class Ends(BaseTrigger):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def serialize(self):
        return ("ending.Ends", {"state": self.state})

    async def run(self):
        self.log.info("ending the task %s", self.state)
        if self.state == "success":
            yield TaskSuccessEvent(xcoms={"return_value": {"rows": 3}, "source": "the trigger"})
        elif self.state == "failed":
            yield TaskFailedEvent()
        else:
            yield TaskSkippedEvent()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_s_task_end_event_ends_its_task_with_its_xcoms_without_resuming_it() {
    let project = LiteProject::new("ended", ENDED);
    std::fs::write(project.project.join("ending.py"), ENDING).unwrap();
    let lite = project.lite();
    let client = Client::login(&lite.base).await;
    let (status, run) = client
        .call(
            Method::POST,
            "/api/v2/dags/ended/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap();
    let run = client
        .until(&format!("/api/v2/dags/ended/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    assert_eq!(run["state"], "failed", "{run}");
    let ti = |task_id: &str| format!("/api/v2/dags/ended/dagRuns/{run_id}/taskInstances/{task_id}");
    // Each in its event's state, in its first try: a failure takes no retry, as in Airflow.
    for (task_id, state) in [
        ("succeeds", "success"),
        ("fails", "failed"),
        ("skips", "skipped"),
    ] {
        let found = client.get(&ti(task_id)).await;
        assert_eq!(found["state"], state, "{found}");
        assert_eq!(found["try_number"], 1, "{found}");
        let log = log_text(&client.get(&format!("{}/logs/1", ti(task_id))).await);
        assert!(
            log.contains(&format!("[triggerer] INFO - ending the task {state}")),
            "{log}"
        );
        assert!(!log.contains("does not resume"), "{log}");
    }
    // The success's XComs are the task's.
    let xcom = client
        .get(&format!("{}/xcomEntries/return_value", ti("succeeds")))
        .await;
    assert_eq!(xcom["value"], json!({"rows": 3}), "{xcom}");
    let xcom = client
        .get(&format!("{}/xcomEntries/source", ti("succeeds")))
        .await;
    assert_eq!(xcom["value"], "the trigger", "{xcom}");
    // The failure's on_failure_callback runs, as Airflow's DAG processor runs it for such an
    // end; a success's on_success_callback does not (Airflow's neither).
    let told = "[task callback] fails failed: told";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = log_text(&client.get(&format!("{}/logs/1", ti("fails"))).await);
        if log.contains(told) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = log_text(&client.get(&format!("{}/logs/1", ti("succeeds"))).await);
    assert!(!log.contains("told"), "{log}");
}
