//! Human-in-the-loop details over `/api/v2`: a try waiting for a person's answer is listed and
//! read in its tenant only, an answer from someone the question is not assigned to is refused
//! with Airflow's 403, a good answer resumes the try (which then succeeds) and records who gave
//! it, and a second answer is Airflow's 409.

mod common;

use common::{TestApi, segment};
use reqwest::Method;
use serde_json::json;

fn asking(dag_id: &str, task_id: &str) -> String {
    format!(
        r#"
from airflow.sdk import DAG, task

@task(task_id="{task_id}")
def question():
    return None

with DAG("{dag_id}", schedule=None, is_paused_upon_creation=False):
    question()
"#
    )
}

/// Triggers a run of `dag_id` as `token` and waits until its question is asked.
async fn asked(api: &TestApi, token: &str, dag_id: &str) -> String {
    let (status, run) = api
        .call_as(
            token,
            Method::POST,
            &format!("/api/v2/dags/{dag_id}/dagRuns"),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let path = format!(
        "/api/v2/dags/{dag_id}/dagRuns/{}/hitlDetails",
        segment(&run_id)
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, list) = api.call_as(token, Method::GET, &path, None).await;
        if list["total_entries"] == 1 {
            return run_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never asked: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_are_their_tenants_and_answered_once_by_whom_they_are_assigned_to() {
    let api = TestApi::start(&asking("open_review", "ask")).await;
    api.register_into("acme", &asking("acme_review", "ask"), "acme")
        .await;
    api.register_into(
        "beta",
        &asking("beta_review", "ask_for_admin-of-beta"),
        "beta",
    )
    .await;
    let (acme, beta, platform) = (
        api.admin_of(Some("acme")),
        api.admin_of(Some("beta")),
        api.admin_of(None),
    );
    let acme_run = asked(&api, &acme, "acme_review").await;
    let beta_run = asked(&api, &beta, "beta_review").await;
    let all = "/api/v2/dags/~/dagRuns/~/hitlDetails";

    // Each tenant sees its own question only; a platform admin sees both.
    let (_, mine) = api.call_as(&acme, Method::GET, all, None).await;
    assert_eq!(mine["total_entries"], 1, "{mine}");
    let detail = &mine["hitl_details"][0];
    assert_eq!(detail["task_instance"]["dag_id"], "acme_review", "{mine}");
    assert_eq!(detail["subject"], "ask: which region?");
    assert_eq!(detail["options"], json!(["eu", "us"]));
    assert_eq!(detail["response_received"], false);
    assert_eq!(detail["task_instance"]["state"], "deferred");
    let (_, both) = api.call_as(&platform, Method::GET, all, None).await;
    assert_eq!(both["total_entries"], 2, "{both}");
    // beta's callers name its DAG as its file does; a platform admin by its key.
    let beta_detail_of = |dag: &str| {
        format!(
            "/api/v2/dags/{dag}/dagRuns/{}/taskInstances/ask_for_admin-of-beta/-1/hitlDetails",
            segment(&beta_run)
        )
    };
    let beta_detail = beta_detail_of("beta_review");
    for method in [Method::GET, Method::PATCH] {
        let body = (method == Method::PATCH).then(|| json!({"chosen_options": ["eu"]}));
        let (status, answer) = api.call_as(&acme, method.clone(), &beta_detail, body).await;
        assert_eq!(status, 404, "{method} as acme: {answer}");
        assert!(!answer.to_string().contains("which region"), "{answer}");
    }

    // beta's question is assigned to beta's admin: the platform admin may not answer it.
    let (status, refused) = api
        .call_as(
            &platform,
            Method::PATCH,
            &beta_detail_of("beta:beta_review"),
            Some(json!({"chosen_options": ["eu"]})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["detail"],
        "User=admin-of-all (id=admin-of-all) is not a respondent for the task."
    );
    let (status, answer) = api
        .call_as(
            &beta,
            Method::PATCH,
            &beta_detail,
            Some(json!({"chosen_options": ["us"]})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["responded_by"]["id"], "admin-of-beta", "{answer}");
    assert_eq!(answer["chosen_options"], json!(["us"]));
    // The answer resumed the try, which succeeded.
    assert_eq!(api.wait_for("beta:beta_review", &beta_run).await, "success");
    let (_, answered) = api.call_as(&beta, Method::GET, &beta_detail, None).await;
    assert_eq!(answered["response_received"], true, "{answered}");
    assert_eq!(answered["chosen_options"], json!(["us"]));
    assert_eq!(answered["responded_by_user"]["id"], "admin-of-beta");
    assert_eq!(answered["task_instance"]["state"], "success");
    let (status, again) = api
        .call_as(
            &beta,
            Method::PATCH,
            &beta_detail,
            Some(json!({"chosen_options": ["eu"]})),
        )
        .await;
    assert_eq!(status, 409, "{again}");

    // The lists filter by whether an answer came.
    let (_, pending) = api
        .call_as(
            &platform,
            Method::GET,
            &format!("{all}?response_received=false"),
            None,
        )
        .await;
    assert_eq!(pending["total_entries"], 1, "{pending}");
    assert_eq!(
        pending["hitl_details"][0]["task_instance"]["dag_run_id"], acme_run,
        "{pending}"
    );
    // Bad bodies are pydantic's 422, an unknown option too, naming it.
    let acme_detail = format!(
        "/api/v2/dags/acme_review/dagRuns/{}/taskInstances/ask/-1/hitlDetails",
        segment(&acme_run)
    );
    for (body, status) in [
        (json!({"chosen_options": "eu"}), 422),
        (json!({"options": ["eu"]}), 422),
        (json!({"chosen_options": ["mars"]}), 422),
    ] {
        let (got, answer) = api
            .call_as(&acme, Method::PATCH, &acme_detail, Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
    }
}
