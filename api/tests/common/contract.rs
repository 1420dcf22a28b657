//! The contract: every response a test receives must validate against Airflow 3.2.2's own
//! OpenAPI documents, read from the `apache-airflow-core==3.2.2` wheel (fetched from the
//! package index once, checked against its pinned SHA-256; never committed).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use leoflow_api::assets::{WHEEL_FILE, WHEEL_SHA256, WHEEL_URL};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DOCUMENTS: [&str; 3] = [
    "airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml",
    "airflow/api_fastapi/core_api/openapi/_private_ui.yaml",
    // The login routes of Airflow's simple auth manager, which Lite's login follows.
    "airflow/api_fastapi/auth/managers/simple/openapi/v2-simple-auth-manager-generated.yaml",
];

/// The wheel, from `LEOFLOW_AIRFLOW_WHEEL`, the test venv's cache, or the package index.
pub fn wheel() -> PathBuf {
    if let Some(path) = std::env::var_os("LEOFLOW_AIRFLOW_WHEEL") {
        return PathBuf::from(path);
    }
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/artifacts");
    let path = cache.join(WHEEL_FILE);
    if !path.is_file() {
        std::fs::create_dir_all(&cache).unwrap();
        let bytes = std::thread::spawn(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                reqwest::get(WHEEL_URL)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
        .join()
        .unwrap();
        let partial = cache.join(format!("{WHEEL_FILE}.{}", std::process::id()));
        std::fs::write(&partial, &bytes).unwrap();
        std::fs::rename(&partial, &path).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        WHEEL_SHA256,
        "{} is not the pinned wheel",
        path.display()
    );
    path
}

/// Airflow's OpenAPI documents, and validators built from them on demand.
pub struct Contract {
    documents: Vec<Value>,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

/// Loaded once per test binary.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel()).unwrap()).unwrap();
        let documents = DOCUMENTS
            .iter()
            .map(|name| {
                let mut text = String::new();
                archive
                    .by_name(name)
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
                serde_norway::from_str::<Value>(&text).unwrap()
            })
            .collect();
        let mut documents: Vec<Value> = documents;
        correct(&mut documents[0]);
        Contract {
            documents,
            validators: Mutex::new(HashMap::new()),
        }
    })
}

/// Known defects of Airflow's documents that even Airflow's own answers break, each corrected
/// as narrowly as it can be.
fn correct(rest: &mut Value) {
    // `ClearTaskInstanceCollectionResponse.task_instances` items are `oneOf` a
    // TaskInstanceResponse or a NewTaskResponse ({task_id, task_display_name}); every
    // TaskInstanceResponse is also a NewTaskResponse, so `oneOf` can never hold for a full one.
    let items = &mut rest["components"]["schemas"]["ClearTaskInstanceCollectionResponse"]["properties"]
        ["task_instances"]["items"];
    let alternatives = items["oneOf"].take();
    assert!(
        alternatives.is_array(),
        "the defect is gone: drop this correction"
    );
    *items = json!({ "anyOf": alternatives });
}

impl Contract {
    /// Every documented operation: (method, path template), all documents.
    pub fn operations(&self) -> Vec<(String, String)> {
        self.operations_with_security()
            .into_iter()
            .map(|(method, template, _)| (method, template))
            .collect()
    }

    /// Every documented operation with whether Airflow's document requires credentials for
    /// it (a non-empty `security`, on the operation or the whole document).
    pub fn operations_with_security(&self) -> Vec<(String, String, bool)> {
        let mut all = Vec::new();
        for doc in &self.documents {
            let default = doc["security"].as_array().is_some_and(|s| !s.is_empty());
            for (template, operations) in doc["paths"].as_object().unwrap() {
                for (method, operation) in operations.as_object().unwrap() {
                    if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                        let secured = match operation["security"].as_array() {
                            Some(requirements) => !requirements.is_empty(),
                            None => default,
                        };
                        all.push((method.to_ascii_uppercase(), template.clone(), secured));
                    }
                }
            }
        }
        all
    }
}

/// How many literal segments a path template has (the most specific template wins).
fn literal_segments(template: &str) -> usize {
    template.split('/').filter(|s| !s.starts_with('{')).count()
}

fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

impl Contract {
    /// The documented operation for `method` `path` (a concrete path, no query).
    fn operation(&self, method: &str, path: &str) -> Option<(usize, String)> {
        let method = method.to_ascii_lowercase();
        let mut best: Option<(usize, String)> = None;
        for (index, doc) in self.documents.iter().enumerate() {
            for (template, operations) in doc["paths"].as_object().unwrap() {
                if operations.get(&method).is_some()
                    && matches(template, path)
                    && best
                        .as_ref()
                        .is_none_or(|(_, b)| literal_segments(template) > literal_segments(b))
                {
                    best = Some((index, template.clone()));
                }
            }
        }
        best
    }

    /// Panics unless `body` is what Airflow documents for this operation and status.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let Some((index, template)) = self.operation(method, path) else {
            panic!("{method} {path} is not an operation of Airflow's API");
        };
        let doc = &self.documents[index];
        let operation = &doc["paths"][&template][method.to_ascii_lowercase()];
        let response = &operation["responses"][status.to_string()];
        assert!(
            !response.is_null(),
            "{method} {path} answered {status}, which Airflow does not document for {template}: {body}"
        );
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            // Documented without a JSON body (204s, redirects).
            return;
        };
        let key = format!("{index} {method} {template} {status}");
        let validator = self
            .validators
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(|| {
                let mut root = schema.clone();
                if let Value::Object(map) = &mut root {
                    map.insert("components".into(), doc["components"].clone());
                } else {
                    root = json!({"allOf": [schema], "components": doc["components"]});
                }
                std::sync::Arc::new(
                    jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft202012)
                        .should_validate_formats(true)
                        .build(&root)
                        .unwrap_or_else(|e| panic!("{template}: unusable schema: {e}")),
                )
            })
            .clone();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .take(8)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} ({template}, {status}) breaks Airflow's schema:\n  {}\nbody: {}",
            errors.join("\n  "),
            truncate(&body.to_string())
        );
    }
}

fn truncate(text: &str) -> String {
    if text.len() > 3000 {
        format!("{}…", &text[..3000])
    } else {
        text.to_owned()
    }
}
