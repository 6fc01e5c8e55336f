//! The bearer-token check on admin routes.

use axum::http::{HeaderMap, header};

use crate::ProxyError;

/// Accepts `Authorization: Bearer <token>` when it equals `expected` (compared in constant time).
pub fn check(headers: &HeaderMap, expected: &str) -> Result<(), ProxyError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ProxyError::Unauthorized)?;
    if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ProxyError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn accepts_only_the_token() {
        assert!(check(&headers("Bearer s3cret"), "s3cret").is_ok());
        assert!(check(&headers("Bearer s3cre"), "s3cret").is_err());
        assert!(check(&headers("Bearer s3cretx"), "s3cret").is_err());
        assert!(check(&headers("Basic s3cret"), "s3cret").is_err());
        assert!(check(&HeaderMap::new(), "s3cret").is_err());
    }
}
