//! HTTP functions written as ordinary axum handlers: `method2` answers at once; `method1` calls
//! another function through the gateway with [`Ctx`] (no URL, no HTTP client of its own);
//! `greet` takes a path, a query, a JSON body and the store.

use function_base::prelude::*;
use function_base::{Answer, serde_json::Value};

/// `ANY /functions/method2`: answers `202 Accepted at method 2`.
pub async fn method2() -> impl IntoResponse {
    (StatusCode::ACCEPTED, "Accepted at method 2\n")
}

// Derives through function-base's re-export of serde, so the crate needs no serde of its own.
#[derive(Deserialize)]
#[serde(crate = "function_base::serde")]
pub struct Chain {
    /// The function to call.
    #[serde(default = "method2_name")]
    call: String,
}

fn method2_name() -> String {
    "method2".to_string()
}

/// `ANY /functions/method1[?call=<function>]`: calls that function (`method2` unless told)
/// through the gateway and passes its answer on. Its own query goes along, so
/// `method1?call=method1` calls itself until the gateway ends the loop (`508`).
pub async fn method1(ctx: Ctx, uri: Uri, Query(chain): Query<Chain>) -> Result<Answer, CallError> {
    let query = uri
        .query()
        .map(|q| format!("/?{q}"))
        .unwrap_or_else(|| "/".into());
    ctx.call(&chain.call).path(&query).send().await
}

#[derive(Deserialize)]
#[serde(crate = "function_base::serde")]
pub struct Who {
    name: String,
}

#[derive(Deserialize)]
#[serde(crate = "function_base::serde")]
pub struct Style {
    #[serde(default)]
    shout: bool,
}

/// `POST /functions/greet/<lang>[?shout=true]` with `{"name": "Ann"}`: a greeting in `en`, `fr`
/// or `de`, kept in the store table `greetings`. A body that is not that JSON gets axum's own
/// `400`/`415`/`422` answer, before this runs.
pub async fn greet(
    ctx: Ctx,
    Path(lang): Path<String>,
    Query(style): Query<Style>,
    Json(who): Json<Who>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, String)> {
    let word = match lang.as_str() {
        "en" => "Hello",
        "fr" => "Bonjour",
        "de" => "Hallo",
        other => {
            let other = other.escape_debug();
            return Err((
                StatusCode::NOT_FOUND,
                format!("no greeting in '{other}': try en, fr or de\n"),
            ));
        }
    };
    let mut text = format!("{word}, {}!", who.name);
    if style.shout {
        text = text.to_uppercase();
    }
    let doc = ctx
        .store()
        .table("greetings")
        .create(&json!({ "text": text, "by": ctx.function() }))
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("{e}\n")))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "greeting": text, "id": doc.id })),
    ))
}
