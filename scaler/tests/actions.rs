//! The scaler's actions against an engine that fails where Docker can (an unpause refused) and
//! a fake gateway (axum on 127.0.0.1, port 0): a failed wake answers 503 problem+json with the
//! engine's words, leaves the route asleep (the gateway keeps holding, never forwards into a
//! frozen container) and is counted; a wake that works puts the route back to running.
//! The real engine is exercised end to end in tests/tests/scaling.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use rfa_engine::{EngineError, FunctionEngine, FunctionTemplate, Instance, Replica, ReplicaState};
use rfa_io::Token;
use rfa_scaler::act::Actor;
use rfa_scaler::gateway::Gateway;
use rfa_scaler::http::Api;
use rfa_scaler::metrics::Metrics;
use rfa_wire::route::{FunctionKind, FunctionRoute, Power, RunSpec};

const TOKEN: &str = "t0ken-t0ken-t0ken-t0ken-t0ken-t0ken";

/// A paused replica whose resume fails or works, recording what was done to it.
#[derive(Clone)]
struct FakeEngine {
    resume_fails: bool,
    done: Arc<Mutex<Vec<String>>>,
}

fn replica() -> Replica {
    Replica {
        container: "rfa-fn-echo".into(),
        id: "id".into(),
        function: "echo".into(),
        kind: FunctionKind::Http,
        deployment: "0000abcd".into(),
        index: 0,
        upstream: "rfa-fn-echo-0000abcd-0:6000".into(),
        spec: "s".into(),
        state: ReplicaState::Paused,
    }
}

impl FakeEngine {
    fn did(&self, what: &str) {
        self.done.lock().unwrap().push(what.to_string());
    }
}

impl FunctionEngine for FakeEngine {
    async fn recent_logs(
        &self,
        function: &str,
        _tail: usize,
    ) -> Result<Vec<rfa_wire::dashboard::LogLine>, EngineError> {
        self.did(&format!("logs {function}"));
        Ok(Vec::new())
    }
    async fn list(&self, _function: Option<&str>) -> Result<Vec<Replica>, EngineError> {
        Ok(vec![replica()])
    }
    async fn create(
        &self,
        _t: &FunctionTemplate,
        _d: &str,
        _k: usize,
        _c: &str,
    ) -> Result<Replica, EngineError> {
        self.did("create");
        Err(EngineError::Invalid("no creating here".into()))
    }
    async fn remove(&self, _r: &Replica, _g: Duration) -> Result<(), EngineError> {
        self.did("remove");
        Ok(())
    }
    async fn pause(&self, _r: &Replica) -> Result<(), EngineError> {
        self.did("pause");
        Ok(())
    }
    async fn resume(&self, r: &Replica) -> Result<(), EngineError> {
        self.did("resume");
        if self.resume_fails {
            return Err(EngineError::NotFound(format!(
                "cannot unpause container {}: the engine refused",
                r.container
            )));
        }
        Ok(())
    }
    async fn stop(&self, _r: &Replica, _g: Duration) -> Result<(), EngineError> {
        self.did("stop");
        Ok(())
    }
    async fn start(&self, _r: &Replica) -> Result<(), EngineError> {
        self.did("start");
        Ok(())
    }
    async fn rename(&self, r: &Replica, _to: &str) -> Result<Replica, EngineError> {
        Ok(r.clone())
    }
    async fn wait_healthy(&self, _r: &Replica, _t: Duration) -> Result<(), EngineError> {
        self.did("healthy");
        Ok(())
    }
}

/// A gateway holding one paused route; records every route put.
async fn fake_gateway() -> (String, Arc<Mutex<Vec<FunctionRoute>>>) {
    let route = FunctionRoute {
        name: "echo".into(),
        kind: FunctionKind::Http,
        upstreams: vec![replica().upstream],
        image: "img".into(),
        deployed_at: "t".into(),
        queue: None,
        run: Some(RunSpec {
            replicas: 1,
            env: vec![],
            memory_bytes: 0,
            nano_cpus: 0,
            pids: 0,
            max_inflight: 8,
            scale: None,
        }),
        power: Power::Paused,
        discover: None,
        previous: None,
    };
    let puts: Arc<Mutex<Vec<FunctionRoute>>> = Arc::default();
    let state = (Arc::new(Mutex::new(route)), puts.clone());
    type S = (Arc<Mutex<FunctionRoute>>, Arc<Mutex<Vec<FunctionRoute>>>);
    let app = axum::Router::new()
        .route(
            "/system/functions/{name}",
            get(
                |State((route, _)): State<S>, Path(_n): Path<String>| async move {
                    Json(route.lock().unwrap().clone())
                },
            )
            .put(
                |State((route, puts)): State<S>, Json(new): Json<FunctionRoute>| async move {
                    *route.lock().unwrap() = new.clone();
                    puts.lock().unwrap().push(new);
                    "ok"
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, puts)
}

async fn scaler(engine: FakeEngine, gateway_url: String) -> (String, Metrics) {
    let token = Token::new(TOKEN, None);
    let metrics = Metrics::new().unwrap();
    let actor = Actor::new(
        engine,
        Gateway::new(gateway_url, token.clone()).unwrap(),
        metrics.clone(),
        Instance::new(Some("t-actions".into())).unwrap(),
        vec![],
    );
    let app = rfa_scaler::router(Api {
        actor: Arc::new(actor),
        token,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, metrics)
}

#[tokio::test]
async fn a_refused_unpause_answers_503_and_leaves_the_route_asleep() {
    let (gw, puts) = fake_gateway().await;
    let engine = FakeEngine {
        resume_fails: true,
        done: Arc::default(),
    };
    let (url, metrics) = scaler(engine.clone(), gw).await;
    let client = reqwest::Client::new();

    let r = client
        .post(format!("{url}/wake/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the token is needed");
    assert!(
        engine.done.lock().unwrap().is_empty(),
        "nothing done without it"
    );

    let r = client
        .post(format!("{url}/wake/echo"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot unpause container rfa-fn-echo"),
        "{body}"
    );
    assert!(
        puts.lock().unwrap().is_empty(),
        "the route stays paused: the gateway keeps holding calls"
    );
    assert!(
        metrics
            .render()
            .contains("rfa_scaler_failures_total{function_name=\"echo\",operation=\"wake\"} 1"),
        "{}",
        metrics.render()
    );
}

#[tokio::test]
async fn a_wake_resumes_waits_for_health_then_routes_again() {
    let (gw, puts) = fake_gateway().await;
    let engine = FakeEngine {
        resume_fails: false,
        done: Arc::default(),
    };
    let (url, metrics) = scaler(engine.clone(), gw).await;
    let r = reqwest::Client::new()
        .post(format!("{url}/wake/echo"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["was"], "paused");
    assert_eq!(
        *engine.done.lock().unwrap(),
        vec!["resume".to_string(), "healthy".to_string()],
        "resumed, then healthy, before the route says running"
    );
    let puts = puts.lock().unwrap();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].power, Power::Running);
    assert!(metrics.render().contains(
        "rfa_scale_events_total{direction=\"wake\",function_name=\"echo\",reason=\"demand\"} 1"
    ));
}
