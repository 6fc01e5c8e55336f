//! `proxyCli new <name> [--kind http|async|main]`: scaffolds a function crate that deploys as it
//! is: `Cargo.toml` (depending on this checkout's function-base), `src/lib.rs`, `deploy.json`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use rfa_wire::names::{FUNCTION_NAME_RULE, is_valid_function_name};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Http,
    Async,
    Main,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function's name (also the crate's directory).
    pub name: String,
    #[arg(long, value_enum, default_value = "http")]
    pub kind: Kind,
    /// Where to create the crate (default: ./<name>).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let name = &args.name;
    if !is_valid_function_name(name) {
        bail!("'{name}' is not a valid function name: {FUNCTION_NAME_RULE}");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} exists already: choose another name or --dir",
            dir.display()
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
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("Cargo.toml"), cargo)?;
    std::fs::write(dir.join("src").join("lib.rs"), lib)?;
    std::fs::write(dir.join("deploy.json"), deploy)?;
    println!(
        "created {}: deploy it with `proxyCli deploy {}`",
        dir.display(),
        dir.join("deploy.json").display()
    );
    Ok(())
}
