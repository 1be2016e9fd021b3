//! Errors of running a relay.

/// Errors of running a relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Binding or accepting on the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
