//! The bearer-token check on admin routes. The token itself ([`Token`], replaceable without a
//! restart, compared in constant time) is `rfa_io`'s, shared with the scaler.

use axum::http::HeaderMap;

pub use rfa_io::Token;

use crate::ProxyError;

/// Accepts `Authorization: Bearer <the token in force>`; anything else is
/// [`ProxyError::Unauthorized`] (401 problem+json).
pub fn check(token: &Token, headers: &HeaderMap) -> Result<(), ProxyError> {
    if token.accepts(headers) {
        Ok(())
    } else {
        Err(ProxyError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn only_the_token_passes() {
        let token = Token::new("s3cret", None);
        let mut h = HeaderMap::new();
        assert!(matches!(check(&token, &h), Err(ProxyError::Unauthorized)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(check(&token, &h).is_ok());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(matches!(check(&token, &h), Err(ProxyError::Unauthorized)));
    }
}
