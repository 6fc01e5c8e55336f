//! The document store's envelope and event payload.

use serde::{Deserialize, Serialize};

/// Largest request body the store takes, in bytes (1 MiB); a larger one is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default page size of `GET /tables/<t>/docs`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page size of `GET /tables/<t>/docs` (`limit=`).
pub const MAX_PAGE_LIMIT: usize = 1000;

/// A stored document with its metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub id: String,
    pub table: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The three kinds of store event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum EventKind {
    #[serde(rename = "new-doc")]
    NewDoc,
    #[serde(rename = "updated-doc")]
    UpdatedDoc,
    #[serde(rename = "deleted-doc")]
    DeletedDoc,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NewDoc => "new-doc",
            EventKind::UpdatedDoc => "updated-doc",
            EventKind::DeletedDoc => "deleted-doc",
        }
    }
}

/// Payload published on `rfa.store.<table>.<event>.<id>` for every committed write.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocEvent {
    pub event: EventKind,
    pub table: String,
    pub id: String,
    /// Store-wide sequence number of the write; increases with every committed write.
    pub seq: u64,
    /// RFC 3339 time of the write.
    pub at: String,
    /// The document after the write (for `deleted-doc`, the last envelope).
    pub doc: Envelope,
}

/// One table in `GET /tables`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub count: u64,
}

/// A page of `GET /tables/<table>/docs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub docs: Vec<Envelope>,
    /// Pass as `after=` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
