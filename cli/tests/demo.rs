//! `leoflow demo` on this host: its first start shows the admin's password once and pushes the
//! example projects; what is pushed appears and runs, the same artifact twice is no new
//! version; a second start pushes nothing again and shows no password; and it runs beside a
//! Lite on the same home, each with its own ports, database and state.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::lite::{LiteProject, leoflow, stop_postgres, text};
use common::remote::{cli, login_admin, ok};
use common::server::ports;
use serde_json::Value;

/// A running Demo, its banner read up to "Serving;".
struct Demo {
    child: Child,
    base: String,
    banner: String,
}

impl Demo {
    fn start(home: &std::path::Path) -> Self {
        let [http, grpc, metrics] = ports().map(|p| p.to_string());
        let mut child = leoflow(home, &["demo", "--http-port", &http, "--grpc-port", &grpc])
            .args(["--metrics-port", &metrics])
            .env_remove("LEOFLOW_ADMIN_PASSWORD")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        while let Some(Ok(line)) = lines.next() {
            eprintln!("[demo] {line}");
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Serving;") {
                std::thread::spawn(move || lines.for_each(drop));
                return Self {
                    child,
                    base: format!("http://127.0.0.1:{http}"),
                    banner,
                };
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("demo did not start serving:\n{banner}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The password in the first start's box.
fn shown_password(banner: &str) -> Option<String> {
    banner
        .lines()
        .find_map(|l| l.split("password  ").nth(1))
        .map(|rest| rest.trim_end_matches(['│', ' ']).trim().to_owned())
}

const PUSHED: &str = r#"
from airflow.sdk import DAG, task

@task
def pushed():
    return "pushed"

with DAG("pushed_etl", schedule=None, is_paused_upon_creation=False):
    pushed()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_pushed_artifacts_beside_a_lite() {
    let fixture = LiteProject::new("demo", PUSHED);
    let home = fixture.home.clone();
    let demo = Demo::start(&home);
    let password = shown_password(&demo.banner).expect("the first start shows the password");
    assert!(
        demo.banner.contains("examples  hello: pushed"),
        "{}",
        demo.banner
    );
    // No Docker engine or k3d runs here: Demo says it runs subprocesses, and why.
    assert!(
        demo.banner.contains(
            "executor  subprocesses on this host (no k3d cluster leoflow-demo to run pods in: docker:"
        ),
        "{}",
        demo.banner
    );

    let laptop = fixture.scratch.join("laptop");
    let password_file = fixture.scratch.join("demo-password");
    std::fs::write(&password_file, &password).unwrap();
    let pw = password_file.to_str().unwrap();
    login_admin(&laptop, &demo.base, pw, "default");
    let listed: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "list", "--output", "json"])).unwrap();
    let examples = listed["total_entries"].as_i64().unwrap();
    assert!(examples >= 5, "{listed}");
    let config: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "show", "hello", "--output", "json"])).unwrap();
    assert_eq!(config["dag_id"], "hello");

    // A push appears and runs; the same push again is no new version.
    let pushed = ok(&laptop, &["push", fixture.project.to_str().unwrap()]);
    assert!(pushed.contains("pushed_etl: a new version"), "{pushed}");
    let again = ok(&laptop, &["push", fixture.project.to_str().unwrap()]);
    assert!(again.contains("pushed_etl: unchanged"), "{again}");
    ok(
        &laptop,
        &["dags", "trigger", "pushed_etl", "--run-id", "r1"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run: Value = serde_json::from_str(&ok(
            &laptop,
            &["runs", "show", "pushed_etl", "r1", "--output", "json"],
        ))
        .unwrap();
        if run["run"]["state"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Beside it, a Lite on the same home: its own ports, database and DAGs.
    let lite = fixture.lite();
    assert_ne!(lite.base, demo.base);
    let lite_dags = common::lite::Client::login(&lite.base)
        .await
        .get("/api/v2/dags")
        .await;
    let ids: Vec<&str> = lite_dags["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pushed_etl"], "Lite serves its project only");
    // Lite's own project is edited, not pushed: a push of it to the Lite is refused.
    let lite_password = fixture.scratch.join("lite-password");
    std::fs::write(&lite_password, common::lite::PASSWORD).unwrap();
    let lite_pw = lite_password.to_str().unwrap();
    login_admin(&laptop, &lite.base, lite_pw, "lite");
    let refused = common::remote::run(cli(
        &laptop,
        &[
            "--profile",
            "lite",
            "push",
            fixture.project.to_str().unwrap(),
        ],
    ));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("hot-reloads"),
        "{}",
        text(&refused.stderr)
    );
    drop(lite);

    // A second start: no password shown, nothing pushed again, the history as it was.
    drop(demo);
    let demo = Demo::start(&home);
    assert!(shown_password(&demo.banner).is_none(), "{}", demo.banner);
    assert!(!demo.banner.contains("examples "), "{}", demo.banner);
    login_admin(&laptop, &demo.base, pw, "default");
    let listed: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "list", "--output", "json"])).unwrap();
    assert_eq!(listed["total_entries"].as_i64().unwrap(), examples + 1);
    let refused = common::remote::run(cli(&laptop, &["--profile", "nosuch", "dags", "list"]));
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    drop(demo);
    stop_postgres(&home.join("demo"));
}
