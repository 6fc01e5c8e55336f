//! Validation of the names users choose: function names, table names and document ids.
//!
//! A function name has two rules. [`is_valid_function_name`] is its shape
//! (`^[a-z][a-z0-9_]{0,62}$`): what is safe as a URL segment, a container and directory name.
//! [`check_function_name`] adds that it is not a Rust keyword, because the name is also the name
//! of the Rust function the wrapper calls (`pub async fn <name>(…)`), and `fn fn(…)` does not
//! compile. Only the CLI (`new`, `deploy`) applies the keyword rule: the gateway matches URL
//! segments by shape alone, and a keyword name simply has no route (404), since nothing can
//! deploy one. Keeping the gateway's check to the shape keeps it a pure, stable syntax check
//! that no Rust edition can change.

/// `^[a-z][a-z0-9_]{0,62}$`: a function's name, its URL segment and part of its container name.
/// Shape only: a name to deploy must also pass [`check_function_name`].
pub fn is_valid_function_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_lowercase() => {}
        _ => return false,
    }
    bytes.len() <= 63
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The Rust keywords (strict and reserved, edition 2024) that can pass the lowercase name
/// shape. `Self` is one too, but it already fails the shape. Weak keywords (`union`, `raw`,
/// `safe`, `macro_rules`) are ordinary identifiers in a function's name and stay allowed.
pub const RUST_KEYWORDS: &[&str] = &[
    // strict
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", // reserved for future use
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// Whether `name` is a Rust keyword (strict or reserved) that cannot name a function.
pub fn is_rust_keyword(name: &str) -> bool {
    RUST_KEYWORDS.contains(&name)
}

/// Why a function name cannot be deployed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionNameError {
    #[error("'{}' is not a valid function name: {FUNCTION_NAME_RULE}", .0.escape_debug())]
    Shape(String),
    #[error(
        "'{0}' cannot be a function name: it is a Rust keyword, and a function's name is also \
         the name of its Rust function (`pub async fn {0}(…)`), which cannot be a keyword. \
         Pick another name, e.g. '{0}_x'"
    )]
    Keyword(String),
}

/// The deploy rule for a function name: the shape of [`is_valid_function_name`], and not a
/// Rust keyword ([`RUST_KEYWORDS`]). `proxyCli new` and `proxyCli deploy` apply it.
pub fn check_function_name(name: &str) -> Result<(), FunctionNameError> {
    if !is_valid_function_name(name) {
        return Err(FunctionNameError::Shape(name.to_string()));
    }
    if is_rust_keyword(name) {
        return Err(FunctionNameError::Keyword(name.to_string()));
    }
    Ok(())
}

/// `^[A-Za-z0-9_-]{1,64}$`: a store table name.
pub fn is_valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Longest document id a client may choose.
pub const MAX_DOC_ID_LEN: usize = 128;

/// `^[A-Za-z0-9_-]{1,128}$`: a store document id, safe as a sled key part and as a NATS
/// subject token.
pub fn is_valid_doc_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DOC_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a document id must look like, for error messages.
pub const DOC_ID_RULE: &str = "1 to 128 of A-Z, a-z, 0-9, '_' or '-' (^[A-Za-z0-9_-]{1,128}$)";

/// What a function name must look like, for error messages.
pub const FUNCTION_NAME_RULE: &str = "a lowercase letter followed by up to 62 lowercase letters, digits or '_' (^[a-z][a-z0-9_]{0,62}$)";

/// What a table name must look like, for error messages.
pub const TABLE_NAME_RULE: &str = "1 to 64 of A-Z, a-z, 0-9, '_' or '-' (^[A-Za-z0-9_-]{1,64}$)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert!(is_valid_function_name("method2"));
        assert!(is_valid_function_name("a"));
        assert!(is_valid_function_name("make_payment_2"));
        assert!(is_valid_function_name(&"a".repeat(63)));
        assert!(!is_valid_function_name(&"a".repeat(64)));
        assert!(!is_valid_function_name(""));
        assert!(!is_valid_function_name("2abc"));
        assert!(!is_valid_function_name("Method2"));
        assert!(!is_valid_function_name("method-2"));
        assert!(!is_valid_function_name("_x"));
        assert!(!is_valid_function_name("a/b"));
    }

    #[test]
    fn keywords_are_refused_with_what_to_do() {
        for k in [
            "fn", "self", "async", "type", "gen", "try", "await", "dyn", "yield", "crate",
        ] {
            assert!(is_valid_function_name(k), "{k} has the shape");
            let e = check_function_name(k).unwrap_err();
            assert_eq!(e, FunctionNameError::Keyword(k.to_string()));
            let text = e.to_string();
            assert!(
                text.contains("Rust keyword") && text.contains(&format!("'{k}_x'")),
                "{text}"
            );
            // The suggestion itself is deployable.
            check_function_name(&format!("{k}_x")).unwrap();
        }
        for ok in [
            "fn_x",
            "union",
            "raw",
            "safe",
            "types",
            "self_",
            "asynchronous",
            "main",
        ] {
            check_function_name(ok).unwrap();
        }
        let e = check_function_name("Fn").unwrap_err();
        assert!(matches!(e, FunctionNameError::Shape(_)));
        assert!(e.to_string().contains(FUNCTION_NAME_RULE));
        // Every listed keyword has the name shape (otherwise the list would be dead weight).
        assert!(RUST_KEYWORDS.iter().all(|k| is_valid_function_name(k)));
    }

    #[test]
    fn table_names() {
        assert!(is_valid_table_name("payments"));
        assert!(is_valid_table_name("A-b_9"));
        assert!(is_valid_table_name(&"x".repeat(64)));
        assert!(!is_valid_table_name(&"x".repeat(65)));
        assert!(!is_valid_table_name(""));
        assert!(!is_valid_table_name("a.b"));
        assert!(!is_valid_table_name("a b"));
        assert!(!is_valid_table_name("a/b"));
    }
}
