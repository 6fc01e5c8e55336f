//! Tracing for every rfaas server process (proxy, store, function runtime), set up in one place.
//!
//! - [`init`] installs the `tracing` subscriber: JSON lines on stdout, filtered by `RUST_LOG`
//!   (`info` by default), each line carrying `trace_id` and `span_id` when a trace is active.
//! - When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are
//!   exported over OTLP/gRPC in batches, under the service name the caller gives (`rfa-proxy`,
//!   `rfa-store`, `rfa-fn-<name>`; `OTEL_SERVICE_NAME` overrides it). The other standard variables
//!   (`OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//!   `OTEL_BSP_*`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none`) are honoured.
//! - With no endpoint nothing is exported and nothing is traced: [`enabled`] is false, the span
//!   helpers hand out disabled spans, and [`propagate`] neither reads nor writes `traceparent`.
//!
//! Context crosses processes as W3C `traceparent`/`tracestate`, in HTTP headers and NATS
//! headers alike ([`propagate`]).

mod format;
pub mod propagate;
mod request;

pub use opentelemetry::context::FutureExt;
pub use opentelemetry::{Context, KeyValue};
pub use request::RequestSpan;

/// An error with its sources, `outer: inner: innermost`, for log fields and messages (a
/// connection error's useful part is usually a source: "dns error", "connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True when spans are being exported (an OTLP endpoint is configured and the exporter started).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes the spans still buffered.
#[must_use = "dropping the guard early stops exporting spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether this process exports spans.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans and stops the exporter. Blocks for at most the exporter's timeout;
    /// run it where blocking is allowed (after the server stopped, or in `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "could not flush the last spans");
            }
        }
    }
}

/// Where spans go, read from the standard OpenTelemetry environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// No endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    Off,
    /// OTLP/gRPC to this endpoint.
    Otlp(String),
}

impl Export {
    /// Reads the variables through `lookup` (`std::env::var` in [`Export::from_env`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Export {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Export::Off;
        }
        match set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            Some(endpoint) => Export::Otlp(endpoint),
            None => Export::Off,
        }
    }

    pub fn from_env() -> Export {
        Export::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Installs logging and, when configured, span export for the service `service_name`.
///
/// Must run inside a tokio runtime when an endpoint is set (the gRPC client lives on it). A second
/// call only returns a guard that exports nothing. An exporter that cannot be built is logged as an
/// error and the process goes on without export: tracing never stops a server from starting.
pub fn init(service_name: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Span fields are not logged (the format writes the span's name only): formatting them for
    // every span would be wasted work.
    let logs = tracing_subscriber::fmt::layer()
        .event_format(format::JsonLines)
        .fmt_fields(format::NoSpanFields)
        .with_writer(std::io::stdout);
    let export = Export::from_env();
    let (provider, failure) = match &export {
        Export::Off => (None, None),
        Export::Otlp(_) => match provider(service_name) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        },
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("rfaas"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init()
        .is_ok();
    if !installed {
        return Telemetry { provider: None };
    }
    if let Some(e) = failure {
        tracing::error!(error = %e, "cannot export traces; running without them");
    }
    if let (Some(provider), Export::Otlp(endpoint)) = (&provider, &export) {
        request::install(provider.tracer("rfaas"));
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(%endpoint, service = service_name, "exporting traces over OTLP/gRPC");
    }
    Telemetry { provider }
}

fn provider(
    service_name: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service_name.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Starts `span` as the continuation of the context `parent` carries, or leaves it a root span
/// when `parent` holds none. Does nothing while tracing is off.
pub fn continue_from(span: &tracing::Span, parent: opentelemetry::Context) {
    if enabled() {
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;

    fn export(vars: &[(&str, &str)]) -> Export {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Export::from_lookup(|name| map.get(name).cloned())
    }

    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_json_with_the_active_trace_and_span_id() {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(format::JsonLines)
                    .with_writer(move || Buf(sink.clone())),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        ENABLED.store(true, Ordering::Relaxed);
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("call", function = "f");
            let _entered = span.enter();
            tracing::warn!(attempt = 2, "callback failed");
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        assert_eq!(lines[0]["fields"]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["span"], "call");
        assert_eq!(lines[1]["fields"]["attempt"], 2);
        assert_eq!(lines[1]["fields"]["message"], "callback failed");
        assert_eq!(lines[1]["trace_id"], ids.0.as_str());
        assert_eq!(lines[1]["span_id"], ids.1.as_str());
        assert_ne!(ids.0, "00000000000000000000000000000000");
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(export(&[]), Export::Off);
        assert_eq!(export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Export::Off);
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            Export::Otlp("http://c:4317".into())
        );
        assert_eq!(
            export(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ]),
            Export::Otlp("http://t:4317".into())
        );
    }

    #[test]
    fn the_standard_off_switches_win_over_an_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        assert_eq!(
            export(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]),
            Export::Off
        );
        assert_eq!(
            export(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Export::Off
        );
        assert_eq!(
            export(&[endpoint, ("OTEL_SDK_DISABLED", "false")]),
            Export::Otlp("http://c:4317".into())
        );
    }
}
