//! Lite's built-in editor over a real server and a real project folder: files listed, read,
//! saved and created; every way out of the project refused (`..`, plain or percent-encoded,
//! absolute paths, symbolic links leading outside, for reads and writes); oversized and
//! binary content refused; anonymous callers refused or sent to the login page; the UI's
//! navigation entry (a plugin's external view); Monaco installed only from the pinned tarball
//! and served to the page.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use leoflow_api::auth::Auth;
use leoflow_api::credentials::Credentials;
use leoflow_api::editor::{TARBALL_ENV, TARBALL_INTEGRITY, install_monaco, installed_monaco};
use leoflow_api::{ApiState, Settings};
use leoflow_events::EventStore;
use leoflow_postgres::testing::{TestDatabase, fresh_database};
use leoflow_projector::ReadModels;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use common::{PASSWORD, TestApi, contract::contract};

const ETL: &str = "from leoflow import dag\n\n@dag\ndef etl():\n    pass\n";
const SECRET: &str = "outside the project\n";

/// A Lite server editing a fresh project folder, with a folder beside it that the editor
/// must never reach.
struct EditorApi {
    base: String,
    client: reqwest::Client,
    token: String,
    /// The project.
    project: PathBuf,
    /// Beside the project: `leak.txt` and `escape/` in the project lead here.
    outside: PathBuf,
    scratch: PathBuf,
    stop: watch::Sender<bool>,
    _db: TestDatabase,
}

impl Drop for EditorApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A fresh scratch folder.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leoflow-editor-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn write(path: &Path, content: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

impl EditorApi {
    /// Serves a project holding DAG files, dot-folders, byte code and symbolic links in and
    /// out of it; Monaco from `editor_assets` when given.
    async fn start(editor_assets: Option<PathBuf>) -> Self {
        let scratch = scratch();
        let (project, outside) = (scratch.join("project"), scratch.join("outside"));
        write(&project.join("dags/etl.py"), ETL);
        write(&project.join("config.yaml"), "schedule: daily\n");
        write(&project.join(".airflowignore"), "scratch/\n");
        write(&project.join(".git/HEAD"), "ref: refs/heads/main\n");
        write(&project.join(".venv/lib/site.py"), "");
        write(
            &project.join("dags/__pycache__/etl.cpython-312.pyc"),
            [0u8, 1, 2],
        );
        write(&outside.join("secret.txt"), SECRET);
        let link = |target: &str, link: &str| {
            std::os::unix::fs::symlink(target, project.join(link)).unwrap();
        };
        link("../outside/secret.txt", "leak.txt");
        link("../outside", "escape");
        link("../outside/not-yet.txt", "dangling.txt");
        link("dags/etl.py", "alias.py");
        Self::serve(scratch, project, outside, editor_assets).await
    }

    async fn serve(
        scratch: PathBuf,
        project: PathBuf,
        outside: PathBuf,
        editor_assets: Option<PathBuf>,
    ) -> Self {
        let db = fresh_database().await;
        let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
        let credentials = Credentials::new(PASSWORD);
        let state = ApiState {
            store,
            specs: Default::default(),
            auth: Arc::new(Auth::new(credentials.clone(), None)),
            vault: leoflow_secrets::Vault::new(db.pool.clone(), credentials.master_keys()),
            settings: Arc::new(Settings {
                project_dir: Some(project.clone()),
                editor_assets,
                ..Settings::lite()
            }),
            xcom_values: Default::default(),
            oidc: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(leoflow_api::serve(
            listener,
            leoflow_api::router(state, None),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .post(format!("{base}/auth/token"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let token = response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            base,
            client,
            token,
            project,
            outside,
            scratch,
            stop,
            _db: db,
        }
    }

    /// An authenticated request; the status and the body as JSON (`Null` when it is not).
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn read(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, &format!("/leoflow/api/files/{path}"), None)
            .await
    }

    async fn save(&self, path: &str, content: impl Into<Vec<u8>>) -> (u16, Value) {
        let path = format!("/leoflow/api/files/{path}");
        self.call(Method::PUT, &path, Some(content.into())).await
    }

    /// A request sent byte for byte as written: HTTP clients resolve `..` and `%2e%2e` in
    /// URLs before sending them, and these tests need the server to see them.
    async fn raw(&self, method: &str, target: &str, body: &str) -> (u16, String) {
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn on_disk(&self, path: &str) -> String {
        std::fs::read_to_string(self.project.join(path)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_files_are_listed_read_saved_and_created() {
    let api = EditorApi::start(None).await;

    let (status, listing) = api.call(Method::GET, "/leoflow/api/files", None).await;
    assert_eq!(status, 200, "{listing}");
    let paths: Vec<&str> = listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // No dot-folders, no byte code, no links leading outside; the link inside is a file.
    assert_eq!(
        paths,
        [".airflowignore", "alias.py", "config.yaml", "dags/etl.py"]
    );
    assert_eq!(listing["files"][3]["size"], ETL.len());

    let (status, file) = api.read("dags/etl.py").await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(
        file,
        json!({"path": "dags/etl.py", "size": ETL.len(), "content": ETL})
    );
    let (status, file) = api.read("config.yaml").await;
    assert_eq!(
        (status, file["content"].as_str()),
        (200, Some("schedule: daily\n"))
    );

    let edited = format!("{ETL}# edited in the browser\n");
    let (status, saved) = api.save("dags/etl.py", edited.clone()).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved, json!({"path": "dags/etl.py", "size": edited.len()}));
    assert_eq!(api.on_disk("dags/etl.py"), edited);
    assert_eq!(api.read("dags/etl.py").await.1["content"], edited);

    // A new file is created (201), with its folders inside the project.
    let (status, created) = api.save("dags/reports/daily.py", "# new\n").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["path"], "dags/reports/daily.py");
    assert_eq!(api.on_disk("dags/reports/daily.py"), "# new\n");
    assert_eq!(
        api.save("./dags//reports/daily.py", "# again\n").await.0,
        200
    );
    assert_eq!(api.on_disk("dags/reports/daily.py"), "# again\n");
    // Saving leaves no temporary file behind.
    let names: Vec<_> = std::fs::read_dir(api.project.join("dags/reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["daily.py"]);

    // A link to a file inside the project reads and writes that file.
    let (status, alias) = api.read("alias.py").await;
    assert_eq!((status, alias["content"].clone()), (200, json!(edited)));
    assert_eq!(api.save("alias.py", "# through the link\n").await.0, 200);
    assert_eq!(api.on_disk("dags/etl.py"), "# through the link\n");
    assert!(api.project.join("alias.py").is_symlink());

    let (status, missing) = api.read("dags/nothing.py").await;
    assert_eq!(status, 404, "{missing}");
    let (status, folder) = api.read("dags").await;
    assert_eq!(status, 400, "{folder}");
    assert_eq!(api.save("dags", "x").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_leading_outside_the_project_are_refused() {
    let api = EditorApi::start(None).await;
    let outside_file = api.outside.join("secret.txt").display().to_string();
    let escapes = [
        "/leoflow/api/files/../outside/secret.txt".to_owned(),
        "/leoflow/api/files/dags/../../outside/secret.txt".to_owned(),
        "/leoflow/api/files/%2e%2e/outside/secret.txt".to_owned(),
        "/leoflow/api/files/%2E%2E/outside/secret.txt".to_owned(),
        "/leoflow/api/files/dags%2F..%2F..%2Foutside%2Fsecret.txt".to_owned(),
        format!("/leoflow/api/files/{outside_file}"),
        format!("/leoflow/api/files/{}", outside_file.replace('/', "%2F")),
    ];
    for target in &escapes {
        for method in ["GET", "PUT"] {
            let (status, body) = api.raw(method, target, "overwritten").await;
            assert_eq!(status, 400, "{method} {target}: {body}");
            let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                detail.contains("`..`") || detail.contains("is absolute"),
                "{method} {target}: {detail}"
            );
        }
    }

    // Through symbolic links: a file outside, a folder outside, a link to nothing outside.
    for path in [
        "leak.txt",
        "escape/secret.txt",
        "escape/new.txt",
        "dangling.txt",
    ] {
        let (status, body) = api.read(path).await;
        assert_eq!(status, 403, "GET {path}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("does not resolve inside the project"),
            "{body}"
        );
        let (status, body) = api.save(path, "overwritten").await;
        assert_eq!(status, 403, "PUT {path}: {body}");
    }
    assert_eq!(
        std::fs::read_to_string(api.outside.join("secret.txt")).unwrap(),
        SECRET
    );
    let mut outside: Vec<_> = std::fs::read_dir(&api.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["secret.txt"], "nothing was created outside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_binary_content_is_refused() {
    let api = EditorApi::start(None).await;
    let (status, body) = api.save("dags/etl.py", vec![b'#'; (1 << 20) + 1]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("1 MiB"), "{body}");
    let (status, body) = api.save("dags/etl.py", vec![0x66, 0x6f, 0xff, 0xfe]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not UTF-8"),
        "{body}"
    );
    assert_eq!(api.on_disk("dags/etl.py"), ETL, "neither was written");
    assert_eq!(api.save("dags/limit.py", vec![b'#'; 1 << 20]).await.0, 201);

    write(&api.project.join("big.txt"), vec![b'x'; (1 << 20) + 1]);
    assert_eq!(api.read("big.txt").await.0, 413);
    let (status, body) = api.read("dags/__pycache__/etl.cpython-312.pyc").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not UTF-8"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_refused_and_the_page_sends_them_to_the_login() {
    let api = EditorApi::start(None).await;
    let url = |path: &str| format!("{}{path}", api.base);
    for request in [
        api.client.get(url("/leoflow/api/files")),
        api.client.get(url("/leoflow/api/files/dags/etl.py")),
        api.client
            .put(url("/leoflow/api/files/dags/etl.py"))
            .body("overwritten"),
        api.client
            .get(url("/leoflow/api/files"))
            .bearer_auth("not-a-token"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(api.on_disk("dags/etl.py"), ETL);

    let response = api.client.get(url("/leoflow/editor")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        "/api/v2/auth/login?next=/leoflow/editor"
    );
    // Logged in (the UI's cookie), without Monaco: the page says how to install it.
    let response = api
        .client
        .get(url("/leoflow/editor"))
        .header("cookie", format!("_token={}", api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = response.text().await.unwrap();
    assert!(page.contains("leoflow setup"), "{page}");
    assert!(page.contains(TARBALL_ENV), "{page}");
    let response = api
        .client
        .get(url("/leoflow/editor/vs/loader.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_navigation_bar_links_the_editor_only_when_there_is_a_project() {
    let lite = EditorApi::start(None).await;
    let (status, plugins) = lite.call(Method::GET, "/api/v2/plugins", None).await;
    assert_eq!(status, 200);
    contract().check("GET", "/api/v2/plugins", status, &plugins);
    assert_eq!(plugins["total_entries"], 1);
    let views = &plugins["plugins"][0]["external_views"];
    assert_eq!(views[0]["href"], "/leoflow/editor", "{plugins}");
    assert_eq!(views[0]["destination"], "nav", "{plugins}");
    assert_eq!(views[0]["url_route"], "editor", "{plugins}");
    let (status, paged) = lite
        .call(Method::GET, "/api/v2/plugins?offset=1", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(paged["plugins"], json!([]), "{paged}");
    assert_eq!(paged["total_entries"], 1, "{paged}");
    // Not under "Security": the UI would navigate away from a page outside /auth/.
    let (_, menus) = lite.call(Method::GET, "/ui/auth/menus", None).await;
    assert_eq!(menus["extra_menu_items"], json!([]));

    // Without a project (Pro), no plugin and no editor routes.
    let pro = TestApi::without_scheduler().await;
    assert_eq!(pro.get("/api/v2/plugins").await["total_entries"], 0);
    for path in [
        "/leoflow/editor",
        "/leoflow/api/files",
        "/leoflow/api/files/dag.py",
    ] {
        let (status, _) = pro.get_text(path, "application/json").await;
        assert_eq!(status, 404, "{path}");
    }
}

/// Sets `LEOFLOW_MONACO_TGZ` for this process.
fn set_tarball(value: Option<&Path>) {
    // SAFETY: nextest runs each test in a process of its own, and this test changes the
    // variable only while no other thread of it runs (its runtimes are current-thread ones
    // and have been shut down).
    unsafe {
        match value {
            Some(path) => std::env::set_var(TARBALL_ENV, path),
            None => std::env::remove_var(TARBALL_ENV),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn monaco_is_installed_only_from_the_pinned_tarball_and_served_to_the_page() {
    let scratch = scratch();
    let assets = scratch.join("editor");
    // A copy given beforehand (offline machines) is used for the real install below.
    let given = std::env::var_os(TARBALL_ENV).map(PathBuf::from);

    let corrupt = scratch.join("monaco-editor-0.57.0.tgz");
    std::fs::write(&corrupt, b"not the tarball").unwrap();
    set_tarball(Some(&corrupt));
    let error = runtime().block_on(install_monaco(&assets)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&corrupt.display().to_string()),
        "{message}"
    );
    assert!(message.contains(TARBALL_INTEGRITY), "{message}");
    assert!(
        message.contains("refusing a corrupt or different download"),
        "{message}"
    );
    assert!(installed_monaco(&assets).is_none());
    assert!(!assets.exists(), "nothing was written");

    // The real tarball: the given copy, else from the npm registry.
    set_tarball(given.as_deref());
    let installed = runtime().block_on(install_monaco(&assets)).unwrap();
    assert_eq!(installed_monaco(&assets).as_ref(), Some(&installed));
    assert!(installed.join("vs/loader.js").is_file());
    let marker = std::fs::metadata(installed.join(".complete")).unwrap();
    // A second install finds it there, even with a corrupt tarball named.
    set_tarball(Some(&corrupt));
    let again = runtime().block_on(install_monaco(&assets)).unwrap();
    assert_eq!(again, installed);
    let after = std::fs::metadata(installed.join(".complete")).unwrap();
    assert_eq!(after.modified().unwrap(), marker.modified().unwrap());
    let mut folders: Vec<_> = std::fs::read_dir(&assets)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        ["monaco-editor-0.57.0"],
        "no staging folder is left"
    );

    runtime().block_on(async {
        let api = EditorApi::start(Some(installed)).await;
        let get = |path: &str| {
            api.client
                .get(format!("{}{path}", api.base))
                .header("cookie", format!("_token={}", api.token))
                .send()
        };
        let response = get("/leoflow/editor").await.unwrap();
        assert_eq!(response.status(), 200);
        let page = response.text().await.unwrap();
        assert!(page.contains(r#"<script src="/leoflow/editor/vs/loader.js">"#));
        assert!(page.contains(r#"require(["vs/editor/editor.main"]"#));
        assert!(
            page.contains(r#"href="/""#),
            "a link back to the Airflow UI"
        );
        for file in [
            "loader.js",
            "editor/editor.main.js",
            "editor/editor.main.css",
        ] {
            let response = get(&format!("/leoflow/editor/vs/{file}")).await.unwrap();
            assert_eq!(response.status(), 200, "{file}");
        }
        // Monaco's basic languages, which highlight the project's Python and YAML.
        let languages = get("/leoflow/editor/vs/basic-languages/monaco.contribution.js")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(languages.contains(r#"id:"python",extensions:[".py""#));
        assert!(languages.contains(r#"id:"yaml",extensions:[".yaml",".yml"]"#));
        let (status, _) = api
            .raw("GET", "/leoflow/editor/vs/../../../outside/secret.txt", "")
            .await;
        assert_eq!(status, 404);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_saves_json_and_the_cookie_never_carries_another_body() {
    let api = EditorApi::start(None).await;
    let url = format!("{}/leoflow/api/files/dags/etl.py", api.base);
    let host = api.base.trim_start_matches("http://").to_owned();
    let save = |content_type: &str, body: String| {
        api.client
            .put(&url)
            .header("cookie", format!("_token={}", api.token))
            .header("origin", format!("http://{host}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let plain = save("text/plain; charset=utf-8", "x = 1\n".into())
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(api.on_disk("dags/etl.py"), ETL, "nothing was written");
    let json = save(
        "application/json",
        serde_json::json!({"content": "x = 2\n"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(api.on_disk("dags/etl.py"), "x = 2\n");
    let unknown = save(
        "application/json",
        serde_json::json!({"text": "x = 3\n"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
