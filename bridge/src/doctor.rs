//! `bridge doctor <public-mcp-url>`: replays what a hosted connector (ChatGPT) does when
//! it is created, against the public URL and through whatever proxy is in between, and
//! reports each step as PASS, WARN, FAIL or SKIP with what was seen and how to fix it.
//!
//! The steps:
//!
//! 1. an unauthenticated `server/discover` POST (id `openai-mcp-discover`, 2026-07-28
//!    headers): served (no client auth), or 401 pointing at the protected-resource
//!    metadata;
//! 2. the RFC 9728 protected-resource metadata: `resource` is exactly the URL,
//!    `authorization_servers` is not empty;
//! 3. the RFC 8414 / OpenID authorization server metadata of the issuer: `issuer`, PKCE
//!    S256, RFC 9207 `iss`, a way to register, https endpoints;
//! 4. the `GET` probe (`Accept: text/event-stream`), which must open an event stream;
//! 5. with credentials (or none needed): `server/discover` consistent with `initialize`,
//!    and `tools/list` (names, input schemas, annotations);
//! 6. SSE delivery: the keep-alive comments of the `GET` stream arrive while it is open
//!    (a buffering proxy holds them back).

mod http;
mod mcp;
mod oauth;
mod stream;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use url::Url;

use self::http::Http;

/// `bridge doctor` options.
#[derive(clap::Args)]
pub struct Args {
    /// The tunnel's public MCP URL, exactly as it is pasted into the connector
    /// (e.g. https://relay.example.com/my-files/mcp).
    pub url: Url,
    /// A bearer token for the tunnel (its client token, or an OAuth access token), to
    /// also check `initialize`, the tool list and the event stream with credentials.
    #[arg(long, env = "BRIDGE_CLIENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file with the CA certificates to trust for an https URL (default: the public
    /// web PKI roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Print one JSON report instead of lines.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for bytes on the event stream, in seconds (longer than the
    /// relay's --keepalive-secs).
    #[arg(long, default_value_t = 20.0)]
    pub stream_wait_secs: f64,
    /// Longest wait for any other request, in seconds.
    #[arg(long, default_value_t = 15.0)]
    pub timeout_secs: f64,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As a hosted client needs it.
    Pass,
    /// Works, with a caveat.
    Warn,
    /// Breaks connector creation or use.
    Fail,
    /// Not checked (not applicable, or needs what was not given).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The step (1–6) the check belongs to.
    pub step: u8,
    /// A stable identifier (e.g. `prm-resource`).
    pub id: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was seen.
    pub seen: String,
    /// How to fix it (for WARN and FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check without a fix.
    pub fn new(step: u8, id: &'static str, status: Status, seen: impl Into<String>) -> Self {
        Self {
            step,
            id,
            status,
            seen: seen.into(),
            fix: None,
        }
    }

    /// A passing check.
    pub fn pass(step: u8, id: &'static str, seen: impl Into<String>) -> Self {
        Self::new(step, id, Status::Pass, seen)
    }

    /// A skipped check.
    pub fn skip(step: u8, id: &'static str, seen: impl Into<String>) -> Self {
        Self::new(step, id, Status::Skip, seen)
    }

    /// A failed check with its fix.
    pub fn fail(
        step: u8,
        id: &'static str,
        seen: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(step, id, Status::Fail, seen).with_fix(fix)
    }

    /// A warning with its fix.
    pub fn warn(
        step: u8,
        id: &'static str,
        seen: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(step, id, Status::Warn, seen).with_fix(fix)
    }

    /// The same check with a fix.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn line(&self) -> String {
        let mut s = format!(
            "{}  {} {:<20} {}",
            self.status.label(),
            self.step,
            self.id,
            self.seen
        );
        if let Some(f) = &self.fix {
            s.push_str(" → fix: ");
            s.push_str(f);
        }
        s
    }
}

/// The `--json` report.
#[derive(Serialize)]
struct JsonReport<'a> {
    url: &'a str,
    ok: bool,
    summary: Summary,
    checks: &'a [Check],
}

/// How many checks ended how.
#[derive(Serialize)]
struct Summary {
    pass: usize,
    warn: usize,
    fail: usize,
    skip: usize,
}

/// The checks so far, printed as they come unless the report is JSON.
struct Report {
    json: bool,
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, c: Check) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", c.line());
            let _ = out.flush();
        }
        self.checks.push(c);
    }

    fn count(&self, s: Status) -> usize {
        self.checks.iter().filter(|c| c.status == s).count()
    }
}

/// Everything the steps share.
pub struct Ctx {
    /// The HTTP client (no redirects followed, TLS per --ca-file).
    pub http: Http,
    /// The MCP URL as given.
    pub url: Url,
    /// The URL as text (compared with the metadata's `resource` string).
    pub url_text: String,
    /// The bearer token, if given.
    pub token: Option<String>,
    /// Bound of the event-stream watch.
    pub stream_wait: Duration,
}

/// Runs `bridge doctor`.
pub fn run(args: Args) -> Result<ExitCode> {
    if !matches!(args.url.scheme(), "http" | "https") || args.url.host_str().is_none() {
        bail!("the URL must be http(s)://host/…/mcp");
    }
    if !(args.stream_wait_secs > 0.0 && args.stream_wait_secs <= 3600.0) {
        bail!("--stream-wait-secs must be between 0 and 3600");
    }
    if !(args.timeout_secs > 0.0 && args.timeout_secs <= 3600.0) {
        bail!("--timeout-secs must be between 0 and 3600");
    }
    let tls = crate::link::tls_config(args.ca_file.as_deref())?;
    let http = Http::new(&tls, Duration::from_secs_f64(args.timeout_secs))?;
    let ctx = Ctx {
        http,
        url_text: args.url.as_str().to_owned(),
        url: args.url,
        token: args.token.filter(|t| !t.trim().is_empty()),
        stream_wait: Duration::from_secs_f64(args.stream_wait_secs),
    };
    let mut report = Report {
        json: args.json,
        checks: Vec::new(),
    };
    if !report.json {
        let _ = writeln!(
            std::io::stdout().lock(),
            "bridge doctor: {}",
            clean(&ctx.url_text)
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(diagnose(&ctx, &mut report));
    let (fail, warn, pass, skip) = (
        report.count(Status::Fail),
        report.count(Status::Warn),
        report.count(Status::Pass),
        report.count(Status::Skip),
    );
    let mut out = std::io::stdout().lock();
    if report.json {
        let body = JsonReport {
            url: &ctx.url_text,
            ok: fail == 0,
            summary: Summary {
                pass,
                warn,
                fail,
                skip,
            },
            checks: &report.checks,
        };
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&body)?);
    } else {
        let _ = writeln!(
            out,
            "{pass} passed, {warn} warnings, {fail} failed, {skip} skipped"
        );
    }
    let _ = out.flush();
    Ok(if fail == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs the steps in order.
async fn diagnose(ctx: &Ctx, report: &mut Report) {
    report.add(url_check(&ctx.url));

    // 1–3: what a connector does before it has credentials.
    let gate = mcp::discover_unauthenticated(ctx).await;
    let open = oauth::discover(ctx, gate, report).await;

    // 4–6: the GET stream is watched while the authenticated steps run.
    if !report.json {
        eprintln!(
            "(watching the GET event stream for up to {:.0} s)",
            ctx.stream_wait.as_secs_f64()
        );
    }
    let (stream_checks, session_checks) =
        tokio::join!(stream::watch(ctx), mcp::with_credentials(ctx, open));
    let (probe, delivery) = stream_checks;
    report.add(probe);
    for c in session_checks {
        report.add(c);
    }
    report.add(delivery);
}

/// Step 1's first line: the URL itself.
fn url_check(url: &Url) -> Check {
    let host = url.host_str().unwrap_or("");
    let loopback = protocol::net::is_loopback_host(host);
    let path_ok = url.path().trim_end_matches('/').ends_with("/mcp");
    if url.scheme() == "http" && !loopback {
        return Check::fail(
            1,
            "url",
            format!("{} is plain http", clean(url.as_str())),
            "hosted clients need a public https URL: put a TLS-terminating proxy in front of the relay (or use its --tls-cert / --acme-domain) and set --public-url to the https URL",
        );
    }
    if !path_ok {
        return Check::warn(
            1,
            "url",
            format!("{} does not end with /<tunnel>/mcp", clean(url.as_str())),
            "use the `MCP endpoint` URL that `bridge run` prints",
        );
    }
    if loopback {
        return Check::skip(
            1,
            "url",
            "a loopback URL: hosted clients cannot reach it (the checks run from this machine)",
        );
    }
    // (`Url::port` is `None` for the scheme's own port.)
    if let Some(port) = url.port() {
        return Check::warn(
            1,
            "url",
            format!("{} is on port {port}, not 443", clean(url.as_str())),
            "Claude's connectors only dial port 443 (ChatGPT takes other ports): serve the relay on 443, or behind a proxy on 443, and use the URL without a port",
        );
    }
    Check::pass(1, "url", format!("{} (https)", clean(url.as_str())))
}

/// Text from the network made safe for a terminal line: control characters replaced,
/// at most 300 characters.
pub fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            url_check(&u("https://r.example/a/mcp")).status,
            Status::Pass
        );
        assert_eq!(url_check(&u("http://r.example/a/mcp")).status, Status::Fail);
        assert_eq!(
            url_check(&u("http://127.0.0.1:1/a/mcp")).status,
            Status::Skip
        );
        assert_eq!(url_check(&u("https://r.example/a")).status, Status::Warn);
        assert_eq!(
            url_check(&u("https://r.example:443/a/mcp")).status,
            Status::Pass
        );
        let port = url_check(&u("https://r.example:8443/a/mcp"));
        assert_eq!(port.status, Status::Warn);
        assert!(port.seen.contains("port 8443"), "{}", port.seen);
        assert!(port.fix.as_deref().is_some_and(|f| f.contains("443")));
    }

    #[test]
    fn lines_hold_status_id_and_fix() {
        let c = Check::fail(2, "prm-resource", "seen it", "do this");
        let l = c.line();
        assert!(l.starts_with("FAIL  2 prm-resource"), "{l}");
        assert!(l.ends_with("→ fix: do this"), "{l}");
        assert_eq!(clean("a\x1b[31mb"), "a [31mb");
    }
}
