//! [`Service`]: what a mainProcess function's setup function fills in.

use std::panic::{AssertUnwindSafe, catch_unwind};

use axum::Router;
use axum::http::Uri;
use axum::routing::MethodRouter;
use rfa_wire::Problem;

/// A mainProcess service: several HTTP routes (and, with NATS, store-event handlers).
///
/// Routes are served at the container's root; the gateway strips `/functions/<name>`, so a
/// request to `/functions/<name>/pay` reaches the route `"/pay"`. Paths use axum's syntax
/// (`"/items/{id}"`, `"/files/{*rest}"`). A request matching no route is a 404 problem.
pub struct Service {
    router: Router,
    errors: Vec<String>,
}

impl Default for Service {
    fn default() -> Self {
        Self::new()
    }
}

impl Service {
    /// An empty service.
    pub fn new() -> Self {
        Service {
            router: Router::new().fallback(not_found),
            errors: Vec::new(),
        }
    }

    /// Serves `method_router` at `path`, e.g. `svc.route("/pay", post(make_payment))`.
    ///
    /// Routing the same path twice merges the methods. An invalid path or a method routed
    /// twice is reported when the runtime starts (and the process exits non-zero).
    pub fn route(&mut self, path: &str, method_router: MethodRouter) -> &mut Self {
        if !path.starts_with('/') {
            self.errors
                .push(format!("route {path:?}: a path must start with '/'"));
            return self;
        }
        let router = self.router.clone();
        match catch_unwind(AssertUnwindSafe(move || router.route(path, method_router))) {
            Ok(router) => self.router = router,
            Err(panic) => self
                .errors
                .push(format!("route {path:?}: {}", panic_message(panic.as_ref()))),
        }
        self
    }

    /// The routes, and the mistakes made while setting them up.
    pub(crate) fn into_parts(self) -> (Router, Vec<String>) {
        (self.router, self.errors)
    }
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".to_string()
    }
}
