//! `proxyCli new <name> [--kind http|async|main]`: scaffolds a function crate that deploys as it
//! is: `Cargo.toml` (depending on this checkout's function-base), `src/lib.rs`, `deploy.json`.

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
    let cargo = format!(
        "[package]\nname = \"{}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nfunction-base = {{ path = {:?} }}\n\n\
         # Not part of any enclosing workspace: rfaas builds it on its own.\n[workspace]\n",
        name.replace('_', "-"),
        function_base.display().to_string()
    );
    let (lib, extra) = match args.kind {
        Kind::Http | Kind::Async => (
            format!(
                "use function_base::prelude::*;\n\n\
                 /// Called for every request to /functions/{name}/… (any method, any path).\n\
                 pub async fn {name}(req: Request) -> impl IntoResponse {{\n    \
                 let path = req.uri().path().to_string();\n    \
                 (StatusCode::OK, format!(\"Hello from {name} at {{path}}\\n\"))\n}}\n"
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
                 async fn hello() -> impl IntoResponse {{\n    \"Hello from {name}\\n\"\n}}\n"
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
    let dir = shown(&dir);
    println!(
        "created {}: deploy it with `proxyCli deploy {}`",
        dir.display(),
        dir.join("deploy.json").display()
    );
    Ok(())
}
