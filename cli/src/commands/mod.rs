//! One module per `proxyCli` command.

pub mod start_faas;
pub mod stop_faas;
