//! One module per `proxyCli` command.

pub mod deploy;
pub mod details;
pub mod dev;
pub mod list;
pub mod logs;
pub mod new;
pub mod rollback;
pub mod scale;
pub mod start_faas;
pub mod stop;
pub mod stop_faas;
pub mod store;
