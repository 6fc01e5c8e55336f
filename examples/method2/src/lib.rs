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
    let answer = match reqwest::get(&call.url).await {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("calling {}: {e}\n", call.url),
            )
                .into_response();
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match answer.bytes().await {
        Ok(bytes) => (status, bytes.to_vec()).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("reading {}: {e}\n", call.url),
        )
            .into_response(),
    }
}
