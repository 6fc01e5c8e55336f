//! Validation of the names users choose: function names and table names.

/// `^[a-z][a-z0-9_]{0,62}$`: a function's name, its URL segment and part of its container name.
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

/// `^[A-Za-z0-9_-]{1,64}$`: a store table name.
pub fn is_valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

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
