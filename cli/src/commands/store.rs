//! `proxyCli store …`: look at and change documents through the gateway's `/store` API, without
//! curl and tokens by hand. Output is the store's JSON, pretty-printed; errors print the store's
//! problem detail and exit non-zero.

use anyhow::{Context, bail};

use crate::docker::Engine;
use crate::instance::Instance;
use crate::platform;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Table names with document counts.
    Tables,
    /// A page of a table's documents, in id order.
    List {
        table: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// One document.
    Get { table: String, id: String },
    /// Create a document from a JSON object (`@file` reads a file, `-` stdin).
    Create { table: String, json: String },
    /// Replace (or create) the document `id`.
    Put {
        table: String,
        id: String,
        json: String,
    },
    /// JSON Merge Patch (RFC 7386) of a document.
    Patch {
        table: String,
        id: String,
        json: String,
    },
    /// Delete a document.
    Delete { table: String, id: String },
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let base = format!("{}/store", platform::gateway_url(&engine, instance).await?);
    let token = platform::token(instance, false)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let (method, path, body) = match args.action {
        Action::Tables => (reqwest::Method::GET, "/tables".to_string(), None),
        Action::List {
            table,
            limit,
            after,
        } => {
            let mut path = format!("/tables/{table}/docs?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            (reqwest::Method::GET, path, None)
        }
        Action::Get { table, id } => (
            reqwest::Method::GET,
            format!("/tables/{table}/docs/{id}"),
            None,
        ),
        Action::Create { table, json } => (
            reqwest::Method::POST,
            format!("/tables/{table}/docs"),
            Some(read(&json)?),
        ),
        Action::Put { table, id, json } => (
            reqwest::Method::PUT,
            format!("/tables/{table}/docs/{id}"),
            Some(read(&json)?),
        ),
        Action::Patch { table, id, json } => (
            reqwest::Method::PATCH,
            format!("/tables/{table}/docs/{id}"),
            Some(read(&json)?),
        ),
        Action::Delete { table, id } => (
            reqwest::Method::DELETE,
            format!("/tables/{table}/docs/{id}"),
            None,
        ),
    };
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(&token);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let response = req
        .send()
        .await
        .with_context(|| format!("the gateway at {base} does not answer"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<rfa_wire::Problem>(&text)
            .map(|p| p.detail)
            .unwrap_or(text);
        bail!("the store answered {status}: {detail}");
    }
    if text.is_empty() {
        println!(
            "{}",
            status.canonical_reason().unwrap_or("done").to_lowercase()
        );
    } else {
        let pretty = serde_json::from_str::<serde_json::Value>(&text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(text);
        println!("{pretty}");
    }
    Ok(())
}

/// The JSON argument: inline, `@path` for a file, `-` for stdin. Checked to be JSON here so a
/// typo is caught before anything is sent.
fn read(arg: &str) -> anyhow::Result<String> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    } else {
        arg.to_string()
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("the document is not valid JSON ({e}): pass a JSON object, @file or -")
    })?;
    if !value.is_object() {
        bail!("the document must be a JSON object like {{\"amount\": 10}}");
    }
    Ok(text)
}
