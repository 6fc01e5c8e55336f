//! [`Service`]: what a mainProcess function's setup function fills in.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use axum::Router;
use axum::http::Uri;
use axum::routing::MethodRouter;
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use rfa_wire::names::{TABLE_NAME_RULE, is_valid_table_name};
use rfa_wire::store::{DocEvent, EventKind};

use crate::events::{self, BoxedHandler, Subscription};
use crate::panic::panic_message;

/// A mainProcess service: several HTTP routes and, with NATS, store-event handlers.
///
/// Routes are served at the container's root; the gateway strips `/functions/<name>`, so a
/// request to `/functions/<name>/pay` reaches the route `"/pay"`. Paths use axum's syntax
/// (`"/items/{id}"`, `"/files/{*rest}"`). A request matching no route is a 404 problem.
pub struct Service {
    router: Router,
    subscriptions: Vec<Subscription>,
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
            subscriptions: Vec::new(),
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

    /// Runs `handler` for every document created in `table`:
    /// `svc.on_new_doc("payments", generate_invoice)` with
    /// `async fn generate_invoice(event: DocEvent) -> Result<(), E>` (`E: Display`).
    ///
    /// Events are delivered at least once; an error (or panic) is retried with backoff
    /// (`RFAAS_EVENT_ATTEMPTS` tries), then given up: logged, counted and dead-lettered.
    pub fn on_new_doc<F, Fut, E>(&mut self, table: &str, handler: F) -> &mut Self
    where
        F: Fn(DocEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.subscribe(table, EventKind::NewDoc, events::boxed(handler))
    }

    /// Runs `handler` for every update (PUT or PATCH) of a document in `table`; see
    /// [`Service::on_new_doc`].
    pub fn on_updated_doc<F, Fut, E>(&mut self, table: &str, handler: F) -> &mut Self
    where
        F: Fn(DocEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.subscribe(table, EventKind::UpdatedDoc, events::boxed(handler))
    }

    /// Runs `handler` for every document deleted from `table` (the event carries the last
    /// envelope); see [`Service::on_new_doc`].
    pub fn on_deleted_doc<F, Fut, E>(&mut self, table: &str, handler: F) -> &mut Self
    where
        F: Fn(DocEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.subscribe(table, EventKind::DeletedDoc, events::boxed(handler))
    }

    fn subscribe(&mut self, table: &str, event: EventKind, handler: BoxedHandler) -> &mut Self {
        if !is_valid_table_name(table) {
            self.errors.push(format!(
                "table {table:?}: a table name is {TABLE_NAME_RULE}"
            ));
        } else if self
            .subscriptions
            .iter()
            .any(|s| s.table == table && s.event == event)
        {
            self.errors.push(format!(
                "table {table:?}: a second {} handler (one per table and event)",
                event.as_str()
            ));
        } else {
            self.subscriptions.push(Subscription {
                table: table.to_string(),
                event,
                handler,
            });
        }
        self
    }

    /// The routes, the event subscriptions, and the mistakes made while setting them up.
    pub(crate) fn into_parts(self) -> (Router, Vec<Subscription>, Vec<String>) {
        (self.router, self.subscriptions, self.errors)
    }
}

async fn not_found(uri: Uri) -> ProblemResponse {
    ProblemResponse(Problem::not_found(format!("no route for {}", uri.path())))
}
