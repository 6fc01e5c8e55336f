//! Reads: one document (parsed, or as stored), a page of a table in id order, the table list.
//! They go to sled directly, never through the writer.

use rfa_wire::store::{Envelope, Page, TableInfo};
use serde::Deserialize;
use sled::IVec;

use super::{
    COUNT_PREFIX, Db, DbError, doc_key, parse_doc, parse_envelope, read_u64, table_prefix,
};

impl Db {
    /// One document, or `None`.
    pub fn get(&self, table: &str, id: &str) -> Result<Option<Envelope>, DbError> {
        self.docs
            .get(doc_key(table, id))?
            .map(|v| parse_envelope(&v))
            .transpose()
    }

    /// One document as stored: its envelope's JSON, exactly what `GET` answers, and its
    /// version. The data is not parsed (a read costs a lookup and a scan of the bytes).
    pub fn get_raw(&self, table: &str, id: &str) -> Result<Option<(IVec, u64)>, DbError> {
        /// The one field a read needs, for its `ETag`; serde skips the rest unparsed.
        #[derive(Deserialize)]
        struct Version {
            version: u64,
        }
        let Some(bytes) = self.docs.get(doc_key(table, id))? else {
            return Ok(None);
        };
        let version = parse_doc::<Version>(&bytes)?.version;
        Ok(Some((bytes, version)))
    }

    /// Up to `limit` documents of `table` with ids greater than `after`, in id order.
    pub fn list(&self, table: &str, after: Option<&str>, limit: usize) -> Result<Page, DbError> {
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(doc_key(table, after)),
            None => std::ops::Bound::Included(table_prefix(table, 0)),
        };
        let end = std::ops::Bound::Excluded(table_prefix(table, 1));
        let mut docs = Vec::with_capacity(limit.min(1000));
        let mut more = false;
        for item in self.docs.range::<Vec<u8>, _>((start, end)) {
            let (_, value) = item?;
            if docs.len() == limit {
                more = true;
                break;
            }
            docs.push(parse_envelope(&value)?);
        }
        let next = if more {
            docs.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    /// Every table that has documents, with its count, by name.
    pub fn tables(&self) -> Result<Vec<TableInfo>, DbError> {
        let mut tables = Vec::new();
        for item in self.meta.scan_prefix(COUNT_PREFIX) {
            let (key, value) = item?;
            let name = String::from_utf8_lossy(&key[COUNT_PREFIX.len()..]).into_owned();
            let count = read_u64(Some(&value), "meta")?.unwrap_or(0);
            tables.push(TableInfo { name, count });
        }
        Ok(tables)
    }
}
