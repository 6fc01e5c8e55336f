//! The bearer-token check on admin routes, and the live token (replaceable without a restart).
//!
//! The comparison is constant-time in the token's contents (`subtle`, whose
//! `ConstantTimeEq` keeps the optimizer from turning the byte loop into an early exit). Only
//! the length can show in the timing, and it is not secret: `startFaas` always makes 64 hex
//! digits.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::ProxyError;
use crate::config::{ConfigError, read_token};

/// Accepts `Authorization: Bearer <token>` when it equals `expected` (compared in constant time).
pub fn check(headers: &HeaderMap, expected: &str) -> Result<(), ProxyError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(ProxyError::Unauthorized)?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ProxyError::Unauthorized)
    }
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(rest.trim())
        .filter(|t| !t.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The admin token in force. Starts with the configured one; [`Token::reload`] replaces it with
/// what the token file holds now (the CLI's `startFaas --rotate-token` writes the file, then
/// sends the gateway `SIGHUP`).
pub struct Token {
    current: RwLock<Arc<str>>,
    file: Option<PathBuf>,
}

impl Token {
    pub fn new(initial: &str, file: Option<PathBuf>) -> Token {
        Token {
            current: RwLock::new(Arc::from(initial)),
            file,
        }
    }

    /// The token in force now (the gateway carries it to the scaler).
    pub fn current(&self) -> Arc<str> {
        self.current
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Checks the request's bearer token against the current one.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ProxyError> {
        check(headers, &self.current())
    }

    /// Re-reads the token file. `Ok(false)` when there is no file or it holds the same token;
    /// on an error the current token stays in force.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let fresh = read_token(path)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if constant_time_eq(current.as_bytes(), fresh.as_bytes()) {
            return Ok(false);
        }
        *current = Arc::from(fresh.as_str());
        Ok(true)
    }
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
        assert!(check(&headers("bearer s3cret"), "s3cret").is_ok());
        assert!(check(&headers("Bearer s3cre"), "s3cret").is_err());
        assert!(check(&headers("Bearer s3cretx"), "s3cret").is_err());
        assert!(check(&headers("Basic s3cret"), "s3cret").is_err());
        assert!(check(&headers("Bearer "), "s3cret").is_err());
        assert!(check(&headers("Bearers3cret"), "s3cret").is_err());
        assert!(check(&HeaderMap::new(), "s3cret").is_err());
    }

    /// Every position of the token counts: a token differing in any one byte (first, middle or
    /// last, where an early-exit comparison would differ most in time) is refused.
    #[test]
    fn a_difference_in_any_byte_is_refused() {
        let token = "0123456789abcdef".repeat(4);
        for i in 0..token.len() {
            let mut wrong = token.clone().into_bytes();
            wrong[i] = if wrong[i] == b'x' { b'y' } else { b'x' };
            let wrong = String::from_utf8(wrong).unwrap();
            assert!(!constant_time_eq(wrong.as_bytes(), token.as_bytes()), "{i}");
            assert!(check(&headers(&format!("Bearer {wrong}")), &token).is_err());
        }
        assert!(constant_time_eq(token.as_bytes(), token.as_bytes()));
        assert!(!constant_time_eq(b"", token.as_bytes()));
    }

    #[test]
    fn reload_replaces_the_token_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "old\n").unwrap();
        let token = Token::new("old", Some(file.clone()));
        assert!(token.check(&headers("Bearer old")).is_ok());
        assert!(!token.reload().unwrap(), "same token: nothing changes");

        std::fs::write(&file, "new").unwrap();
        assert!(token.reload().unwrap());
        assert!(token.check(&headers("Bearer new")).is_ok());
        assert!(token.check(&headers("Bearer old")).is_err());

        // An unreadable or empty file keeps the token in force.
        std::fs::write(&file, "  \n").unwrap();
        assert!(token.reload().is_err());
        std::fs::remove_file(&file).unwrap();
        assert!(token.reload().is_err());
        assert!(token.check(&headers("Bearer new")).is_ok());

        assert!(!Token::new("x", None).reload().unwrap());
    }
}
