//! The resource limits every container rfaas starts gets, in one place (the user they run as is
//! `rfa_engine::UID`). A function's deploy entry can change its own (`memory`, `cpus`, `pids`);
//! the platform's are fixed.

/// Memory (and memory+swap: no swap) of NATS, the store and the gateway.
pub const PLATFORM_MEMORY: i64 = 512 << 20;
/// CPUs of NATS and the store.
pub const PLATFORM_CPUS: f64 = 1.0;
/// CPUs of the gateway: every call passes through it.
pub const PROXY_CPUS: f64 = 2.0;
/// Memory of the scaler: it holds little (the routes and load it polls).
pub const SCALER_MEMORY: i64 = 128 << 20;
/// CPUs of the scaler.
pub const SCALER_CPUS: f64 = 0.5;
/// Process/thread limits of NATS, the store, the gateway and the scaler.
pub const SCALER_PIDS: i64 = 256;
pub const NATS_PIDS: i64 = 512;
pub const STORE_PIDS: i64 = 512;
pub const PROXY_PIDS: i64 = 1024;

/// A function's defaults, when its deploy entry says nothing.
pub const FUNCTION_MEMORY: &str = "128m";
pub const FUNCTION_CPUS: f64 = 1.0;
pub const FUNCTION_PIDS: u32 = 256;
/// What a deploy entry may ask for.
pub const MIN_CPUS: f64 = 0.01;
pub const MIN_PIDS: u32 = 16;
pub const MAX_PIDS: u32 = 32768;

/// CPUs this machine has (Docker refuses a limit above that).
pub fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// `cpus` as Docker's NanoCpus, a default capped at what the machine has (a 1-CPU host still
/// runs the gateway, limited to its one CPU).
pub fn default_nano_cpus(cpus: f64) -> i64 {
    nano_cpus(cpus.min(host_cpus()))
}

pub fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_machine() {
        assert_eq!(nano_cpus(0.5), 500_000_000);
        assert!(default_nano_cpus(PROXY_CPUS) <= nano_cpus(host_cpus()));
        assert!(default_nano_cpus(FUNCTION_CPUS) > 0);
    }
}
