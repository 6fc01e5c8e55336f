//! Checks, before any build, that a deploy entry points at a function rfaas can serve: the
//! package is a Cargo library depending on `function-base`, the file lies inside it, and the
//! function is at its top level, `pub`, with the signature its kind needs. Every failure names
//! `file:line:col`, what was found and the signature expected.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rfa_wire::route::FunctionKind;
use syn::spanned::Spanned;

/// What the wrapper crate needs to call the function.
#[derive(Debug, Clone)]
pub struct Target {
    /// The package name, as a dependency key.
    pub package: String,
    /// The library's crate name (`-` turned to `_`).
    pub lib: String,
    /// `lib::module::path::name`.
    pub call_path: String,
}

pub fn expected(kind: FunctionKind, name: &str) -> String {
    match kind {
        FunctionKind::Main => format!("pub fn {name}(svc: &mut Service)"),
        _ => format!("pub async fn {name}(req: Request) -> impl IntoResponse"),
    }
}

/// Runs every check for the function `name` of `kind`.
pub fn check(
    name: &str,
    kind: FunctionKind,
    package_dir: &Path,
    file_path: &Path,
) -> anyhow::Result<Target> {
    let manifest = package_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "packageDir {} is not a Cargo package (no Cargo.toml there): point it at the crate \
             holding the function, or create one with `proxyCli new {name}`",
            package_dir.display()
        )
    })?;
    let toml: toml::Value = text
        .parse()
        .map_err(|e: toml::de::Error| toml_error(&manifest, &text, &e))?;
    let package = toml
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| {
            format!(
                "{}: no [package] name: packageDir must be a Cargo package",
                manifest.display()
            )
        })?
        .to_string();
    let depends = toml
        .get("dependencies")
        .and_then(|d| d.as_table())
        .is_some_and(|d| {
            d.iter().any(|(k, v)| {
                k == "function-base"
                    || v.get("package").and_then(|p| p.as_str()) == Some("function-base")
            })
        });
    if !depends {
        bail!(
            "{}: the package does not depend on function-base: add `function-base = {{ path = \"{}\" }}` under [dependencies]",
            manifest.display(),
            crate::paths::source_root().join("function-base").display()
        );
    }
    let lib_path = toml
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or("src/lib.rs");
    let lib_file = package_dir.join(lib_path);
    if !lib_file.is_file() {
        bail!(
            "{}: the package has no library ({} is missing): a function lives in a library crate (src/lib.rs)",
            manifest.display(),
            lib_file.display()
        );
    }
    let lib = toml
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map(String::from)
        .unwrap_or_else(|| package.replace('-', "_"));

    let file = file_path.canonicalize().with_context(|| {
        format!(
            "filePath {} does not exist: point it at the .rs file defining '{name}'",
            file_path.display()
        )
    })?;
    let package_dir = package_dir.canonicalize()?;
    if !file.starts_with(&package_dir) {
        bail!(
            "filePath {} lies outside packageDir {}: the function must be in the package it is built from",
            file.display(),
            package_dir.display()
        );
    }
    let lib_file = lib_file.canonicalize()?;
    let module = module_path(&lib_file, &file).with_context(|| {
        format!(
            "filePath {} is not a module of the library rooted at {}",
            file.display(),
            lib_file.display()
        )
    })?;

    let source = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    check_source(&source, &file, name, kind)?;
    let mut call_path = vec![lib.clone()];
    call_path.extend(module);
    call_path.push(name.to_string());
    Ok(Target {
        package,
        lib,
        call_path: call_path.join("::"),
    })
}

/// `Cargo.toml:L:C: not valid TOML: <what>`: the position once, in the form every other
/// check uses (toml's own message would add it again, with a drawing of the line).
fn toml_error(manifest: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let (line, col) = match e.span() {
        Some(span) => line_col(text, span.start),
        None => (1, 1),
    };
    anyhow::anyhow!(
        "{}:{line}:{col}: not valid TOML: {}: fix the manifest (cargo reads it too)",
        manifest.display(),
        e.message().trim_end().replace('\n', "; ")
    )
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `src/lib.rs` → `[]`, `src/a/b.rs` → `[a, b]`, `src/a/mod.rs` → `[a]`.
fn module_path(lib_file: &Path, file: &Path) -> Option<Vec<String>> {
    if file == lib_file {
        return Some(Vec::new());
    }
    let src = lib_file.parent()?;
    let rel: PathBuf = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || parts.iter().any(|p| p.contains('.') || p.contains('-')) {
        return None;
    }
    Some(parts)
}

/// Checks the function's shape in `source`.
pub fn check_source(
    source: &str,
    file: &Path,
    name: &str,
    kind: FunctionKind,
) -> anyhow::Result<()> {
    let expected = expected(kind, name);
    let at = |span: proc_macro2::Span| {
        let start = span.start();
        format!("{}:{}:{}", file.display(), start.line, start.column + 1)
    };
    let ast = syn::parse_file(source).map_err(|e| {
        let what = e.to_string();
        // proc-macro2's lexer says only this when the text is not tokens at all.
        let what = if what == "cannot parse string into token stream" {
            "a bracket, brace or parenthesis is not closed (or closed twice), or a string, \
             character or comment does not end"
                .to_string()
        } else {
            what
        };
        anyhow::anyhow!("{}: not valid Rust: {what}", at(e.span()))
    })?;
    let functions: Vec<&syn::ItemFn> = ast
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Fn(f) => Some(f),
            _ => None,
        })
        .collect();
    let Some(f) = functions.iter().find(|f| f.sig.ident == name) else {
        let found: Vec<String> = functions.iter().map(|f| f.sig.ident.to_string()).collect();
        bail!(
            "{}:1:1: no top-level function named '{name}' (found: {}). Expected: {expected}",
            file.display(),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        );
    };
    let sig = &f.sig;
    if !matches!(f.vis, syn::Visibility::Public(_)) {
        bail!(
            "{}: function '{name}' is not pub. Expected: {expected}",
            at(sig.fn_token.span)
        );
    }
    if !sig.generics.params.is_empty() {
        bail!(
            "{}: function '{name}' is generic. Expected: {expected}",
            at(sig.generics.span())
        );
    }
    let arg_types: Vec<&syn::Type> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(&*t.ty),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let found_args = || {
        sig.inputs
            .iter()
            .map(quote_arg)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kind {
        FunctionKind::Main => {
            if sig.asyncness.is_some() {
                bail!(
                    "{}: function '{name}' is async, but a mainProcess setup function is not. Expected: {expected}",
                    at(sig.span())
                );
            }
            let ok = arg_types.len() == 1
                && matches!(arg_types[0], syn::Type::Reference(r) if r.mutability.is_some() && last_segment(&r.elem) == Some("Service".into()));
            if !ok || sig.inputs.len() != 1 {
                bail!(
                    "{}: function '{name}' takes ({}); a mainProcess function takes one `&mut Service`. Expected: {expected}",
                    at(sig.inputs.span()),
                    found_args()
                );
            }
        }
        _ => {
            if sig.asyncness.is_none() {
                bail!(
                    "{}: function '{name}' is not async. Expected: {expected}",
                    at(sig.fn_token.span)
                );
            }
            let ok = arg_types.len() == 1 && last_segment(arg_types[0]) == Some("Request".into());
            if !ok || sig.inputs.len() != 1 {
                bail!(
                    "{}: function '{name}' takes ({}); an HTTP function takes one `Request`. Expected: {expected}",
                    at(if sig.inputs.is_empty() {
                        sig.ident.span()
                    } else {
                        sig.inputs.span()
                    }),
                    found_args()
                );
            }
        }
    }
    Ok(())
}

fn last_segment(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn quote_arg(arg: &syn::FnArg) -> String {
    match arg {
        syn::FnArg::Receiver(_) => "self".into(),
        syn::FnArg::Typed(t) => {
            let ty = &t.ty;
            let text = match &**ty {
                syn::Type::Reference(r) => format!(
                    "&{}{}",
                    if r.mutability.is_some() { "mut " } else { "" },
                    last_segment(&r.elem).unwrap_or_else(|| "_".into())
                ),
                other => last_segment(other).unwrap_or_else(|| "_".into()),
            };
            format!("_: {text}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, kind: FunctionKind) -> Result<(), String> {
        check_source(src, Path::new("f.rs"), "method2", kind).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_the_contract_shapes() {
        check(
            "pub async fn method2(req: Request) -> impl IntoResponse { \"x\" }",
            FunctionKind::Http,
        )
        .unwrap();
        check(
            "pub async fn method2(_r: axum::extract::Request) -> String { String::new() }",
            FunctionKind::Async,
        )
        .unwrap();
        check("pub fn method2(svc: &mut Service) {}", FunctionKind::Main).unwrap();
    }

    #[test]
    fn names_the_place_and_the_expected_signature() {
        let e = check("fn other() {}\n", FunctionKind::Http).unwrap_err();
        assert!(
            e.contains("f.rs:1:1")
                && e.contains("found: other")
                && e.contains("pub async fn method2(req: Request)"),
            "{e}"
        );
        let e = check("\nasync fn method2(req: Request) {}", FunctionKind::Http).unwrap_err();
        assert!(e.contains("f.rs:2:7") && e.contains("not pub"), "{e}");
        let e = check("pub fn method2(req: Request) {}", FunctionKind::Http).unwrap_err();
        assert!(e.contains("f.rs:1:5") && e.contains("not async"), "{e}");
        let e = check(
            "pub async fn method2(a: String, b: u8) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(e.contains("takes (_: String, _: u8)"), "{e}");
        let e = check(
            "pub async fn method2(svc: &mut Service) {}",
            FunctionKind::Main,
        )
        .unwrap_err();
        assert!(e.contains("is async"), "{e}");
        let e = check("pub fn method2(svc: Service) {}", FunctionKind::Main).unwrap_err();
        assert!(e.contains("&mut Service"), "{e}");
        let e = check("pub fn method2( {", FunctionKind::Main).unwrap_err();
        assert!(e.contains("not valid Rust"), "{e}");
        let e = check("pub fn method2() { \"x }", FunctionKind::Main).unwrap_err();
        assert!(e.contains("f.rs:1:") && e.contains("does not end"), "{e}");
        assert_eq!(e.matches("f.rs").count(), 1, "{e}");
    }

    #[test]
    fn toml_errors_give_their_position_once() {
        let text = "[package]\nname = \"x\"\nversion = = 1\n";
        let e = text.parse::<toml::Value>().unwrap_err();
        let message = toml_error(Path::new("/p/Cargo.toml"), text, &e).to_string();
        assert!(message.starts_with("/p/Cargo.toml:3:"), "{message}");
        assert!(!message.contains("line 3"), "position twice: {message}");
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn module_paths() {
        let lib = Path::new("/p/src/lib.rs");
        assert_eq!(module_path(lib, lib), Some(vec![]));
        assert_eq!(
            module_path(lib, Path::new("/p/src/a/b.rs")),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            module_path(lib, Path::new("/p/src/a/mod.rs")),
            Some(vec!["a".into()])
        );
        assert_eq!(module_path(lib, Path::new("/p/tests/x.rs")), None);
    }
}
