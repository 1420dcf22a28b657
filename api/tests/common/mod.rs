//! A real API over a real Postgres: a project compiled from a dag.py and registered, the
//! scheduler's reactor running its tries through the real agent service (in process: each
//! try registers, logs, pushes its XCom and reports, with its attempt token), and the HTTP
//! server on a loopback port. Every response the tests read is checked against Airflow's
//! OpenAPI documents. [`TestApi::without_scheduler`] serves the same API over an empty
//! database, with no project and no scheduler.
#![allow(dead_code)] // each test binary uses its own subset

pub mod asset_dags;
pub mod contract;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leoflow_api::auth::{Auth, TrustedProxies};
use leoflow_api::credentials::Credentials;
use leoflow_api::{ApiState, Settings};
use leoflow_authoring::ingest::register;
use leoflow_authoring::python::PythonRuntime;
use leoflow_authoring::{compile_project, project_name};
use leoflow_events::EventStore;
use leoflow_executors::proto::finish_request::Outcome;
use leoflow_executors::proto::task_agent_server::TaskAgent;
use leoflow_executors::proto::{
    AttemptRef, FinishRequest, LogBatch, PushXComRequest, RegisterRequest, RenderedFields,
};
use leoflow_postgres::testing::{TestDatabase, fresh_database};
use leoflow_projector::ReadModels;
use leoflow_scheduler::agents::AgentService;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::reactor::{Attempt, Executor, Reactor};
use leoflow_secrets::Vault;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The admin password of test servers.
pub const PASSWORD: &str = "test-admin-password";

/// Runs every try in process through the agent service: tasks whose id contains `fail` fail,
/// tasks whose id starts with `ask` first wait for a person's answer ([`QUESTION`], assigned to
/// the users their id names after `ask_for_`), the others — and an answered question — log two
/// lines, push `{"task": …, "map_index": …}` and succeed.
struct InProcessAgents {
    service: Arc<tokio::sync::OnceCell<Arc<AgentService>>>,
}

/// What a task whose id starts with `ask` asks: "eu" or "us", assigned to the users its id names
/// after `ask_for_` (`ask_for_ann_bob`: `ann` and `bob`), with no deadline.
pub fn question(task_id: &str) -> Value {
    let assigned: Vec<Value> = task_id
        .strip_prefix("ask_for_")
        .map(|users| {
            users
                .split('_')
                .map(|id| json!({"id": id, "name": id}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "trigger": {
            "kind": "person",
            "request": {
                "subject": format!("{task_id}: which region?"), "body": null,
                "options": ["eu", "us"], "defaults": null, "multiple": false,
                "params": {}, "assigned_users": assigned,
            },
            "unanswered": {"error": "The timeout has passed", "error_type": "timeout"},
        },
        "method": "execute_complete",
        "kwargs": {},
    })
}

impl Executor for InProcessAgents {
    fn name(&self) -> &str {
        "in-process"
    }

    fn dispatch(&self, attempt: Attempt) {
        let service = self.service.clone();
        tokio::spawn(async move {
            let service = service
                .get()
                .expect("the service is set before runs start")
                .clone();
            let a = AttemptRef {
                dag_id: attempt.ti.dag_id.clone(),
                run_id: attempt.ti.run_id.clone(),
                task_id: attempt.ti.task_id.clone(),
                map_index: attempt.ti.map_index,
                try_number: attempt.try_number,
                attempt_token: attempt.attempt_token.to_string(),
            };
            let register = RegisterRequest {
                attempt: Some(a.clone()),
                hostname: "test-host".into(),
                pid: 4242,
            };
            let assignment = service
                .register(tonic::Request::new(register))
                .await
                .unwrap()
                .into_inner();
            let asks = a.task_id.starts_with("ask") && assignment.resume_json.is_none();
            let lines = vec![
                format!("running {} [{}]", a.task_id, a.map_index),
                "second line".to_owned(),
            ];
            let batch = LogBatch {
                attempt: Some(a.clone()),
                seq: 0,
                lines,
            };
            service
                .append_logs(tonic::Request::new(batch))
                .await
                .unwrap();
            let rendered = RenderedFields {
                attempt: Some(a.clone()),
                fields_json:
                    json!({"op_args": [a.map_index], "op_kwargs": {}, "templates_dict": null})
                        .to_string(),
            };
            service
                .report_rendered(tonic::Request::new(rendered))
                .await
                .unwrap();
            let failing = a.task_id.contains("fail");
            if asks {
                let finish = FinishRequest {
                    attempt: Some(a.clone()),
                    outcome: Outcome::Deferred as i32,
                    reason: String::new(),
                    branch: vec![],
                    proceed: None,
                    deferral_json: Some(question(&a.task_id).to_string()),
                    reschedule_at: None,
                    outlet_events_json: None,
                    runner_lost: false,
                };
                service.finish(tonic::Request::new(finish)).await.unwrap();
                return;
            }
            if !failing {
                let push = PushXComRequest {
                    attempt: Some(a.clone()),
                    key: "return_value".into(),
                    value_json: json!({"task": a.task_id, "map_index": a.map_index}).to_string(),
                };
                service.push_x_com(tonic::Request::new(push)).await.unwrap();
            }
            let finish = FinishRequest {
                attempt: Some(a),
                outcome: if failing {
                    Outcome::Failed
                } else {
                    Outcome::Success
                } as i32,
                reason: if failing {
                    "it was meant to fail".into()
                } else {
                    String::new()
                },
                branch: vec![],
                proceed: None,
                deferral_json: None,
                reschedule_at: None,
                outlet_events_json: None,
                runner_lost: false,
            };
            service.finish(tonic::Request::new(finish)).await.unwrap();
        });
    }

    fn terminate(&self, _attempt: &leoflow_executors::AttemptKey, _reason: &str) {}
}

/// A running API.
pub struct TestApi {
    /// The database.
    pub db: TestDatabase,
    /// The event store.
    pub store: EventStore,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An HTTP client without a token.
    pub client: reqwest::Client,
    /// The vault the API seals secrets with, so tests can open what it stored.
    pub vault: Vault,
    /// The key the API signs session tokens with, so tests can forge expired ones.
    pub token_signing_key: Vec<u8>,
    token: String,
    /// The compiled project's directory (none without a scheduler).
    project: Option<PathBuf>,
    stop: watch::Sender<bool>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(project) = &self.project {
            let _ = std::fs::remove_dir_all(project);
        }
    }
}

impl TestApi {
    /// Compiles and registers `dag_py`, runs the scheduler and serves the API.
    pub async fn start(dag_py: &str) -> Self {
        let db = fresh_database().await;
        let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
        let project =
            std::env::temp_dir().join(format!("leoflow-api-{}/project", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
        compile_and_register(&store, &project, leoflow_events::DEFAULT_TENANT).await;

        let service = Arc::new(tokio::sync::OnceCell::new());
        let executor = Arc::new(InProcessAgents {
            service: service.clone(),
        });
        let reactor = Reactor::new(store.clone(), executor);
        let agents = AgentService::new(
            store.clone(),
            reactor.specs(),
            reactor.liveness(),
            Duration::from_secs(5),
        );
        service.set(Arc::new(agents)).ok().unwrap();
        let specs = reactor.specs();
        let (stop, mut reactor_stop) = watch::channel(false);
        tokio::spawn(async move {
            let _ = reactor.run(reactor_stop.clone()).await;
            let _ = reactor_stop.changed().await;
        });
        Self::serve(db, store, specs, Some(project), stop).await
    }

    /// Compiles and registers the project again (a DAG deleted since comes back as new).
    pub async fn reparse(&self) {
        let project = self.project.as_ref().expect("a project");
        compile_and_register(&self.store, project, leoflow_events::DEFAULT_TENANT).await;
    }

    /// Registers a project `name` whose `dag.py` fails to import into `tenant`; returns the
    /// error recorded.
    pub async fn register_failing_into(&self, name: &str, tenant: &str) -> String {
        let project =
            std::env::temp_dir().join(format!("leoflow-api-{}/{name}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), "this is not python(\n").unwrap();
        let python = PythonRuntime::detect().await.unwrap();
        let compiled = compile_project(&project, &python, Duration::from_secs(60)).await;
        let registration = register(
            &self.store,
            &project_name(&project),
            tenant,
            &compiled,
            "test",
        )
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(project.parent().unwrap());
        registration.import_error.expect("an import error")
    }

    /// Compiles `dag_py` as another project, `name`, and registers it into `tenant`.
    pub async fn register_into(&self, name: &str, dag_py: &str, tenant: &str) {
        let project =
            std::env::temp_dir().join(format!("leoflow-api-{}/{name}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
        compile_and_register(&self.store, &project, tenant).await;
        let _ = std::fs::remove_dir_all(project.parent().unwrap());
    }

    /// Serves the API over a fresh database with no project and no scheduler: what a test
    /// appends only projects, so it reads back exactly what it wrote (pool statistics, ids).
    pub async fn without_scheduler() -> Self {
        Self::without_scheduler_behind(TrustedProxies::default()).await
    }

    /// [`TestApi::without_scheduler`] behind `proxies`: a request's client is read from its
    /// `X-Forwarded-For` when its peer (the test, on loopback) is one of them.
    pub async fn without_scheduler_behind(proxies: TrustedProxies) -> Self {
        let db = fresh_database().await;
        let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
        let (stop, _) = watch::channel(false);
        let auth = |credentials| Auth::new(credentials, None).with_trusted_proxies(proxies);
        Self::serve_with(db, store, Specs::default(), None, stop, auth).await
    }

    /// Serves the API on a loopback port until `stop` says so, and logs in.
    async fn serve(
        db: TestDatabase,
        store: EventStore,
        specs: Specs,
        project: Option<PathBuf>,
        stop: watch::Sender<bool>,
    ) -> Self {
        let auth = |credentials| Auth::new(credentials, None);
        Self::serve_with(db, store, specs, project, stop, auth).await
    }

    /// [`TestApi::serve`] with the [`Auth`] `auth` makes of the admin's credentials.
    async fn serve_with(
        db: TestDatabase,
        store: EventStore,
        specs: Specs,
        project: Option<PathBuf>,
        stop: watch::Sender<bool>,
        auth: impl FnOnce(Credentials) -> Auth,
    ) -> Self {
        let credentials = Credentials::new(PASSWORD);
        let state_vault = Vault::new(store.pool().clone(), credentials.master_keys());
        let state = ApiState {
            store: store.clone(),
            specs,
            auth: Arc::new(auth(credentials.clone())),
            vault: state_vault.clone(),
            settings: Arc::new(Settings::lite()),
            xcom_values: Default::default(),
            oidc: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut server_stop = stop.subscribe();
        tokio::spawn(leoflow_api::serve(
            listener,
            leoflow_api::router(state, None),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut api = Self {
            db,
            store,
            base,
            client,
            token_signing_key: credentials.token_signing_key.clone(),
            vault: state_vault,
            token: String::new(),
            project,
            stop,
        };
        api.token = api.login().await;
        api
    }

    /// Logs in as the admin; returns the token.
    pub async fn login(&self) -> String {
        let response = self
            .client
            .post(format!("{}/auth/token", self.base))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A session signed as this server signs them, with `claims` over a valid default (a
    /// subject, 10 minutes): add `role`, `tenant`, `dag_roles` as a sign-in would.
    pub fn session(&self, claims: Value) -> String {
        let now = chrono::Utc::now().timestamp() as u64;
        let mut all = json!({
            "sub": "someone", "jti": uuid::Uuid::new_v4().simple().to_string(),
            "aud": "apache-airflow", "nbf": now, "iat": now, "exp": now + 600, "auth_time": now,
        });
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        let key = jsonwebtoken::EncodingKey::from_secret(&self.token_signing_key).unwrap();
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
        jsonwebtoken::encode(&header, &all, &key).unwrap()
    }

    /// A session of an `Admin` of `tenant` (`None`: every tenant), as single sign-on issues it.
    pub fn admin_of(&self, tenant: Option<&str>) -> String {
        let mut claims =
            json!({"sub": format!("admin-of-{}", tenant.unwrap_or("all")), "role": "Admin"});
        if let Some(tenant) = tenant {
            claims["tenant"] = json!(tenant);
        }
        self.session(claims)
    }

    /// An authenticated request as the admin; the response is checked against Airflow's
    /// contract.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// [`TestApi::call`] with `token` (a [`TestApi::session`], say).
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{method} {path} answered {status} with non-JSON ({e}): {text}")
            })
        };
        let bare = path.split('?').next().unwrap();
        contract::contract().check(method.as_str(), bare, status, &value);
        (status, value)
    }

    /// `GET`, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Raw bytes of an authenticated `GET` with an `Accept` header.
    pub async fn get_text(&self, path: &str, accept: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Triggers a run of `dag_id` through the API and waits for it to finish; returns its id.
    pub async fn run(&self, dag_id: &str, conf: Value) -> String {
        let (status, run) = self
            .call(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(json!({"logical_date": null, "conf": conf})),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        self.wait_for(dag_id, &run_id).await;
        run_id
    }

    /// Waits until a run is finished; returns its state.
    pub async fn wait_for(&self, dag_id: &str, run_id: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let state: String =
                sqlx::query_scalar("SELECT state FROM dag_run WHERE dag_id = $1 AND run_id = $2")
                    .bind(dag_id)
                    .bind(run_id)
                    .fetch_one(&self.db.pool)
                    .await
                    .unwrap();
            if state == "success" || state == "failed" {
                return state;
            }
            if tokio::time::Instant::now() >= deadline {
                let tries: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = $1 AND run_id = $2",
                )
                .bind(dag_id)
                .bind(run_id)
                .fetch_all(&self.db.pool)
                .await
                .unwrap();
                panic!("{dag_id}/{run_id} did not finish ({state}): {tries:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Percent-encodes a path segment (run ids hold `:` and `+`).
pub fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Compiles `project` and registers it into `tenant`, which must succeed.
async fn compile_and_register(store: &EventStore, project: &Path, tenant: &str) {
    let python = PythonRuntime::detect().await.unwrap();
    let compiled = compile_project(project, &python, Duration::from_secs(60)).await;
    let registration = register(store, &project_name(project), tenant, &compiled, "test")
        .await
        .unwrap();
    assert!(registration.import_error.is_none(), "{registration:?}");
}
