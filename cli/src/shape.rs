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
    /// An HTTP or async function's signature, where its parts are in the user's file (`None`
    /// for a mainProcess function): the build tells the compiler's verdict on each part there.
    pub handler: Option<Signature>,
}

/// A position in the user's file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(span: proc_macro2::Span) -> Pos {
        let start = span.start();
        Pos {
            line: start.line,
            col: start.column + 1,
        }
    }
}

/// An HTTP function's signature as written: its file, its name's position, each argument's type
/// (as written, and where) and where its return type is.
#[derive(Debug, Clone)]
pub struct Signature {
    pub file: PathBuf,
    pub name: Pos,
    pub args: Vec<(String, Pos)>,
    pub output: Pos,
}

impl Signature {
    /// `file:line:col` of `pos`.
    pub fn at(&self, pos: Pos) -> String {
        format!("{}:{}:{}", self.file.display(), pos.line, pos.col)
    }
}

/// Most arguments an axum handler takes (axum implements `Handler` for up to 16).
pub const MAX_ARGS: usize = 16;

pub fn expected(kind: FunctionKind, name: &str) -> String {
    match kind {
        FunctionKind::Main => format!("pub fn {name}(svc: &mut Service)"),
        _ => format!(
            "pub async fn {name}(<axum extractors, e.g. Json<T>, Path<P>, Query<Q>, HeaderMap, Ctx, \
             the body one last>) -> impl IntoResponse"
        ),
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
    let handler = check_source(&source, &file, name, kind)?;
    let mut call_path = vec![lib.clone()];
    call_path.extend(module);
    call_path.push(name.to_string());
    Ok(Target {
        package,
        lib,
        call_path: call_path.join("::"),
        handler,
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

/// Checks the function's shape in `source`; for an HTTP or async function, returns where the
/// parts of its signature are.
pub fn check_source(
    source: &str,
    file: &Path,
    name: &str,
    kind: FunctionKind,
) -> anyhow::Result<Option<Signature>> {
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
            return check_handler(sig, file, name, &expected).map(Some);
        }
    }
    Ok(None)
}

/// What the shape check can tell of an axum handler's arguments without the compiler: no
/// `self`, no more than [`MAX_ARGS`], each one a type that could be an extractor (not a
/// reference, a primitive, a slice or an `impl Trait`), and at most one that reads the body,
/// last. Whether each really is an extractor, the future `Send` and the answer `IntoResponse`
/// only the compiler knows: the build asks it, argument by argument (see `builder`).
fn check_handler(
    sig: &syn::Signature,
    file: &Path,
    name: &str,
    expected: &str,
) -> anyhow::Result<Signature> {
    let at = |pos: Pos| format!("{}:{}:{}", file.display(), pos.line, pos.col);
    if sig.inputs.len() > MAX_ARGS {
        bail!(
            "{}: function '{name}' takes {} arguments; an axum handler takes at most {MAX_ARGS}: \
             group some into one extractor (a struct deriving Deserialize for Query or Json)",
            at(Pos::of(sig.inputs.span())),
            sig.inputs.len()
        );
    }
    let mut args = Vec::new();
    let mut body: Option<(String, Pos)> = None;
    for (i, input) in sig.inputs.iter().enumerate() {
        let ty = match input {
            syn::FnArg::Receiver(r) => bail!(
                "{}: function '{name}' takes `self`; a function is a free function, not a \
                 method. Expected: {expected}",
                at(Pos::of(r.span()))
            ),
            syn::FnArg::Typed(t) => &*t.ty,
        };
        let pos = Pos::of(ty.span());
        let text = type_text(ty);
        if let Some(why) = never_an_extractor(ty) {
            bail!(
                "{}: argument {} of '{name}' is `{text}`, which {why}. An argument of an HTTP \
                 function is an axum extractor (Json<T>, Path<T>, Query<T>, HeaderMap, String, \
                 Bytes, Request, Ctx, …)",
                at(pos),
                i + 1
            );
        }
        if reads_body(ty) {
            if let Some((first, first_pos)) = &body {
                bail!(
                    "{}: function '{name}' takes two extractors that read the request body \
                     (`{first}` at {} and `{text}` here): the body can be read once, so take \
                     only one of them, as the last argument",
                    at(pos),
                    at(*first_pos)
                );
            }
            body = Some((text.clone(), pos));
        }
        args.push((text, pos));
    }
    if let Some((text, pos)) = &body
        && args.last().map(|(_, p)| p) != Some(pos)
    {
        bail!(
            "{}: `{text}` reads the request body, so it must be the last argument of '{name}' \
             (axum runs the extractors in order and the body one last)",
            at(*pos)
        );
    }
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => Pos::of(ty.span()),
        syn::ReturnType::Default => Pos::of(sig.paren_token.span.close()),
    };
    Ok(Signature {
        file: file.to_path_buf(),
        name: Pos::of(sig.ident.span()),
        args,
        output,
    })
}

/// Why `ty` can never be an axum extractor, if the shape alone tells.
fn never_an_extractor(ty: &syn::Type) -> Option<&'static str> {
    const PRIMITIVES: [&str; 17] = [
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32",
        "i64", "i128", "isize", "f32", "f64",
    ];
    match ty {
        syn::Type::Reference(r) => Some(if last_segment(&r.elem).as_deref() == Some("Service") {
            "is a reference: `&mut Service` is what a mainProcess function takes (set \
                 \"mainProcess\": true in the deploy file)"
        } else {
            "is a reference: extractors are owned values (take `String`, not `&str`)"
        }),
        syn::Type::ImplTrait(_) => Some("is `impl Trait`, a generic: name the type"),
        syn::Type::Slice(_) | syn::Type::Array(_) => {
            Some("is a slice or an array: take `Bytes` or `Json<Vec<T>>`")
        }
        syn::Type::Ptr(_)
        | syn::Type::BareFn(_)
        | syn::Type::Never(_)
        | syn::Type::TraitObject(_) => Some("cannot be built from a request"),
        syn::Type::Path(p)
            if p.qself.is_none()
                && p.path.segments.len() == 1
                && PRIMITIVES.contains(&p.path.segments[0].ident.to_string().as_str()) =>
        {
            Some("is a primitive: read it with Path<T> or Query<T>")
        }
        syn::Type::Paren(p) => never_an_extractor(&p.elem),
        syn::Type::Group(g) => never_an_extractor(&g.elem),
        _ => None,
    }
}

/// Whether `ty` is one of axum's extractors that consume the body (`FromRequest`, not
/// `FromRequestParts`), also inside `Option<…>` or `Result<…, _>`.
fn reads_body(ty: &syn::Type) -> bool {
    const BODY: [&str; 9] = [
        "Json",
        "String",
        "Bytes",
        "Request",
        "Form",
        "RawForm",
        "Multipart",
        "Body",
        "BytesMut",
    ];
    let syn::Type::Path(p) = ty else {
        return false;
    };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let name = last.ident.to_string();
    if name == "Option" || name == "Result" {
        if let syn::PathArguments::AngleBracketed(a) = &last.arguments
            && let Some(syn::GenericArgument::Type(inner)) = a.args.first()
        {
            return reads_body(inner);
        }
        return false;
    }
    BODY.contains(&name.as_str())
}

/// A type as written, spaced the way rustfmt would (`Json<Greet>`, `Path<(u32, String)>`).
fn type_text(ty: &syn::Type) -> String {
    let raw = quote::ToTokens::to_token_stream(ty).to_string();
    let mut out = String::with_capacity(raw.len());
    for part in raw.split(' ') {
        let glue = matches!(part, "<" | ">" | "::" | "," | ")" | "]")
            || out.ends_with(['<', '(', '[', '&'])
            || out.ends_with("::");
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
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
        check_source(src, Path::new("f.rs"), "method2", kind)
            .map(|_| ())
            .map_err(|e| e.to_string())
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
                && e.contains("pub async fn method2(<axum extractors"),
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
        assert!(
            e.contains("f.rs:1:36") && e.contains("argument 2 of 'method2' is `u8`"),
            "{e}"
        );
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
    fn any_axum_handler_is_accepted_and_its_parts_located() {
        let src = "use x::*;\n\
                   pub async fn method2(\n    Path(id): Path<(u32, String)>,\n    \
                   Query(q): Query<Params>,\n    headers: HeaderMap,\n    ctx: Ctx,\n    \
                   Json(g): Json<Greet>,\n) -> impl IntoResponse { \"x\" }\n";
        let sig = check_source(src, Path::new("f.rs"), "method2", FunctionKind::Http)
            .unwrap()
            .unwrap();
        let args: Vec<(&str, usize, usize)> = sig
            .args
            .iter()
            .map(|(t, p)| (t.as_str(), p.line, p.col))
            .collect();
        assert_eq!(
            args,
            vec![
                ("Path<(u32, String)>", 3, 15),
                ("Query<Params>", 4, 15),
                ("HeaderMap", 5, 14),
                ("Ctx", 6, 10),
                ("Json<Greet>", 7, 14),
            ]
        );
        assert_eq!((sig.name.line, sig.name.col), (2, 14));
        assert_eq!((sig.output.line, sig.output.col), (8, 6));
        for ok in [
            "pub async fn method2() -> &'static str { \"x\" }",
            "pub async fn method2(body: String) -> String { body }",
            "pub async fn method2(m: Method, b: Option<Json<Value>>) {}",
            "pub async fn method2(b: Result<Json<V>, JsonRejection>) {}",
            "pub async fn method2(p: Path<u32>, r: axum::extract::Request) {}",
        ] {
            check(ok, FunctionKind::Async).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(check("pub fn method2(svc: &mut Service) {}", FunctionKind::Main).is_ok());
    }

    #[test]
    fn what_can_never_be_a_handler_is_told_at_its_place() {
        let e = check(
            "pub async fn method2(Json(a): Json<A>, body: String) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(
            e.contains("f.rs:1:46")
                && e.contains("two extractors that read the request body")
                && e.contains("`Json<A>` at f.rs:1:31"),
            "{e}"
        );
        let e = check(
            "pub async fn method2(b: Bytes, h: HeaderMap) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(
            e.contains("f.rs:1:25") && e.contains("must be the last argument"),
            "{e}"
        );
        let e = check("pub async fn method2(s: &str) {}", FunctionKind::Http).unwrap_err();
        assert!(
            e.contains("f.rs:1:25") && e.contains("is a reference") && e.contains("String"),
            "{e}"
        );
        let e = check(
            "pub async fn method2(svc: &mut Service) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(e.contains("mainProcess"), "{e}");
        let e = check(
            "pub async fn method2(x: impl FromRequest<()>) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(e.contains("impl Trait"), "{e}");
        let e = check("pub async fn method2<T>(x: Json<T>) {}", FunctionKind::Http).unwrap_err();
        assert!(e.contains("f.rs:1:21") && e.contains("generic"), "{e}");
        let e = check(
            "impl X { pub async fn method2(&self) {} }\npub async fn method2(self) {}",
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(e.contains("f.rs:2:22") && e.contains("`self`"), "{e}");
        let many = (0..17)
            .map(|i| format!("a{i}: HeaderMap"))
            .collect::<Vec<_>>()
            .join(", ");
        let e = check(
            &format!("pub async fn method2({many}) {{}}"),
            FunctionKind::Http,
        )
        .unwrap_err();
        assert!(
            e.contains("takes 17 arguments") && e.contains("at most 16"),
            "{e}"
        );
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
