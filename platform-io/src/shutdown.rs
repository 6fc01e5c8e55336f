//! The one shutdown signal of the platform's processes: `SIGTERM` (what `docker stop` sends) or
//! `SIGINT`.

/// Resolves on the first `SIGTERM` or `SIGINT`, logging which (`got SIGTERM`, `got SIGINT`:
/// the words the function runtime's logs have always used). When the signals cannot be listened
/// for (no signal driver), it logs that and never resolves: the process then stops only by kill.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("got SIGTERM"),
                _ = int.recv() => tracing::info!("got SIGINT"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
            std::future::pending::<()>().await
        }
    }
}
