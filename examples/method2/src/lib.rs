//! Two HTTP functions: `method2` answers at once; `method1` calls the URL it is given (for
//! example method2 through the gateway) and relays the status and body, one function calling
//! another.

use function_base::prelude::*;

/// `ANY /functions/method2`: answers `202 Accepted at method 2`.
pub async fn method2(_req: Request) -> impl IntoResponse {
    (StatusCode::ACCEPTED, "Accepted at method 2\n")
}

// Derives through function-base's re-export of serde, so the crate needs no serde of its own.
#[derive(Deserialize)]
#[serde(crate = "function_base::serde")]
struct Call {
    url: String,
}

/// `POST /functions/method1` with `{"url": "…"}`: GETs that URL and relays its status and body.
pub async fn method1(req: Request) -> Response {
    let body = match function_base::axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")).into_response(),
    };
    let call: Call = match function_base::serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            let hint = "send {\"url\": \"http://…\"}";
            return (StatusCode::BAD_REQUEST, format!("{e}: {hint}\n")).into_response();
        }
    };
    match function_base::http::get(&call.url).await {
        Ok(answer) => (answer.status(), answer.into_body()).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}
