//! `null-http`: the HTTP floor of the benchmark.
//!
//! An axum server on a single-threaded (`current_thread`) runtime, with `TCP_NODELAY` on
//! every accepted socket, that answers every request at once with the same small JSON-RPC
//! result (the size of an `echo` answer). It reads the request body (a real server has to)
//! but does nothing with it.
//!
//! `null-http [ADDR]` (default `127.0.0.1:0`) prints `Listening on ADDR` on stdout once
//! ready and serves until killed.

use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::serve::ListenerExt;

/// The constant answer: what the echo server returns for a short `echo` call.
const ANSWER: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello, bench"}]}}"#;

async fn answer(_body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], ANSWER)
}

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new().fallback(answer);
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "Listening on {local}")?;
            out.flush()?;
        }
        axum::serve(listener, app).await?;
        Ok(())
    })
}
