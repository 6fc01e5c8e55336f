//! The store client against a small in-process fake of the store's HTTP API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use function_base::store::{Envelope, Page, TableInfo};
use function_base::{StoreClient, StoreError};
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use serde::Deserialize;
use serde_json::{Value, json};

type Db = Arc<Mutex<BTreeMap<(String, String), Envelope>>>;

fn envelope(table: &str, id: &str, version: u64, data: Value) -> Result<Envelope, Problem> {
    match data {
        Value::Object(data) => Ok(Envelope {
            id: id.to_string(),
            table: table.to_string(),
            version,
            created_at: "2024-05-01T10:00:00Z".into(),
            updated_at: "2024-05-01T10:00:00Z".into(),
            data,
        }),
        _ => Err(Problem::bad_request("the body must be a JSON object")),
    }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn create(State(db): State<Db>, Path(table): Path<String>, body: String) -> Response {
    let data: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut db = db.lock().unwrap();
    let id = format!("id{:04}", db.len() + 1);
    match envelope(&table, &id, 1, data) {
        Ok(env) => {
            db.insert((table, id), env.clone());
            json_response(StatusCode::CREATED, &env)
        }
        Err(p) => ProblemResponse(p).into_response(),
    }
}

async fn read(State(db): State<Db>, Path((table, id)): Path<(String, String)>) -> Response {
    match db.lock().unwrap().get(&(table, id.clone())) {
        Some(env) => json_response(StatusCode::OK, env),
        None => ProblemResponse(Problem::not_found(format!("no document {id}"))).into_response(),
    }
}

async fn replace(
    State(db): State<Db>,
    Path((table, id)): Path<(String, String)>,
    body: String,
) -> Response {
    let data: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut db = db.lock().unwrap();
    let key = (table.clone(), id.clone());
    let (status, version) = match db.get(&key) {
        Some(old) => (StatusCode::OK, old.version + 1),
        None => (StatusCode::CREATED, 1),
    };
    match envelope(&table, &id, version, data) {
        Ok(env) => {
            db.insert(key, env.clone());
            json_response(status, &env)
        }
        Err(p) => ProblemResponse(p).into_response(),
    }
}

async fn patch(
    State(db): State<Db>,
    Path((table, id)): Path<(String, String)>,
    body: String,
) -> Response {
    let Ok(Value::Object(patch)) = serde_json::from_str::<Value>(&body) else {
        return ProblemResponse(Problem::bad_request("a merge patch is a JSON object"))
            .into_response();
    };
    let mut db = db.lock().unwrap();
    let Some(env) = db.get_mut(&(table, id.clone())) else {
        return ProblemResponse(Problem::not_found(format!("no document {id}"))).into_response();
    };
    for (k, v) in patch {
        if v.is_null() {
            env.data.remove(&k);
        } else {
            env.data.insert(k, v);
        }
    }
    env.version += 1;
    json_response(StatusCode::OK, &*env)
}

async fn remove(State(db): State<Db>, Path((table, id)): Path<(String, String)>) -> Response {
    match db.lock().unwrap().remove(&(table, id.clone())) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => ProblemResponse(Problem::not_found(format!("no document {id}"))).into_response(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: usize,
    after: Option<String>,
}

async fn list(
    State(db): State<Db>,
    Path(table): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let db = db.lock().unwrap();
    let docs: Vec<Envelope> = db
        .iter()
        .filter(|((t, id), _)| *t == table && q.after.as_ref().is_none_or(|a| id > a))
        .map(|(_, env)| env.clone())
        .take(q.limit + 1)
        .collect();
    let next = (docs.len() > q.limit).then(|| docs[q.limit - 1].id.clone());
    let docs = docs.into_iter().take(q.limit).collect();
    json_response(StatusCode::OK, &Page { docs, next })
}

async fn tables(State(db): State<Db>) -> Response {
    let mut counts = BTreeMap::<String, u64>::new();
    for (table, _) in db.lock().unwrap().keys() {
        *counts.entry(table.clone()).or_default() += 1;
    }
    let tables: Vec<TableInfo> = counts
        .into_iter()
        .map(|(name, count)| TableInfo { name, count })
        .collect();
    json_response(StatusCode::OK, &tables)
}

async fn fake_store() -> (String, tokio::task::JoinHandle<()>) {
    let db: Db = Arc::default();
    let app = Router::new()
        .route("/tables", get(tables))
        .route("/tables/{table}/docs", get(list).post(create))
        .route(
            "/tables/{table}/docs/{id}",
            get(read).put(replace).patch(patch).delete(remove),
        )
        .route(
            "/broken/tables/{table}/docs",
            get(|| async {
                (
                    StatusCode::BAD_GATEWAY,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "upstream down",
                )
            }),
        )
        .with_state(db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test]
async fn documents_round_trip() {
    let (url, _task) = fake_store().await;
    let store = StoreClient::new(format!("{url}/"));
    let payments = store.table("payments");

    let created = payments
        .create(&json!({"amount": 10, "to": "ann"}))
        .await
        .unwrap();
    assert_eq!(created.table, "payments");
    assert_eq!(created.data["amount"], 10);
    let got = payments.get(&created.id).await.unwrap().unwrap();
    assert_eq!(got, created);

    #[derive(serde::Serialize)]
    struct Payment {
        amount: u32,
    }
    let replaced = payments
        .replace(&created.id, &Payment { amount: 20 })
        .await
        .unwrap();
    assert_eq!(replaced.version, 2);
    assert_eq!(replaced.data.get("to"), None);
    let patched = payments
        .patch(&created.id, &json!({"to": "bob", "amount": null}))
        .await
        .unwrap();
    assert_eq!(Value::Object(patched.data), json!({"to": "bob"}));

    let fresh = payments
        .replace("chosen-id", &json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(fresh.id, "chosen-id");
    assert_eq!(fresh.version, 1);

    assert!(payments.delete(&created.id).await.unwrap());
    assert!(!payments.delete(&created.id).await.unwrap());
    assert_eq!(payments.get(&created.id).await.unwrap(), None);
}

#[tokio::test]
async fn pages_and_tables() {
    let (url, _task) = fake_store().await;
    let store = StoreClient::new(url);
    let items = store.table("items");
    for i in 0..5 {
        items.create(&json!({ "n": i })).await.unwrap();
    }
    store.table("other").create(&json!({})).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = items.list(2, after.as_deref()).await.unwrap();
        seen.extend(page.docs.iter().map(|d| d.data["n"].clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec![json!(0), json!(1), json!(2), json!(3), json!(4)]);
    let tables = store.tables().await.unwrap();
    assert_eq!(
        tables,
        vec![
            TableInfo {
                name: "items".into(),
                count: 5
            },
            TableInfo {
                name: "other".into(),
                count: 1
            },
        ]
    );
}

#[tokio::test]
async fn errors_carry_the_problem_detail() {
    let (url, _task) = fake_store().await;
    let store = StoreClient::new(url.clone());
    let err = store.table("t").create(&json!([1, 2])).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    let StoreError::Api(problem) = &err else {
        panic!("expected a problem, got {err:?}");
    };
    assert_eq!(problem.detail, "the body must be a JSON object");
    assert!(err.to_string().contains("the body must be a JSON object"));

    let err = store
        .table("t")
        .patch("missing", &json!({"a": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));

    // A non-problem answer still gives the status and the text.
    let broken = StoreClient::new(format!("{url}/broken"));
    let err = broken.table("t").list(10, None).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert!(err.to_string().contains("upstream down"), "{err}");

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = StoreClient::new(format!("http://127.0.0.1:{port}"))
        .table("t")
        .get("x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unreachable(_)), "{err:?}");

    let err = StoreClient::new("not a url")
        .table("t")
        .get("x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
}
