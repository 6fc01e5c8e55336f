//! `proxyCli store …`: look at and change documents through the gateway's `/store` API, without
//! curl and tokens by hand. Output is the store's JSON, pretty-printed; errors print the store's
//! problem detail and exit non-zero.

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use rfa_wire::names::{DOC_ID_RULE, TABLE_NAME_RULE, is_valid_doc_id, is_valid_table_name};

use crate::instance::Instance;
use crate::platform;
use rfa_engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// A table name, as every subcommand takes it.
const TABLE_HELP: &str = "The table: 1 to 64 of A-Z, a-z, 0-9, '_' or '-'";
/// A document id.
const ID_HELP: &str = "The document's id (as `create` printed it, or one you choose with `put`): 1 to 128 of A-Z, a-z, 0-9, '_' or '-'";
/// A JSON argument.
const JSON_HELP: &str = "A JSON object, inline ('{\"amount\": 10}'), @FILE to read it from a file, or - to read it from stdin";

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Table names with document counts.
    Tables,
    /// A page of a table's documents, in id order (creation order for generated ids).
    List {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        /// How many documents to show: 1 to 1000.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after this id (the `next` of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// One document.
    Get {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        #[arg(value_name = "ID", help = ID_HELP)]
        id: String,
    },
    /// Create a document (the store chooses its id) from a JSON object.
    Create {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        #[arg(value_name = "JSON", help = JSON_HELP)]
        json: String,
    },
    /// Replace the data of the document `ID`, or create it with that id.
    Put {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        #[arg(value_name = "ID", help = ID_HELP)]
        id: String,
        #[arg(value_name = "JSON", help = JSON_HELP)]
        json: String,
    },
    /// Change a document with a JSON Merge Patch (RFC 7386): the fields given are set, a
    /// field given as null is removed.
    Patch {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        #[arg(value_name = "ID", help = ID_HELP)]
        id: String,
        #[arg(value_name = "JSON", help = JSON_HELP)]
        json: String,
    },
    /// Delete a document, and print what it held.
    Delete {
        #[arg(value_name = "TABLE", help = TABLE_HELP)]
        table: String,
        #[arg(value_name = "ID", help = ID_HELP)]
        id: String,
    },
}

impl Action {
    /// The table and id the action names, checked before anything is sent: a name the store
    /// would refuse (or that would not even reach its route, like `a/b`) is said here, with
    /// the rule.
    fn check_names(&self) -> anyhow::Result<()> {
        let (table, id, after) = match self {
            Action::Tables => return Ok(()),
            Action::List { table, after, .. } => (table, None, after.as_ref()),
            Action::Create { table, .. } => (table, None, None),
            Action::Get { table, id }
            | Action::Put { table, id, .. }
            | Action::Patch { table, id, .. }
            | Action::Delete { table, id } => (table, Some(id), None),
        };
        if !is_valid_table_name(table) {
            bail!(
                "'{}' is not a valid table name: a table name is {TABLE_NAME_RULE}",
                table.escape_debug()
            );
        }
        for id in id.into_iter().chain(after) {
            if !is_valid_doc_id(id) {
                bail!(
                    "'{}' is not a valid document id: an id is {DOC_ID_RULE}",
                    id.escape_debug()
                );
            }
        }
        Ok(())
    }
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    args.action.check_names()?;
    let engine = Engine::connect().await?;
    let base = format!("{}/store", platform::gateway_url(&engine, instance).await?);
    let token = platform::token(instance, false)?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        base,
        token,
    };
    let (method, path, body) = match args.action {
        Action::Tables => (Method::GET, "/tables".to_string(), None),
        Action::List {
            table,
            limit,
            after,
        } => {
            let mut path = format!("/tables/{table}/docs?limit={limit}");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            (Method::GET, path, None)
        }
        Action::Get { table, id } => (Method::GET, format!("/tables/{table}/docs/{id}"), None),
        Action::Create { table, json } => (
            Method::POST,
            format!("/tables/{table}/docs"),
            Some(read(&json)?),
        ),
        Action::Put { table, id, json } => (
            Method::PUT,
            format!("/tables/{table}/docs/{id}"),
            Some(read(&json)?),
        ),
        Action::Patch { table, id, json } => (
            Method::PATCH,
            format!("/tables/{table}/docs/{id}"),
            Some(read(&json)?),
        ),
        Action::Delete { table, id } => return delete(&client, &table, &id).await,
    };
    let (_, text) = client.send(method, &path, body).await?;
    print_json(text);
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// One answer of the store: status, ETag, body.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    text: String,
}

impl Client {
    /// Sends one request; a non-2xx answer is an error naming the store's problem detail.
    /// Returns the ETag and the body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(Option<String>, String)> {
        let answer = self.request(method, path, body, None).await?;
        answer.ok()
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        if_match: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let response = req
            .send()
            .await
            .with_context(|| format!("the gateway at {} does not answer", self.base))?;
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, etag, text })
    }
}

impl Answer {
    fn ok(self) -> anyhow::Result<(Option<String>, String)> {
        if self.status.is_success() {
            return Ok((self.etag, self.text));
        }
        let detail = serde_json::from_str::<rfa_wire::Problem>(&self.text)
            .map(|p| p.detail)
            .unwrap_or(self.text);
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            bail!("{}", too_large(&detail));
        }
        bail!("the store answered {}: {detail}", self.status)
    }
}

/// A 413's message, naming the limit: the store's own detail when it names one (a document
/// whose event would be too large), else its request body limit.
fn too_large(detail: &str) -> String {
    let limit = rfa_wire::store::MAX_BODY_BYTES;
    if detail.contains("limit") {
        format!("the store refused the document as too large: {detail}: make it smaller")
    } else {
        format!(
            "the store refused the document as too large ({detail}): a request body may be at \
             most {} KiB ({limit} bytes): make it smaller, or split it into several documents",
            limit / 1024
        )
    }
}

/// Reads the document, deletes exactly that version (so what is printed is what was deleted,
/// even if another writer changes it meanwhile: then it is read again), and prints it.
async fn delete(client: &Client, table: &str, id: &str) -> anyhow::Result<()> {
    let path = format!("/tables/{table}/docs/{id}");
    for _ in 0..5 {
        let (etag, doc) = client.send(Method::GET, &path, None).await?;
        let answer = client
            .request(Method::DELETE, &path, None, etag.as_deref())
            .await?;
        if answer.status == StatusCode::PRECONDITION_FAILED {
            continue;
        }
        answer.ok()?;
        eprintln!("deleted document {id} from table {table}; it held:");
        print_json(doc);
        return Ok(());
    }
    bail!("document {id} of table {table} kept changing while it was being deleted: try again")
}

fn print_json(text: String) {
    if text.is_empty() {
        println!("done");
        return;
    }
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(text);
    println!("{pretty}");
}

/// The JSON argument: inline, `@path` for a file, `-` for stdin. Checked to be JSON here so a
/// typo is caught before anything is sent.
fn read(arg: &str) -> anyhow::Result<String> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {}: give @ the path of a file holding a JSON object",
                crate::normal::shown(std::path::Path::new(path)).display()
            )
        })?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_sending() {
        let create = |table: &str| Action::Create {
            table: table.into(),
            json: "{}".into(),
        };
        let e = create("a/b").check_names().unwrap_err().to_string();
        assert!(
            e.contains("'a/b' is not a valid table name") && e.contains(TABLE_NAME_RULE),
            "{e}"
        );
        assert!(create("payments").check_names().is_ok());
        let get = Action::Get {
            table: "t".into(),
            id: "../x".into(),
        };
        let e = get.check_names().unwrap_err().to_string();
        assert!(
            e.contains("not a valid document id") && e.contains(DOC_ID_RULE),
            "{e}"
        );
        let list = Action::List {
            table: "t".into(),
            limit: 1,
            after: Some("a b".into()),
        };
        assert!(list.check_names().is_err());
    }

    #[test]
    fn a_413_names_the_limit() {
        let e = too_large("the request body is larger than the store accepts");
        assert!(e.contains("1024 KiB (1048576 bytes)"), "{e}");
        let e = too_large(
            "the document is too large: its event would be 2000000 bytes, the limit is 1044480",
        );
        assert!(e.contains("the limit is 1044480"), "{e}");
    }
}
