//! `leoflow variables`, `leoflow connections` and `leoflow pools` against a real `leoflow
//! server` (Postgres, Redis): set, get and list in a table and as JSON, export and import back,
//! delete, bad files refused before anything is sent, the server's refusals shown with their
//! detail and exit codes (3 no server, 4 not allowed, 5 not found), and each tenant's caller
//! seeing only its tenant's. The CLI runs from a laptop home with no database, logged in with
//! `leoflow login`.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use common::lite::text;
use common::remote::{cli, run, token_file};
use common::server::Deployment;
use serde_json::{Value, json};

/// The laptop: its home and the profiles `leoflow login` made in it.
struct Laptop {
    home: PathBuf,
    files: PathBuf,
}

impl Laptop {
    /// `leoflow --profile PROFILE ARGS…`.
    fn run(&self, profile: &str, args: &[&str]) -> Output {
        run(cli(
            &self.home,
            &[&["--profile", profile][..], args].concat(),
        ))
    }

    /// Runs and asserts success; its stdout.
    fn ok(&self, profile: &str, args: &[&str]) -> String {
        let out = self.run(profile, args);
        assert!(
            out.status.success(),
            "{args:?} as {profile}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs and parses stdout as JSON.
    fn json(&self, profile: &str, args: &[&str]) -> Value {
        let out = self.ok(profile, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Runs and asserts the exit code `code`; its stderr.
    fn refused(&self, profile: &str, args: &[&str], code: i32) -> String {
        let out = self.run(profile, args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?} as {profile}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    /// A file of the test's named `name` holding `contents`; its path.
    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.files.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The JSON in a file.
    fn read(&self, path: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// The keys of a JSON list of entries, by their `field`.
fn keys<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}

/// The line of a table that starts with `key`.
fn line<'a>(table: &'a str, key: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key}: {table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_connections_and_pools_against_a_server() {
    let deployment = Deployment::start("remote-config").await;
    let api = deployment.replica("all");
    let base = api.base.as_str();
    let laptop = Laptop {
        home: deployment.scratch.join("laptop"),
        files: deployment.scratch.join("files"),
    };
    std::fs::create_dir_all(&laptop.files).unwrap();

    // Without a server: exit 3, saying how to log in.
    let nowhere = run(cli(&laptop.home, &["variables", "list"]));
    assert_eq!(nowhere.status.code(), Some(3), "{}", text(&nowhere.stderr));
    let why = text(&nowhere.stderr);
    assert!(
        why.contains("leoflow login --server URL") && why.contains("http://localhost:8088"),
        "{why}"
    );

    for (profile, role, tenant) in [
        ("platform", "Admin", "*"),
        ("acme", "Op", "acme"),
        ("viewer", "Viewer", "*"),
    ] {
        let token = token_file(&deployment, role, tenant);
        let login = run(
            cli(&laptop.home, &["login", "--server", base, "--token-file"])
                .arg(&token)
                .args(["--profile", profile]),
        );
        assert!(login.status.success(), "{}", text(&login.stderr));
    }

    variables(&laptop);
    connections(&laptop);
    pools(&laptop);
}

fn variables(laptop: &Laptop) {
    let lf = |args: &[&str]| laptop.ok("platform", &[&["variables"][..], args].concat());

    // Set creates, then updates (the description kept); get prints the value.
    let created = lf(&["set", "greeting", "hello", "--description", "A greeting"]);
    assert!(created.contains("Variable greeting created"), "{created}");
    let updated = lf(&["set", "greeting", "hi"]);
    assert!(updated.contains("Variable greeting updated"), "{updated}");
    assert_eq!(lf(&["get", "greeting"]), "hi\n");
    let whole = laptop.json(
        "platform",
        &["variables", "get", "greeting", "--output", "json"],
    );
    assert_eq!(
        whole,
        json!({"key": "greeting", "value": "hi", "description": "A greeting",
               "is_encrypted": true, "team_name": null})
    );
    lf(&[
        "set",
        "limits",
        r#"{"rows": 10, "tables": ["a"]}"#,
        "--json",
    ]);
    let limits: Value = serde_json::from_str(lf(&["get", "limits"]).trim()).unwrap();
    assert_eq!(limits, json!({"rows": 10, "tables": ["a"]}));
    lf(&["set", "db_password", "hunter2"]);

    // The list: a table with the team, or Airflow's responses.
    let table = lf(&["list"]);
    let header = table.lines().next().unwrap();
    for column in ["KEY", "VALUE", "DESCRIPTION", "TEAM"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(line(&table, "greeting").contains("A greeting"), "{table}");
    assert!(line(&table, "db_password").contains("***"), "{table}");
    assert!(!table.contains("hunter2"), "{table}");
    let listed = laptop.json("platform", &["variables", "list", "--output", "json"]);
    assert_eq!(keys(&listed, "key"), ["db_password", "greeting", "limits"]);
    let yaml = lf(&["list", "--output", "yaml"]);
    assert!(yaml.contains("key: greeting"), "{yaml}");

    // Export: Airflow's file; the masked value is named on stderr.
    let exported = laptop.files.join("variables.json");
    let exported = exported.to_str().unwrap();
    let out = laptop.run("platform", &["variables", "export", exported]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("db_password") && text(&out.stderr).contains("***"),
        "{}",
        text(&out.stderr)
    );
    let file = laptop.read(exported);
    assert_eq!(
        file,
        json!({
            "db_password": "***",
            "greeting": {"value": "hi", "description": "A greeting"},
            "limits": {"rows": 10, "tables": ["a"]},
        })
    );
    let to_stdout = laptop.json("platform", &["variables", "export", "-"]);
    assert_eq!(to_stdout, file);

    // Importing the masked value back is refused, naming the file and the key, and nothing is
    // sent.
    lf(&["delete", "greeting"]);
    let refused = laptop.refused("platform", &["variables", "import", exported], 1);
    assert!(
        refused.contains(exported) && refused.contains("\"db_password\""),
        "{refused}"
    );
    laptop.refused("platform", &["variables", "get", "greeting"], 5);
    // Without it, the round trip: what was deleted comes back as it was.
    let mut edited = file.clone();
    edited.as_object_mut().unwrap().remove("db_password");
    let edited = laptop.file("variables-edited.json", &edited.to_string());
    let imported = lf(&["import", &edited]);
    assert!(imported.contains("2 of 2 variables imported"), "{imported}");
    let back = laptop.json(
        "platform",
        &["variables", "get", "greeting", "--output", "json"],
    );
    assert_eq!(
        (&back["value"], &back["description"]),
        (&json!("hi"), &json!("A greeting"))
    );
    assert_eq!(
        laptop.json("platform", &["variables", "get", "limits"]),
        limits
    );
    // Existing keys: fail refuses with the server's 409, skip skips.
    let fail = laptop.refused(
        "platform",
        &[
            "variables",
            "import",
            &edited,
            "--action-on-existing-key",
            "fail",
        ],
        1,
    );
    assert!(
        fail.contains("409") && fail.contains("already exist"),
        "{fail}"
    );
    let skip = lf(&["import", &edited, "--action-on-existing-key", "skip"]);
    assert!(
        skip.contains("0 of 2") && skip.contains("Skipped, as they exist: greeting, limits"),
        "{skip}"
    );

    // Bad files: named, exit 1, nothing sent.
    for (name, contents, says) in [
        ("not-json.json", "{\"a\": ", "is not JSON"),
        ("a-list.json", "[1, 2]", "is not a JSON object"),
        ("twice.json", r#"{"a": 1, "a": 2}"#, "\"a\" is given twice"),
        (
            "bad-description.json",
            r#"{"fresh": {"value": "v", "description": 3}}"#,
            "\"fresh\": `description` must be a string",
        ),
    ] {
        let path = laptop.file(name, contents);
        let refused = laptop.refused("platform", &["variables", "import", &path], 1);
        assert!(
            refused.contains(&path) && refused.contains(says),
            "{refused}"
        );
    }
    laptop.refused("platform", &["variables", "get", "fresh"], 5);

    // Delete; what does not exist exits 5.
    let deleted = lf(&["delete", "limits"]);
    assert!(deleted.contains("Variable limits deleted"), "{deleted}");
    laptop.refused("platform", &["variables", "delete", "limits"], 5);
    let missing = laptop.refused("platform", &["variables", "get", "limits"], 5);
    assert!(missing.contains("not found"), "{missing}");

    // A Viewer may not set one.
    let viewer = laptop.refused("viewer", &["variables", "set", "x", "1"], 4);
    assert!(viewer.contains("403"), "{viewer}");

    // Tenants: acme's caller sees only acme's, and cannot reach another tenant's.
    lf(&["set", "region", "eu", "--team", "acme"]);
    let acme = laptop.json("acme", &["variables", "list", "--output", "json"]);
    assert_eq!(keys(&acme, "key"), ["region"]);
    assert_eq!(acme[0]["team_name"], "acme");
    laptop.refused("acme", &["variables", "get", "greeting"], 5);
    laptop.refused("acme", &["variables", "list", "--team", "beta"], 4);
    laptop.ok("acme", &["variables", "set", "region", "us"]);
    assert_eq!(lf(&["get", "region", "--team", "acme"]), "us\n");
    let all = lf(&["list"]);
    assert!(line(&all, "region").trim_end().ends_with("acme"), "{all}");
    // A file holds one tenant's: the platform names it.
    let several = laptop.refused("platform", &["variables", "export", "-"], 1);
    assert!(several.contains("--team"), "{several}");
    let acme_file = laptop.json("platform", &["variables", "export", "-", "--team", "acme"]);
    assert_eq!(acme_file, json!({"region": "us"}));
    let defaults = laptop.json(
        "platform",
        &["variables", "export", "-", "--team", "default"],
    );
    assert!(defaults.get("region").is_none(), "{defaults}");
}

fn connections(laptop: &Laptop) {
    let lf = |args: &[&str]| laptop.ok("platform", &[&["connections"][..], args].concat());
    let password = laptop.file("password", "s3cret\n");

    let created = lf(&[
        "set",
        "my_db",
        "--conn-type",
        "postgres",
        "--host",
        "db.internal",
        "--port",
        "5432",
        "--login",
        "etl",
        "--password-file",
        &password,
        "--extra",
        r#"{"sslmode": "require", "api_token": "t0k"}"#,
    ]);
    assert!(created.contains("Connection my_db created"), "{created}");
    // Set again changes what it gives and keeps the rest (the password too).
    let updated = lf(&[
        "set",
        "my_db",
        "--conn-type",
        "postgres",
        "--schema",
        "warehouse",
    ]);
    assert!(updated.contains("Connection my_db updated"), "{updated}");
    let one = laptop.json(
        "platform",
        &["connections", "get", "my_db", "--output", "json"],
    );
    assert_eq!(
        (&one["host"], &one["port"], &one["schema"], &one["password"]),
        (
            &json!("db.internal"),
            &json!(5432),
            &json!("warehouse"),
            &json!("***")
        )
    );
    let shown = lf(&["get", "my_db"]);
    assert!(line(&shown, "host").contains("db.internal"), "{shown}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("t0k"),
        "{shown}"
    );

    let table = lf(&["list"]);
    for column in ["CONN_ID", "TYPE", "HOST", "PORT", "TEAM"] {
        assert!(table.lines().next().unwrap().contains(column), "{table}");
    }
    assert!(line(&table, "my_db").contains("db.internal"), "{table}");
    let listed = laptop.json("platform", &["connections", "list", "--output", "json"]);
    assert_eq!(keys(&listed, "connection_id"), ["my_db"]);

    // The server's 422, with its detail.
    let invalid = laptop.refused(
        "platform",
        &[
            "connections",
            "set",
            "bad",
            "--conn-type",
            "http",
            "--extra",
            "not json",
        ],
        1,
    );
    assert!(
        invalid.contains("422") && invalid.contains("extra"),
        "{invalid}"
    );

    // Export: no password (named on stderr), the extra's token masked.
    let exported = laptop.files.join("connections.json");
    let exported = exported.to_str().unwrap();
    let out = laptop.run("platform", &["connections", "export", exported]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let warned = text(&out.stderr);
    assert!(
        warned.contains("my_db") && warned.contains("never returns passwords"),
        "{warned}"
    );
    let file = laptop.read(exported);
    let entry = &file["my_db"];
    assert!(entry.get("password").is_none(), "{file}");
    assert_eq!(
        (&entry["conn_type"], &entry["host"], &entry["login"]),
        (&json!("postgres"), &json!("db.internal"), &json!("etl"))
    );

    // Import: an existing one is skipped; --overwrite changes what the file gives and keeps the
    // stored password and masked extra key.
    let skipped = lf(&["import", exported]);
    assert!(
        skipped.contains("Skipped, as they exist: my_db"),
        "{skipped}"
    );
    let mut moved = file.clone();
    moved["my_db"]["host"] = json!("db2.internal");
    let moved = laptop.file("connections-moved.json", &moved.to_string());
    let overwritten = lf(&["import", &moved, "--overwrite"]);
    assert!(overwritten.contains("1 of 1"), "{overwritten}");
    let one = laptop.json(
        "platform",
        &["connections", "get", "my_db", "--output", "json"],
    );
    assert_eq!(
        (&one["host"], &one["password"]),
        (&json!("db2.internal"), &json!("***"))
    );
    // The round trip: deleted, imported back from the file.
    lf(&["delete", "my_db"]);
    let imported = lf(&["import", exported]);
    assert!(
        imported.contains("1 of 1 connections imported"),
        "{imported}"
    );
    let back = laptop.json(
        "platform",
        &["connections", "get", "my_db", "--output", "json"],
    );
    assert_eq!(
        (&back["host"], &back["schema"], &back["port"]),
        (&json!("db.internal"), &json!("warehouse"), &json!(5432))
    );
    // A password from standard input.
    let mut piped = cli(
        &laptop.home,
        &[
            "--profile",
            "platform",
            "connections",
            "set",
            "my_db",
            "--conn-type",
            "postgres",
            "--password-file",
            "-",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin\n")
        .unwrap();
    assert!(piped.wait().unwrap().success());
    let one = laptop.json(
        "platform",
        &["connections", "get", "my_db", "--output", "json"],
    );
    assert_eq!(one["password"], "***");

    // A bad file: named with the key, nothing sent.
    let bad = laptop.file(
        "connections-bad.json",
        r#"{"fine": {"conn_type": "http"}, "my_db": {"conn_type": "postgres", "port": "abc"}}"#,
    );
    let refused = laptop.refused("platform", &["connections", "import", &bad], 1);
    assert!(
        refused.contains(&bad) && refused.contains("\"my_db\"") && refused.contains("`port`"),
        "{refused}"
    );
    laptop.refused("platform", &["connections", "get", "fine"], 5);

    laptop.refused("platform", &["connections", "get", "nope"], 5);
    laptop.refused("platform", &["connections", "delete", "nope"], 5);
    laptop.refused(
        "viewer",
        &["connections", "set", "x", "--conn-type", "http"],
        4,
    );

    // Tenants.
    laptop.ok(
        "acme",
        &["connections", "set", "acme_api", "--conn-type", "http"],
    );
    let acme = laptop.json("acme", &["connections", "list", "--output", "json"]);
    assert_eq!(keys(&acme, "connection_id"), ["acme_api"]);
    laptop.refused("acme", &["connections", "get", "my_db"], 5);
    let all = lf(&["list"]);
    assert!(line(&all, "acme_api").trim_end().ends_with("acme"), "{all}");
}

fn pools(laptop: &Laptop) {
    let lf = |args: &[&str]| laptop.ok("platform", &[&["pools"][..], args].concat());

    let created = lf(&["set", "etl", "4", "--description", "ETL"]);
    assert!(created.contains("Pool etl created"), "{created}");
    let updated = lf(&["set", "etl", "8", "--include-deferred"]);
    assert!(updated.contains("Pool etl updated"), "{updated}");
    let etl = laptop.json("platform", &["pools", "get", "etl", "--output", "json"]);
    assert_eq!(
        (&etl["slots"], &etl["description"], &etl["include_deferred"]),
        (&json!(8), &json!("ETL"), &json!(true))
    );
    let shown = lf(&["get", "etl"]);
    assert!(line(&shown, "open_slots").contains('8'), "{shown}");
    // default_pool takes slots, not a description (the server's 400, with its detail).
    lf(&["set", "default_pool", "64"]);
    let refused = laptop.refused(
        "platform",
        &["pools", "set", "default_pool", "64", "--description", "x"],
        1,
    );
    assert!(refused.contains("Only slots"), "{refused}");
    let unlimited = lf(&["set", "unlimited", "-1"]);
    assert!(unlimited.contains("created"), "{unlimited}");

    let table = lf(&["list"]);
    for column in ["NAME", "SLOTS", "OPEN", "TEAM"] {
        assert!(table.lines().next().unwrap().contains(column), "{table}");
    }
    assert!(line(&table, "default_pool").contains("64"), "{table}");
    let listed = laptop.json("platform", &["pools", "list", "--output", "json"]);
    assert_eq!(keys(&listed, "name"), ["default_pool", "etl", "unlimited"]);

    let exported = laptop.files.join("pools.json");
    let exported = exported.to_str().unwrap();
    lf(&["export", exported]);
    let file = laptop.read(exported);
    assert_eq!(
        file["etl"],
        json!({"slots": 8, "description": "ETL", "include_deferred": true})
    );
    assert_eq!(file["default_pool"]["slots"], 64);
    lf(&["delete", "etl"]);
    lf(&["set", "default_pool", "128"]);
    let imported = lf(&["import", exported]);
    assert!(imported.contains("3 of 3 pools imported"), "{imported}");
    let etl = laptop.json("platform", &["pools", "get", "etl", "--output", "json"]);
    assert_eq!(
        (&etl["slots"], &etl["include_deferred"]),
        (&json!(8), &json!(true))
    );
    let default = laptop.json(
        "platform",
        &["pools", "get", "default_pool", "--output", "json"],
    );
    assert_eq!(default["slots"], 64);

    let bad = laptop.file("pools-bad.json", r#"{"etl": {"slots": "ten"}}"#);
    let refused = laptop.refused("platform", &["pools", "import", &bad], 1);
    assert!(
        refused.contains(&bad) && refused.contains("\"etl\"") && refused.contains("`slots`"),
        "{refused}"
    );
    let refused = laptop.refused("platform", &["pools", "delete", "default_pool"], 1);
    assert!(refused.contains("can't be deleted"), "{refused}");
    laptop.refused("platform", &["pools", "get", "nope"], 5);
    laptop.refused("platform", &["pools", "delete", "nope"], 5);
    // A Viewer reads pools, and may not set one.
    laptop.ok("viewer", &["pools", "get", "etl"]);
    laptop.refused("viewer", &["pools", "set", "x", "1"], 4);

    // Tenants: acme has its own default_pool and pools.
    laptop.ok("acme", &["pools", "set", "acme_etl", "2"]);
    let acme = laptop.json("acme", &["pools", "list", "--output", "json"]);
    assert_eq!(keys(&acme, "name"), ["acme_etl", "default_pool"]);
    assert!(
        acme.as_array()
            .unwrap()
            .iter()
            .all(|p| p["team_name"] == "acme"),
        "{acme}"
    );
    let acme_default = laptop.json(
        "acme",
        &["pools", "get", "default_pool", "--output", "json"],
    );
    assert_eq!(acme_default["slots"], 128);
    laptop.refused("acme", &["pools", "get", "etl"], 5);
    let theirs = laptop.json(
        "platform",
        &["pools", "list", "--team", "acme", "--output", "json"],
    );
    assert_eq!(keys(&theirs, "name"), ["acme_etl", "default_pool"]);
    let acme_file = laptop.json("acme", &["pools", "export", "-"]);
    assert_eq!(acme_file["acme_etl"]["slots"], 2);
}
