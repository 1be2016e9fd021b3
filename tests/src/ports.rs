//! Ports for programs that must be told theirs before they bind, and the address behind a
//! base URL.

use std::net::SocketAddr;

/// A TCP port free on every interface right now, for a program that must be told its port
/// before it binds (Caddy, HAProxy). It is taken below the kernel's ephemeral range
/// (32768–60999 on Linux), so the source ports of other connections cannot take it in the
/// meantime, as they can with a port the kernel handed out for `:0`.
pub fn unused_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Different processes start at different places; one process walks on.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(7919)) % SPAN) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

/// `host:port` of a base URL such as `http://127.0.0.1:1234`.
pub fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the base URL is http://<ip>:<port>")
}
