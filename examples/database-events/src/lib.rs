//! A mainProcess service combining routes and store events:
//!
//! - `POST /functions/database_events/pay` with `{"payer": "ann", "amount": 12.5}` creates a
//!   payment in the store's `payments` table;
//! - on its `new-doc` event, `generate_invoice` adds an invoice number to it;
//! - on the `updated-doc` that causes, `email_users` marks the payer emailed — once: a payment
//!   already emailed, or not yet invoiced, is left alone, so the updates do not loop;
//! - on `deleted-doc`, `archive` keeps the last version in `payments_archive`;
//! - `GET /functions/database_events/payments` lists them.

use function_base::prelude::*;
use function_base::serde_json::{Value, json};
use function_base::{StoreError, store};

pub fn database_events(svc: &mut Service) {
    svc.route("/pay", post(make_payment));
    svc.route("/payments", get(list_payments));
    svc.on_new_doc("payments", generate_invoice);
    svc.on_updated_doc("payments", email_users);
    svc.on_deleted_doc("payments", archive);
}

/// Takes the JSON body whatever its content type says, so `curl -d '{…}'` works as is.
async fn make_payment(body: function_base::axum::body::Bytes) -> Response {
    let body: Value = function_base::serde_json::from_slice(&body).unwrap_or_default();
    let payer = body
        .get("payer")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let amount = body
        .get("amount")
        .and_then(Value::as_f64)
        .filter(|a| *a > 0.0);
    let (Some(payer), Some(amount)) = (payer, amount) else {
        let hint = "send {\"payer\": \"<name>\", \"amount\": <number above 0>}";
        return (StatusCode::BAD_REQUEST, format!("{hint}\n")).into_response();
    };
    match store()
        .table("payments")
        .create(&json!({ "payer": payer, "amount": amount }))
        .await
    {
        Ok(envelope) => (StatusCode::CREATED, Json(envelope)).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

async fn list_payments() -> Response {
    match store().table("payments").list(1000, None).await {
        Ok(page) => Json(page.docs).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

/// `new-doc`: gives the payment an invoice number.
async fn generate_invoice(event: DocEvent) -> Result<(), StoreError> {
    let invoice = format!("INV-{}", event.id);
    store()
        .table("payments")
        .patch(&event.id, &json!({ "invoice": invoice }))
        .await
        .map(|_| ())
}

/// `updated-doc`: marks an invoiced payment's payer emailed, once.
async fn email_users(event: DocEvent) -> Result<(), StoreError> {
    let data = &event.doc.data;
    let invoiced = data.get("invoice").is_some();
    let emailed = data.get("emailed").and_then(Value::as_bool) == Some(true);
    if !invoiced || emailed {
        return Ok(());
    }
    store()
        .table("payments")
        .patch(&event.id, &json!({ "emailed": true }))
        .await
        .map(|_| ())
}

/// `deleted-doc`: keeps the last version of the payment.
async fn archive(event: DocEvent) -> Result<(), StoreError> {
    store()
        .table("payments_archive")
        .replace(&event.id, &event.doc.data)
        .await
        .map(|_| ())
}
