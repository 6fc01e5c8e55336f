//! What can go wrong talking to the engine, each said so that the reader knows what to do.

/// An engine operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached at all.
    #[error(
        "cannot reach the Docker engine at {socket} ({reason}): start Docker \
         (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running engine"
    )]
    Unreachable { socket: String, reason: String },
    /// The engine answered an API call with an error; `what` says which call (`cannot inspect
    /// image x`), the engine's own words follow.
    #[error("{what}: {source}")]
    Api {
        what: String,
        source: bollard::errors::Error,
    },
    /// An image build failed; `output` holds the build's last lines.
    #[error("building {tag} failed: {message}{output}")]
    Build {
        tag: String,
        message: String,
        output: String,
    },
    /// A container's published port is taken on the host.
    #[error(
        "cannot start {name}: port {port} is already in use on the host. \
         Stop whatever uses it, or choose another with --port"
    )]
    PortInUse { name: String, port: u16 },
    /// A container rfaas was asked to act on is not one of this instance's function replicas:
    /// it is refused before anything is done to it (the scaler's trust boundary).
    #[error(
        "refusing to touch container {container}: {why}. rfaas acts only on the function \
         replicas it created for instance '{instance}' (labels io.rfaas.managed=true, \
         io.rfaas.role=function, io.rfaas.instance={instance})"
    )]
    NotOurs {
        container: String,
        instance: String,
        why: String,
    },
    /// The container is gone.
    #[error("container {0} does not exist (removed meanwhile?)")]
    NotFound(String),
    /// The Swarm service is gone.
    #[error("service {0} does not exist (removed meanwhile?)")]
    ServiceNotFound(String),
    /// A new replica exited before it answered `/healthz`.
    #[error(
        "the new container {name} exited (code {code}) before becoming healthy; its last log \
         lines:\n{logs}"
    )]
    Exited {
        name: String,
        code: i64,
        logs: String,
    },
    /// A replica did not answer `/healthz` in time.
    #[error(
        "the new container {name} did not become healthy within {seconds} s ({last}); its last \
         log lines:\n{logs}"
    )]
    Unhealthy {
        name: String,
        seconds: u64,
        last: String,
        logs: String,
    },
    /// A rolling update of a service failed its health checks and Swarm rolled it back: the
    /// previous version serves.
    #[error(
        "the update of service {service} was rolled back ({message}): its new tasks did not \
         become healthy, and the previous version keeps serving. The tasks' last log lines:\n{logs}"
    )]
    RolledBack {
        service: String,
        message: String,
        logs: String,
    },
    /// A service's update paused (a stop-first service whose new task failed).
    #[error(
        "the update of service {service} paused ({message}); the tasks' last log lines:\n{logs}"
    )]
    UpdatePaused {
        service: String,
        message: String,
        logs: String,
    },
    /// A service's tasks did not all run in time.
    #[error(
        "service {service} did not run all its tasks within {seconds} s ({last}); the tasks' last \
         log lines:\n{logs}"
    )]
    ServiceUnready {
        service: String,
        seconds: u64,
        last: String,
        logs: String,
    },
    /// A container holds no address on the instance's network.
    #[error("container {name} has no address on network {network}: is it running?")]
    NoAddress { name: String, network: String },
    /// A name or value that cannot be one (an instance name, a label).
    #[error("{0}")]
    Invalid(String),
    /// Local I/O (packing an archive, the HTTP client).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl EngineError {
    /// An API error with what was being done.
    pub fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
        let what = what.into();
        move |source| EngineError::Api { what, source }
    }

    /// The engine's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            EngineError::Api { source, .. } => status_code(source),
            _ => None,
        }
    }
}

pub(crate) fn status_code(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    status_code(e) == Some(404)
}

pub(crate) fn is_conflict(e: &bollard::errors::Error) -> bool {
    status_code(e) == Some(409)
}

pub(crate) fn is_not_modified(e: &bollard::errors::Error) -> bool {
    status_code(e) == Some(304)
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
