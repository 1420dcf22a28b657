//! A real `leoflow lite` on a home of its own, with the managed Postgres that home gets, and
//! its API as a logged-in user: what the Lite and fault tests drive.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::{free_port, repo};

pub const PASSWORD: &str = "lite-test-admin-password";

/// A fresh, empty folder (homes live under /tmp: the managed Postgres socket path must stay
/// short).
pub fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lf-{what}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of `dags/{example}` to edit freely.
pub fn copy_example(example: &str, into: &Path) -> PathBuf {
    let project = into.join(example);
    std::fs::create_dir_all(&project).unwrap();
    for entry in std::fs::read_dir(repo().join("dags").join(example)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), project.join(entry.file_name())).unwrap();
        }
    }
    project
}

/// `leoflow` with `home`, the managed Postgres (no URL from the environment) and the test
/// venv's Python unless `python` says otherwise.
pub fn leoflow(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
    command
        .args(args)
        .env("LEOFLOW_HOME", home)
        .env_remove("LEOFLOW_DATABASE_URL")
        .env("LEOFLOW_POSTGRES", "managed")
        .stdin(Stdio::null());
    let venv = repo().join(".venv/bin/python");
    if std::env::var_os("LEOFLOW_PYTHON").is_none() && venv.exists() {
        command.env("LEOFLOW_PYTHON", venv);
    }
    command
}

pub fn output(command: &mut Command) -> Output {
    command.output().expect("run leoflow")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stop_postgres(home: &Path) {
    let _ = output(leoflow(home, &["postgres", "stop"]).stdout(Stdio::null()));
}

/// A running `leoflow lite`, its ports chosen free.
pub struct Lite {
    pub child: Child,
    pub base: String,
    pub metrics: String,
    pub banner: String,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Lite {
    /// Starts Lite and waits for its banner.
    pub fn start(command: Command) -> Self {
        Self::start_with_stderr(command, Stdio::inherit())
    }

    /// Starts Lite with its stderr (its diagnostics) going to `stderr`, and waits for its
    /// banner.
    pub fn start_with_stderr(mut command: Command, stderr: Stdio) -> Self {
        let port = free_port();
        let metrics = free_port();
        let mut child = command
            .args(["--no-ui", "--port", &port.to_string()])
            .args(["--grpc-port", &free_port().to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start leoflow lite");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[lite] {line}");
                let _ = lines_tx.send(line);
            }
        });
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("lite did not become ready:\n{banner}"));
            if line.starts_with("Following the event log") {
                break;
            }
            banner.push_str(&line);
            banner.push('\n');
        }
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            banner,
            lines,
        }
    }

    /// Waits for a printed line containing `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        self.lines_until(needle).pop().expect("the line found")
    }

    /// The lines printed until one containing `needle`, that one last.
    pub fn lines_until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("lite never printed {needle:?}"));
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// The lines printed during the next `period`.
    pub fn lines_for(&self, period: Duration) -> Vec<String> {
        let deadline = Instant::now() + period;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }

    pub fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: a plain signal to the child this test spawned.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().unwrap()
    }
}

impl Drop for Lite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API as a logged-in user.
pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Client {
    pub async fn login(base: &str) -> Self {
        Self::login_as(base, PASSWORD).await
    }

    pub async fn login_as(base: &str, password: &str) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/auth/token"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "login");
        let body: Value = response.json().await.unwrap();
        Self {
            base: base.to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
            http,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Polls `path` until `done` holds (or fails after a minute, showing the last answer).
    pub async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.get(path).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never got there: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Unpauses `dag_id`, triggers it and waits for the run to succeed; returns its id.
    pub async fn run_to_success(&self, dag_id: &str) -> String {
        let (status, body) = self
            .call(
                Method::PATCH,
                &format!("/api/v2/dags/{dag_id}"),
                Some(json!({"is_paused": false})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, run) = self
            .call(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(json!({"logical_date": null})),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        let run = self
            .until(&format!("/api/v2/dags/{dag_id}/dagRuns/{run_id}"), |run| {
                run["state"] == "success" || run["state"] == "failed"
            })
            .await;
        assert_eq!(run["state"], "success", "{run}");
        run_id
    }
}

/// A home and a project holding `dag_py`, both removed (the home's Postgres stopped) at the
/// end; Lite runs on them with the managed Postgres.
pub struct LiteProject {
    pub scratch: PathBuf,
    pub home: PathBuf,
    pub project: PathBuf,
}

impl LiteProject {
    pub fn new(what: &str, dag_py: &str) -> Self {
        let scratch = scratch(what);
        let project = scratch.join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
        Self {
            home: scratch.join("home"),
            project,
            scratch,
        }
    }

    /// Lite on the project, its admin's password [`PASSWORD`].
    pub fn lite(&self) -> Lite {
        let mut command = leoflow(&self.home, &["lite", self.project.to_str().unwrap()]);
        command.env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
        Lite::start(command)
    }
}

impl Drop for LiteProject {
    fn drop(&mut self) {
        stop_postgres(&self.home);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
