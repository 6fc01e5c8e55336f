//! Paths as rfaas prints them: normalized, so a message never shows `./a/../b` or `a//b`.

use std::path::{Component, Path, PathBuf};

/// `a/./b/../c` → `a/c`, `/x//y/` → `/x/y`, `./f` → `f`, `../f` stays; without touching the
/// file system (so a `..` after a symlink is taken lexically: use [`shown`] for a path that
/// exists). An empty result is `.`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    // How many leading components of `out` are `..` (of a relative path) and cannot be popped.
    let mut fixed = 0usize;
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                out.push(c.as_os_str());
                fixed = 0;
                depth = 0;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth > fixed {
                    out.pop();
                    depth -= 1;
                } else if !out.has_root() {
                    out.push("..");
                    fixed += 1;
                    depth += 1;
                }
                // `/..` is `/`.
            }
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `a/./b//c/` → `a/b/c`: `.` components and doubled or trailing slashes removed, `..` kept.
/// Always names the same file as `path`, existing or not (unlike [`normalize`], whose `a/..`
/// is wrong when `a` is missing or a symlink).
pub fn tidy(path: &Path) -> PathBuf {
    let out: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// How to show a path to the user: the real path (symlinks and `..` resolved) when it exists,
/// relative to the current directory when it lies below it; else [`tidy`] (a missing path
/// keeps its `..`, which may be why it is missing).
pub fn shown(path: &Path) -> PathBuf {
    let Ok(real) = path.canonicalize() else {
        return tidy(path);
    };
    if path.is_relative()
        && let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize())
        && let Ok(rel) = real.strip_prefix(&cwd)
    {
        return normalize(rel);
    }
    real
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(Path::new(p)).display().to_string()
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(n("./a/../b"), "b");
        assert_eq!(n("a//b/"), "a/b");
        assert_eq!(n("/x//y/./z/.."), "/x/y");
        assert_eq!(n("./f"), "f");
        assert_eq!(n("."), ".");
        assert_eq!(n("a/.."), ".");
        assert_eq!(n("../f"), "../f");
        assert_eq!(n("../../a/../b"), "../../b");
        assert_eq!(n("a/../../b"), "../b");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../a"), "/a");
        assert_eq!(n("/base/./m/src//lib.rs"), "/base/m/src/lib.rs");
    }

    #[test]
    fn tidies_without_resolving_parents() {
        let t = |p: &str| tidy(Path::new(p)).display().to_string();
        assert_eq!(t("./a//b/./c/"), "a/b/c");
        assert_eq!(t("/x/../y"), "/x/../y");
        assert_eq!(t("./"), ".");
    }

    #[test]
    fn shows_existing_paths_resolved_and_relative_when_below_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("b")).unwrap();
        let messy = real.join("b").join("..").join(".").join("b");
        assert_eq!(shown(&messy), real.join("b"));
        // Missing: tidied only (`nope/..` is not `.` when nope is missing).
        assert_eq!(
            shown(Path::new("./nope/..//x/.")),
            PathBuf::from("nope/../x")
        );
        // Relative to the current directory (the package dir when testing).
        let here = shown(Path::new("./src/../Cargo.toml"));
        assert_eq!(here, PathBuf::from("Cargo.toml"));
    }
}
