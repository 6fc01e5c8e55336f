//! Typed reading of environment variables: unset or empty means the default, a malformed value
//! is an error that names the variable and the value.

use std::fmt::Display;
use std::str::FromStr;

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct EnvError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl EnvError {
    pub fn new(name: &'static str, value: &str, reason: impl Into<String>) -> Self {
        EnvError {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where variables come from: the process environment ([`Env::process`]) or, in tests, a map
/// ([`Env::from_lookup`]).
pub struct Env<L = fn(&str) -> Option<String>> {
    lookup: L,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Env {
            lookup: |name| std::env::var(name).ok(),
        }
    }
}

impl<L: Fn(&str) -> Option<String>> Env<L> {
    /// Variables read through `lookup`.
    pub fn from_lookup(lookup: L) -> Self {
        Env { lookup }
    }

    /// The variable's value, trimmed; `None` when it is unset or empty.
    pub fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The variable parsed as a `T`; `None` when it is unset or empty.
    pub fn parse<T>(&self, name: &'static str) -> Result<Option<T>, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.text(name)
            .map(|value| {
                value
                    .parse()
                    .map_err(|e: T::Err| EnvError::new(name, &value, e.to_string()))
            })
            .transpose()
    }

    /// The variable as a number, or `default` when it is unset or empty.
    pub fn number<T>(&self, name: &'static str, default: T) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// As [`Env::number`], and at least `min` (a default below `min` is kept as it is).
    pub fn number_at_least<T>(&self, name: &'static str, default: T, min: T) -> Result<T, EnvError>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Display,
    {
        match self.parse::<T>(name)? {
            Some(n) if n < min => Err(EnvError::new(
                name,
                &n.to_string(),
                format!("must be at least {min}"),
            )),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::from_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn numbers_defaults_and_errors() {
        let e = env(&[("A", " 7 "), ("B", ""), ("C", "x"), ("D", "0")]);
        assert_eq!(e.number("A", 1u32), Ok(7));
        assert_eq!(e.number("B", 3u32), Ok(3));
        assert_eq!(e.number("UNSET", 4u64), Ok(4));
        let bad = e.number("C", 1u16).unwrap_err();
        assert_eq!((bad.name, bad.value.as_str()), ("C", "x"));
        assert!(bad.to_string().contains("C=\"x\""), "{bad}");
        let small = e.number_at_least("D", 5u32, 1).unwrap_err();
        assert!(small.reason.contains("at least 1"), "{small}");
        assert_eq!(e.number_at_least("A", 5u32, 1), Ok(7));
        assert_eq!(e.text("B"), None);
        assert_eq!(e.text("A").as_deref(), Some("7"));
    }
}

/// A secret kept in a file (the admin token) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {path}: {reason}")]
pub struct SecretFileError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// The secret in `path`, trimmed; an unreadable or empty file is an error.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, SecretFileError> {
    let fail = |reason: String| SecretFileError {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(secret.to_string())
}
