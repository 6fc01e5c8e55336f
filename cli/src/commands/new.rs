//! `proxyCli new <name> [--kind http|async|main]`: scaffolds a function crate that deploys as it
//! is: `Cargo.toml` (depending on this checkout's function-base), `src/lib.rs` with a test that
//! `cargo test` runs in-process (`function_base::testing`), `deploy.json`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rfa_wire::names::check_function_name;

use crate::normal::shown;

/// What the scaffolded function is.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// An HTTP handler, called synchronously at /functions/<name>/…
    Http,
    /// The same handler deployed with "async": true: calls are queued and answered 202.
    Async,
    /// A mainProcess service: several routes, async work and store events in one container.
    Main,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function's name: the Rust function's name and its URL segment, so a lowercase
    /// letter, then lowercase letters, digits or '_' (at most 63), and not a Rust keyword.
    pub name: String,
    /// What to scaffold: an HTTP handler, an async one, or a mainProcess service.
    #[arg(long, value_enum, default_value = "http")]
    pub kind: Kind,
    /// Where to create the crate (default: ./<name>); it must not exist yet.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Not offered: `new` works on no platform instance. Declared (hidden) so that the global
    /// `--instance` is not added here; main.rs refuses it when given.
    #[arg(long, hide = true)]
    pub instance: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = &args.name;
    check_function_name(name).map_err(|e| anyhow::anyhow!("{e}: nothing was created"))?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} exists already: choose another name or --dir",
            shown(&dir).display()
        );
    }
    let function_base = crate::paths::source_root().join("function-base");
    let fb_path = function_base.display().to_string();
    let cargo = format!(
        "[package]\nname = \"{}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nfunction-base = {{ path = {fb_path:?} }}\n\n\
         # `cargo test` calls the function in-process (function_base::testing): no Docker.\n\
         [dev-dependencies]\nfunction-base = {{ path = {fb_path:?}, features = [\"testing\"] }}\n\n\
         # Not part of any enclosing workspace: rfaas builds it on its own.\n[workspace]\n\n\
         # The profile rfaas builds functions with, so that `cargo build --release` and\n\
         # `cargo test --release` here reuse what a deploy compiled (and the other way round).\n\
         [profile.release]\ndebug = false\nstrip = true\n",
        name.replace('_', "-"),
    );
    let (lib, extra) = match args.kind {
        Kind::Http | Kind::Async => (
            format!(
                "use function_base::prelude::*;\n\n\
                 /// Called for every request to /functions/{name}/… (any method, any path): an\n\
                 /// ordinary axum handler. Take any extractors (Json<T>, Query<T>, Path<T>,\n\
                 /// HeaderMap, Ctx for the store and other functions, …), the body one last.\n\
                 pub async fn {name}(ctx: Ctx, uri: Uri) -> impl IntoResponse {{\n    \
                 (\n        StatusCode::OK,\n        \
                 format!(\"Hello from {{}} at {{}}\\n\", ctx.function(), uri.path()),\n    )\n}}\n\n\
                 #[cfg(test)]\nmod tests {{\n    use super::*;\n    \
                 use function_base::testing::TestPlatform;\n\n    \
                 #[function_base::tokio::test(crate = \"function_base::tokio\")]\n    \
                 async fn says_hello() {{\n        \
                 let platform = TestPlatform::start().await.expect(\"the test platform starts\");\n        \
                 platform.http(\"{name}\", {name});\n        \
                 let answer = platform\n            .call(\"{name}\")\n            \
                 .method(Method::GET)\n            .path(\"/x\")\n            .send()\n            \
                 .await\n            .expect(\"an answer\");\n        \
                 assert_eq!(answer.status(), StatusCode::OK);\n        \
                 assert_eq!(answer.text(), \"Hello from {name} at /x\\n\");\n    }}\n}}\n"
            ),
            match args.kind {
                Kind::Async => ",\n    \"async\": true",
                _ => "",
            },
        ),
        Kind::Main => (
            format!(
                "use function_base::prelude::*;\n\n\
                 /// Sets up the service: routes under /functions/{name}/….\n\
                 pub fn {name}(svc: &mut Service) {{\n    \
                 svc.route(\"/hello\", get(hello));\n}}\n\n\
                 async fn hello() -> impl IntoResponse {{\n    \"Hello from {name}\\n\"\n}}\n\n\
                 #[cfg(test)]\nmod tests {{\n    use super::*;\n    \
                 use function_base::testing::TestPlatform;\n\n    \
                 #[function_base::tokio::test(crate = \"function_base::tokio\")]\n    \
                 async fn says_hello() {{\n        \
                 let platform = TestPlatform::start().await.expect(\"the test platform starts\");\n        \
                 platform.main(\"{name}\", {name}).expect(\"the service is set up\");\n        \
                 let answer = platform\n            .call(\"{name}\")\n            \
                 .method(Method::GET)\n            .path(\"/hello\")\n            .send()\n            \
                 .await\n            .expect(\"an answer\");\n        \
                 assert_eq!(answer.text(), \"Hello from {name}\\n\");\n    }}\n}}\n"
            ),
            ",\n    \"mainProcess\": true",
        ),
    };
    let deploy = format!(
        "{{ \"deploy\": [ {{\n    \"name\": \"{name}\",\n    \"packageDir\": \".\",\n    \
         \"filePath\": \"./src/lib.rs\"{extra}\n}} ] }}\n"
    );
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", shown(&dir).display()))?;
    for (path, text) in [
        (dir.join("Cargo.toml"), cargo),
        (dir.join("src").join("lib.rs"), lib),
        (dir.join("deploy.json"), deploy),
    ] {
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", shown(&path).display()))?;
    }
    // The versions the platform was built and tested with, which the deploy builds with too.
    if let Ok(lock) = std::fs::read_to_string(crate::paths::source_root().join("Cargo.lock")) {
        let path = dir.join("Cargo.lock");
        std::fs::write(&path, lock)
            .with_context(|| format!("cannot write {}", shown(&path).display()))?;
    }
    let dir = shown(&dir);
    println!(
        "created {}: test it with `cargo test --manifest-path {}` (no Docker needed), deploy it \
         with `proxyCli deploy {}`",
        dir.display(),
        dir.join("Cargo.toml").display(),
        dir.join("deploy.json").display()
    );
    Ok(())
}
