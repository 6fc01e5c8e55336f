//! Everything a function's source usually needs: `use function_base::prelude::*;`.

pub use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, Request},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Json, Response},
    routing::{any, delete, get, patch, post, put},
};
pub use serde::{Deserialize, Serialize};
pub use serde_json::json;

pub use crate::{CallError, Ctx, DocEvent, Service, store};
