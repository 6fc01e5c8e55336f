//! The admin token in force, shared by the scaler's checks and its calls to the gateway; re-read
//! from its file on `SIGHUP` (`startFaas --rotate-token` signals the scaler as it does the
//! gateway).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Token {
    current: Arc<RwLock<Arc<str>>>,
    file: Option<PathBuf>,
}

impl Token {
    pub fn new(initial: &str, file: Option<PathBuf>) -> Token {
        Token {
            current: Arc::new(RwLock::new(Arc::from(initial))),
            file,
        }
    }

    pub fn current(&self) -> Arc<str> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the request carries `Authorization: Bearer <the current token>` (constant time in
    /// the token's contents).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        else {
            return false;
        };
        let expected = self.current();
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// Replaces the token with what its file holds now; `Ok(false)` when unchanged or fileless.
    pub fn reload(&self) -> Result<bool, rfa_io::env::SecretFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let fresh = rfa_io::env::read_secret_file(path)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if *current.as_ref() == *fresh {
            return Ok(false);
        }
        *current = Arc::from(fresh.as_str());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_only_the_current_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "abc\n").unwrap();
        let t = Token::new("abc", Some(file.clone()));
        let mut h = HeaderMap::new();
        assert!(!t.accepts(&h));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(t.accepts(&h));
        h.insert(header::AUTHORIZATION, "bearer abd".parse().unwrap());
        assert!(!t.accepts(&h));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!t.accepts(&h));
        std::fs::write(&file, "xyz").unwrap();
        assert!(t.reload().unwrap());
        assert!(!t.reload().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert!(t.accepts(&h));
    }
}
