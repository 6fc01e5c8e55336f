//! The CLI's side of a platform instance: its files on the host (the admin token, the generated
//! wrapper crates). The names and labels of its engine objects are `rfa_engine::instance`'s,
//! re-exported here.

use std::path::PathBuf;

pub use rfa_engine::instance::*;

/// Where an instance's files are on this host.
pub trait HostFiles {
    /// The admin token file: `token` for the default instance, `token-<name>` otherwise.
    fn token_path(&self) -> anyhow::Result<PathBuf>;
    /// The generated wrapper crates of this instance's functions.
    fn deployments_dir(&self) -> PathBuf;
}

impl HostFiles for Instance {
    fn token_path(&self) -> anyhow::Result<PathBuf> {
        Ok(crate::paths::config_dir()?.join(self.object("token")))
    }

    fn deployments_dir(&self) -> PathBuf {
        crate::paths::source_root()
            .join("deployments")
            .join(self.label())
    }
}
