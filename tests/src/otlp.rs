//! A real OTLP/gRPC trace receiver for the tests (and `bench/`): it listens on all interfaces,
//! so containers reach it as `http://host.docker.internal:<port>`, and keeps every span with the
//! service name of the resource that sent it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One received span, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SPAN_KIND_SERVER`, ….
    pub kind: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<Span>>,
    /// Spans received, also when `keep` is false.
    count: std::sync::atomic::AtomicU64,
    keep: bool,
}

struct Service(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        if !self.0.keep {
            let n: usize = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.0
                .count
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            return Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }));
        }
        let mut got = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attributes(&r.attributes).remove("service.name"))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Span {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind().as_str_name().to_string(),
                    name: span.name,
                    attributes: attributes(&span.attributes),
                });
            }
        }
        self.0
            .count
            .fetch_add(got.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.0
            .spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The receiver; it stops when dropped.
pub struct Collector {
    pub port: u16,
    store: Arc<Store>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Starts a receiver that keeps every span (for assertions).
    pub async fn start() -> Collector {
        Collector::start_on(0, true)
            .await
            .expect("bind the OTLP receiver")
    }

    /// Starts a receiver on `port` (0: any) that keeps spans only when `keep` (a benchmark sink
    /// only counts them).
    pub async fn start_on(port: u16, keep: bool) -> std::io::Result<Collector> {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        let port = listener.local_addr()?.port();
        let store = Arc::new(Store {
            keep,
            ..Store::default()
        });
        let service = TraceServiceServer::new(Service(store.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Collector {
            port,
            store,
            server,
        })
    }

    /// The endpoint containers export to.
    pub fn endpoint(&self) -> String {
        format!("http://host.docker.internal:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.store
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Spans received so far.
    pub fn count(&self) -> u64 {
        self.store.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The spans of trace `trace_id`, once `done` holds for them (or the timeout passed: then
    /// the test fails and prints what arrived).
    pub async fn trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "trace {trace_id} incomplete after {timeout:?}: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}
