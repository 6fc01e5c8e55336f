//! The platform's admin token in force, shared by every process that checks or carries it (the
//! gateway's admin routes, the scaler's API and its calls to the gateway).
//!
//! The token can be replaced without a restart: `startFaas --rotate-token` writes the token file,
//! then sends `SIGHUP`; [`Token::reload_on_sighup`] re-reads the file on each one. A bad file is
//! logged and the token in force kept.
//!
//! The comparison is constant-time in the token's contents (`subtle`, whose `ConstantTimeEq`
//! keeps the optimizer from turning the byte loop into an early exit). Only the length can show
//! in the timing, and it is not secret: `startFaas` always makes 64 hex digits.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::env::{SecretFileError, read_secret_file};

/// The admin token in force: cheap to clone, every clone sees a reload.
#[derive(Clone)]
pub struct Token {
    current: Arc<RwLock<Arc<str>>>,
    file: Option<PathBuf>,
}

impl Token {
    /// Starts with `initial`; [`Token::reload`] replaces it with what `file` holds then.
    pub fn new(initial: &str, file: Option<PathBuf>) -> Token {
        Token {
            current: Arc::new(RwLock::new(Arc::from(initial))),
            file,
        }
    }

    /// The token in force now (to carry on a call to another platform process).
    pub fn current(&self) -> Arc<str> {
        self.current
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether the request carries `Authorization: Bearer <the current token>`.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), self.current().as_bytes()))
    }

    /// Re-reads the token file. `Ok(false)` when there is no file or it holds the same token; on
    /// an error (unreadable or empty file) the current token stays in force.
    pub fn reload(&self) -> Result<bool, SecretFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let fresh = read_secret_file(path)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if constant_time_eq(current.as_bytes(), fresh.as_bytes()) {
            return Ok(false);
        }
        *current = Arc::from(fresh.as_str());
        Ok(true)
    }

    /// Re-reads the token file on every `SIGHUP` (a task on the current runtime), logging what
    /// became of it. Fails only when the signal cannot be listened for.
    pub fn reload_on_sighup(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let token = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match token.reload() {
                    Ok(true) => tracing::info!("admin token replaced from its file"),
                    Ok(false) => tracing::info!("SIGHUP: the admin token is unchanged"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: keeping the current admin token")
                    }
                }
            }
        });
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn accepts_only_the_bearer_token() {
        let t = Token::new("s3cret", None);
        assert!(t.accepts(&headers("Bearer s3cret")));
        assert!(t.accepts(&headers("bearer s3cret")));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cretx",
            "Basic s3cret",
            "Bearer ",
            "Bearers3cret",
        ] {
            assert!(!t.accepts(&headers(wrong)), "{wrong}");
        }
        assert!(!t.accepts(&HeaderMap::new()));
    }

    /// Every position of the token counts: a token differing in any one byte (first, middle or
    /// last, where an early-exit comparison would differ most in time) is refused.
    #[test]
    fn a_difference_in_any_byte_is_refused() {
        let token = "0123456789abcdef".repeat(4);
        let t = Token::new(&token, None);
        for i in 0..token.len() {
            let mut wrong = token.clone().into_bytes();
            wrong[i] = if wrong[i] == b'x' { b'y' } else { b'x' };
            let wrong = String::from_utf8(wrong).unwrap();
            assert!(!constant_time_eq(wrong.as_bytes(), token.as_bytes()), "{i}");
            assert!(!t.accepts(&headers(&format!("Bearer {wrong}"))));
        }
        assert!(constant_time_eq(token.as_bytes(), token.as_bytes()));
        assert!(!constant_time_eq(b"", token.as_bytes()));
    }

    #[test]
    fn reload_replaces_the_token_from_its_file_and_every_clone_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "old\n").unwrap();
        let token = Token::new("old", Some(file.clone()));
        let clone = token.clone();
        assert!(token.accepts(&headers("Bearer old")));
        assert!(!token.reload().unwrap(), "same token: nothing changes");

        std::fs::write(&file, "new").unwrap();
        assert!(token.reload().unwrap());
        assert!(clone.accepts(&headers("Bearer new")));
        assert!(!clone.accepts(&headers("Bearer old")));
        assert_eq!(&*clone.current(), "new");

        // An unreadable or empty file keeps the token in force.
        std::fs::write(&file, "  \n").unwrap();
        assert!(token.reload().is_err());
        std::fs::remove_file(&file).unwrap();
        assert!(token.reload().is_err());
        assert!(token.accepts(&headers("Bearer new")));

        assert!(!Token::new("x", None).reload().unwrap());
    }
}
