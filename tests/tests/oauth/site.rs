//! A tiny HTTP/1.1 site of the test's own, on its own loopback port: fixed pages by path
//! (a client's redirect URI, a page of another origin that frames the relay's pages), every
//! request target recorded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;

/// A tiny HTTP/1.1 server on its own loopback port: fixed pages by path, every request
/// target recorded.
pub(crate) struct Site {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Site {
    /// Serves `pages` (path → HTML); any other path gets 404.
    pub(crate) fn start(pages: Vec<(&'static str, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test site");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let pages = Arc::new(pages.into_iter().collect::<HashMap<_, _>>());
        let recorded = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (pages, recorded) = (pages.clone(), recorded.clone());
                std::thread::spawn(move || Self::answer(conn, &pages, &recorded));
            }
        });
        Self { addr, hits }
    }

    /// Answers one connection (one request, then close).
    fn answer(
        mut conn: TcpStream,
        pages: &HashMap<&'static str, String>,
        hits: &Mutex<Vec<String>>,
    ) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let Some(target) = head.lines().next().and_then(|l| l.split(' ').nth(1)) else {
            return; // a preconnect that never sent a request
        };
        hits.lock().unwrap().push(target.to_owned());
        let path = target.split('?').next().unwrap_or("");
        let (status, body) = match pages.get(path) {
            Some(html) => ("200 OK", html.as_str()),
            None => ("404 Not Found", "not found"),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }

    /// `http://127.0.0.1:<port>` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for a request to `path` whose query has `state` = `state`; its query pairs.
    pub(crate) fn wait_for_callback(&self, path: &str, state: &str) -> HashMap<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.hits.lock().unwrap().iter().find_map(|t| {
                let u = Url::parse(&format!("http://site{t}")).ok()?;
                let q: HashMap<String, String> = u.query_pairs().into_owned().collect();
                (u.path() == path && q.get("state").map(String::as_str) == Some(state)).then_some(q)
            });
            if let Some(q) = found {
                return q;
            }
            assert!(
                Instant::now() < deadline,
                "no request to {path} with state {state:?} reached the listener; it saw {:?}",
                self.hits.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
