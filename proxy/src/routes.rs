//! The route table: which replicas serve each function. The CLI writes it through the admin API;
//! it is persisted to `<data_dir>/routes.json` (written to a temporary file, synced, then renamed
//! over the old one) so a restarted gateway serves the same functions at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rfa_wire::route::FunctionRoute;

use crate::ProxyError;

const FILE: &str = "routes.json";

pub struct RouteTable {
    file: Option<PathBuf>,
    routes: RwLock<BTreeMap<String, FunctionRoute>>,
    next: AtomicUsize,
}

impl RouteTable {
    /// Loads the persisted table from `data_dir`, or starts empty.
    pub fn load(data_dir: Option<&Path>) -> anyhow::Result<RouteTable> {
        let file = data_dir.map(|d| d.join(FILE));
        let routes = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read(path)?;
                let list: Vec<FunctionRoute> = serde_json::from_slice(&text)?;
                list.into_iter().map(|r| (r.name.clone(), r)).collect()
            }
            _ => BTreeMap::new(),
        };
        Ok(RouteTable {
            file,
            routes: RwLock::new(routes),
            next: AtomicUsize::new(0),
        })
    }

    pub fn get(&self, name: &str) -> Option<FunctionRoute> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<FunctionRoute> {
        self.read().values().cloned().collect()
    }

    /// Picks the upstream (`host:port`) for the next call to `name`, round robin.
    pub fn pick(&self, name: &str) -> Result<(FunctionRoute, String), ProxyError> {
        let routes = self.read();
        let route = routes
            .get(name)
            .ok_or_else(|| ProxyError::UnknownFunction(name.to_string()))?;
        if route.upstreams.is_empty() {
            return Err(ProxyError::NoReplica(name.to_string()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % route.upstreams.len();
        Ok((route.clone(), route.upstreams[i].clone()))
    }

    /// Adds or replaces a route; returns whether it is new. Persisted before it takes effect.
    pub fn put(&self, route: FunctionRoute) -> Result<bool, ProxyError> {
        let mut routes = self.write();
        let mut next = routes.clone();
        let created = next.insert(route.name.clone(), route).is_none();
        self.persist(&next)?;
        *routes = next;
        Ok(created)
    }

    /// Removes a route; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, ProxyError> {
        let mut routes = self.write();
        if !routes.contains_key(name) {
            return Ok(false);
        }
        let mut next = routes.clone();
        next.remove(name);
        self.persist(&next)?;
        *routes = next;
        Ok(true)
    }

    fn persist(&self, routes: &BTreeMap<String, FunctionRoute>) -> Result<(), ProxyError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let list: Vec<&FunctionRoute> = routes.values().collect();
        let write = || -> std::io::Result<()> {
            let tmp = path.with_extension("json.tmp");
            let body = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| ProxyError::Persist(format!("{}: {e}", path.display())))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, FunctionRoute>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, FunctionRoute>> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfa_wire::route::FunctionKind;

    fn route(name: &str, upstreams: &[&str]) -> FunctionRoute {
        FunctionRoute {
            name: name.into(),
            kind: FunctionKind::Http,
            upstreams: upstreams.iter().map(|s| s.to_string()).collect(),
            image: "img".into(),
            deployed_at: "now".into(),
            queue: None,
        }
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let table = RouteTable::load(Some(dir.path())).unwrap();
        assert!(table.put(route("a", &["x:1"])).unwrap());
        assert!(!table.put(route("a", &["y:1", "z:1"])).unwrap());
        assert!(table.put(route("b", &["b:1"])).unwrap());
        assert!(table.remove("b").unwrap());
        assert!(!table.remove("b").unwrap());
        let again = RouteTable::load(Some(dir.path())).unwrap();
        assert_eq!(again.all(), vec![route("a", &["y:1", "z:1"])]);
    }

    #[test]
    fn picks_round_robin() {
        let table = RouteTable::load(None).unwrap();
        table.put(route("a", &["x:1", "y:1"])).unwrap();
        let picks: Vec<String> = (0..4).map(|_| table.pick("a").unwrap().1).collect();
        assert_eq!(picks.iter().filter(|p| *p == "x:1").count(), 2);
        assert!(matches!(
            table.pick("nope"),
            Err(ProxyError::UnknownFunction(_))
        ));
        table.put(route("e", &[])).unwrap();
        assert!(matches!(table.pick("e"), Err(ProxyError::NoReplica(_))));
    }
}
