//! Steps 1 and 5: the MCP requests a connector sends — `server/discover` without
//! credentials, then (with credentials, or when none are needed) `server/discover`
//! against `initialize`, and `tools/list`.

use serde_json::{Value, json};

use super::http::{Answer, bearer_params};
use super::{Check, Ctx, Status, clean};

/// The JSON-RPC id ChatGPT gives its discovery request.
pub const DISCOVER_ID: &str = "openai-mcp-discover";
/// The stateless protocol revision.
const MODERN: &str = "2026-07-28";
/// The initialize-era revision the doctor negotiates.
const LEGACY: &str = "2025-11-25";
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 50;

/// What the unauthenticated request found out about the endpoint.
pub enum Gate {
    /// Served without credentials; the discover result (`None` when the endpoint
    /// answered -32601, i.e. it serves only initialize-era clients).
    Open(Check, Option<Value>),
    /// 401 with a `resource_metadata` URL.
    OAuth(Check, String),
    /// 401 with a Bearer challenge but no `resource_metadata` (a static bearer token,
    /// or OAuth discoverable only at the well-known URIs).
    Bearer,
    /// Refused otherwise (the check says how); the metadata may still be found.
    Broken(Check),
    /// Nothing answered.
    Unreachable(Check),
}

/// What step 5 may run with.
pub enum Access {
    /// Requests are served: with `token` when given; `discover` is step 1's answer when
    /// it was served without credentials.
    Granted {
        /// Step 1's discover result (`Some(None)`: -32601), if it was served.
        discover: Option<Option<Value>>,
    },
    /// No credentials: step 5 is skipped with this reason.
    Skipped(String),
    /// The endpoint is broken before authentication: skipped, with this reason.
    Broken(String),
}

/// The body of ChatGPT's discovery request.
fn discover_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": DISCOVER_ID,
        "method": "server/discover",
        "params": {"_meta": envelope()}
    })
}

/// POSTs the discovery request, with `token` if given.
async fn post_discover(ctx: &Ctx, token: Option<&str>) -> Result<Answer, String> {
    ctx.http
        .post_rpc(
            ctx.url.as_str(),
            token,
            &discover_body(),
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "server/discover"),
            ],
        )
        .await
}

/// A JSON-RPC error object as a report shows it: its code and its message.
fn rpc_error(e: &Value) -> String {
    format!(
        "JSON-RPC error {}: {}",
        e["code"],
        clean(e["message"].as_str().unwrap_or(""))
    )
}

/// What a served discovery answer says: `Ok(Some(result))`, `Ok(None)` for -32601, or
/// the problem.
fn discover_outcome(a: &Answer) -> Result<Option<Value>, String> {
    let mt = a.media_type();
    if mt != "application/json" && mt != "text/event-stream" {
        return Err(format!(
            "answered {} with Content-Type {:?} (expected application/json or text/event-stream): {}",
            a.status,
            clean(&mt),
            a.snippet()
        ));
    }
    let Some(m) = a.rpc_answer(&json!(DISCOVER_ID)) else {
        return Err(format!(
            "answered {} without a JSON-RPC answer to id {DISCOVER_ID:?}: {}",
            a.status,
            a.snippet()
        ));
    };
    if let Some(e) = m.get("error") {
        if e["code"].as_i64() == Some(protocol::jsonrpc::METHOD_NOT_FOUND) {
            return Ok(None);
        }
        return Err(format!("answered {}", rpc_error(e)));
    }
    let r = &m["result"];
    let versions = r["supportedVersions"].as_array();
    if !versions.is_some_and(|v| v.iter().any(|x| x == MODERN)) {
        return Err(format!(
            "the result's supportedVersions is {} (without {MODERN})",
            clean(&r["supportedVersions"].to_string())
        ));
    }
    if !r["capabilities"].is_object() {
        return Err("the result has no capabilities object".into());
    }
    Ok(Some(r.clone()))
}

/// Step 1: `server/discover` without credentials, as a connector sends it first.
pub async fn discover_unauthenticated(ctx: &Ctx) -> Gate {
    const ID: &str = "discover";
    let a = match post_discover(ctx, None).await {
        Ok(a) => a,
        Err(e) => {
            return Gate::Unreachable(Check::fail(
                1,
                ID,
                format!("POST server/discover failed: {e}"),
                "check the host name, that the relay (or its proxy) listens there, and its TLS certificate (--ca-file for a private CA)",
            ));
        }
    };
    let status = a.status;
    match status {
        200..=299 => match discover_outcome(&a) {
            Ok(Some(r)) => {
                let name = r["_meta"][protocol::stateless::META_SERVER_INFO]["name"]
                    .as_str()
                    .unwrap_or("?");
                let c = Check::pass(
                    1,
                    ID,
                    format!(
                        "served without credentials (no client authentication): {status} {}, server {}",
                        a.media_type(),
                        clean(name)
                    ),
                );
                Gate::Open(c, Some(r))
            }
            Ok(None) => {
                let c = Check::pass(
                    1,
                    ID,
                    format!(
                        "served without credentials: {status}, JSON-RPC -32601 (the tunnel serves initialize-era clients only, which fall back to initialize)"
                    ),
                );
                Gate::Open(c, None)
            }
            Err(e) => Gate::Broken(Check::fail(
                1,
                ID,
                format!("server/discover {e}"),
                "the URL must reach the relay's /<tunnel>/mcp unchanged (no proxy rewriting bodies)",
            )),
        },
        401 => {
            let values: Vec<&str> = a
                .headers
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            match bearer_params(&values) {
                Some(params) => match params.into_iter().find(|(k, _)| k == "resource_metadata") {
                    Some((_, rm)) => Gate::OAuth(
                        Check::pass(
                            1,
                            ID,
                            format!(
                                "401 with WWW-Authenticate: Bearer resource_metadata=\"{}\"",
                                clean(&rm)
                            ),
                        ),
                        rm,
                    ),
                    None => Gate::Bearer,
                },
                None if values.is_empty() => Gate::Broken(Check::fail(
                    1,
                    ID,
                    "401 without a WWW-Authenticate header",
                    "a proxy drops the relay's WWW-Authenticate header: let it through (clients find the OAuth metadata with it)",
                )),
                None => Gate::Broken(Check::fail(
                    1,
                    ID,
                    format!(
                        "401 with WWW-Authenticate: {} (no Bearer challenge)",
                        clean(&values.join(", "))
                    ),
                    "hosted connectors expect a Bearer challenge naming resource_metadata: something in front of the relay answers with its own authentication; let /<tunnel>/mcp through to the relay",
                )),
            }
        }
        _ => Gate::Broken(refused(1, ID, "POST server/discover", &a)),
    }
}

/// A failed check for an unexpected HTTP answer to a request on the MCP URL.
pub fn refused(step: u8, id: &'static str, what: &str, a: &Answer) -> Check {
    let status = a.status;
    let msg = a.error_text();
    let (seen, fix) = match status {
        300..=399 => (
            format!(
                "{what}: {status} redirect to {}",
                clean(a.header("location").unwrap_or("?"))
            ),
            "clients do not follow redirects of MCP requests (and drop Authorization across hosts): paste the final URL, exactly as `bridge run` prints it".to_owned(),
        ),
        403 if msg.contains("Host header") => (
            format!("{what}: 403 {msg}"),
            "the relay's --public-url is loopback, so it only answers loopback Host names: start `relay serve` with --public-url set to the public URL's origin".to_owned(),
        ),
        403 => (
            format!("{what}: 403 {msg}"),
            "something refuses the request (a foreign Origin, a firewall or WAF rule in the proxy)".to_owned(),
        ),
        404 => (
            format!("{what}: 404 {msg}"),
            "no MCP endpoint at this URL: use the `MCP endpoint` URL `bridge run` prints (…/<tunnel>/mcp), and make the proxy forward that path to the relay unchanged".to_owned(),
        ),
        405 => (
            format!("{what}: 405 {msg}"),
            "the proxy does not pass this method to the relay: forward GET, POST and DELETE on /<tunnel>/mcp".to_owned(),
        ),
        406 | 415 => (
            format!("{what}: {status} {msg}"),
            "the proxy changes the request's Accept or Content-Type headers: pass them through unchanged".to_owned(),
        ),
        502 | 504 => (
            format!("{what}: {status} {msg}"),
            "the proxy cannot reach the relay: check its upstream address and that `relay serve` runs".to_owned(),
        ),
        503 => (
            format!("{what}: 503 {msg}"),
            "the tunnel's bridge is not connected: start `bridge run` on the desktop (with this tunnel's --name)".to_owned(),
        ),
        _ => (
            format!("{what}: {status} {msg}"),
            "the request must reach the relay's /<tunnel>/mcp unchanged".to_owned(),
        ),
    };
    Check::fail(step, id, seen, fix)
}

/// Step 5: `server/discover` (with credentials) against `initialize`, then `tools/list`.
pub async fn with_credentials(ctx: &Ctx, access: Access) -> Vec<Check> {
    let skip_all = |why: &str| {
        [
            "discover-consistent",
            "tools-list",
            "tool-annotations",
            "modern-tools-list",
        ]
        .into_iter()
        .map(|id| Check::skip(5, id, why.to_owned()))
        .collect()
    };
    let served = match access {
        Access::Skipped(why) | Access::Broken(why) => return skip_all(&why),
        Access::Granted { discover } => discover,
    };
    let token = ctx.token.as_deref();
    let mut out = Vec::new();

    // server/discover, with the credentials unless step 1 was served without.
    let discover = match served {
        Some(d) => d,
        None => match post_discover(ctx, token).await {
            Err(e) => {
                out.push(Check::fail(
                    5,
                    "discover-consistent",
                    format!("POST server/discover with the token failed: {e}"),
                    "check the network path to the relay",
                ));
                out.extend(
                    skip_all("not checked: server/discover failed")
                        .into_iter()
                        .skip(1),
                );
                return out;
            }
            Ok(a) if a.status == 401 || a.status == 403 => {
                out.push(Check::fail(
                    5,
                    "discover-consistent",
                    format!("the token was refused: {} {}", a.status, a.error_text()),
                    "pass the tunnel's bearer token (printed by `bridge run --auth bearer`) or a valid OAuth access token for this tunnel with --token",
                ));
                out.extend(
                    skip_all("not checked: the token was refused")
                        .into_iter()
                        .skip(1),
                );
                return out;
            }
            Ok(a) if !(200..300).contains(&a.status) => {
                out.push(refused(
                    5,
                    "discover-consistent",
                    "POST server/discover",
                    &a,
                ));
                out.extend(
                    skip_all("not checked: server/discover failed")
                        .into_iter()
                        .skip(1),
                );
                return out;
            }
            Ok(a) => match discover_outcome(&a) {
                Ok(d) => d,
                Err(e) => {
                    out.push(Check::fail(
                        5,
                        "discover-consistent",
                        format!("server/discover {e}"),
                        "the URL must reach the relay's /<tunnel>/mcp unchanged",
                    ));
                    None
                }
            },
        },
    };

    // initialize (2025-11-25), as an initialize-era client.
    let init = initialize(ctx, token).await;
    let (init, session, version) = match init {
        Ok(v) => v,
        Err(c) => {
            // A discovery failure already reported stays the step's first line.
            if out.is_empty() {
                out.push(c);
            }
            out.extend(
                skip_all("not checked: initialize failed")
                    .into_iter()
                    .skip(1),
            );
            return out;
        }
    };
    if !out.iter().any(|c| c.id == "discover-consistent") {
        out.push(consistency(discover.as_ref(), &init));
    }
    let session_headers = |s: &Option<String>| {
        let mut h = vec![("mcp-protocol-version".to_owned(), version.clone())];
        if let Some(s) = s {
            h.push(("mcp-session-id".to_owned(), s.clone()));
        }
        h
    };
    let headers = session_headers(&session);
    let hdrs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = ctx
        .http
        .post_rpc(ctx.url.as_str(), token, &initialized, &hdrs)
        .await;

    let tools = list_tools(ctx, token, &hdrs, ListEra::Session).await;
    let session_tools = match tools {
        Ok(tools) => {
            out.push(tools_check(&tools));
            let servers: Vec<String> = init["_meta"][crate::aggregate::session::SERVERS_META]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.push(tools_size_check(&tools, &servers));
            out.push(annotations_check(&tools));
            Some(tools)
        }
        Err(c) => {
            out.push(c);
            for id in ["tools-size", "tool-annotations"] {
                out.push(Check::skip(5, id, "not checked: tools/list failed"));
            }
            None
        }
    };

    // The same list as a 2026-07-28 client asks for it, when the endpoint offers that era.
    out.push(if discover.is_none() {
        Check::skip(
            5,
            "modern-tools-list",
            "not checked: the endpoint does not offer 2026-07-28 (or server/discover failed)",
        )
    } else {
        let stateless = [
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/list"),
        ];
        match list_tools(ctx, token, &stateless, ListEra::Stateless).await {
            Ok(tools) => stateless_list_check(&tools, session_tools.as_deref()),
            Err(c) => c,
        }
    });

    // End the session politely.
    if session.is_some() {
        let mut rb = ctx.http.client().delete(ctx.url.as_str());
        for (k, v) in &hdrs {
            rb = rb.header(*k, *v);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let _ = ctx.http.send(rb).await;
    }
    out
}

/// `initialize`: the result, the session id and the negotiated version, or the failed
/// check.
async fn initialize(
    ctx: &Ctx,
    token: Option<&str>,
) -> Result<(Value, Option<String>, String), Check> {
    const ID: &str = "discover-consistent";
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "bridge-doctor", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let a = match ctx.http.post_rpc(ctx.url.as_str(), token, &body, &[]).await {
        Ok(a) => a,
        Err(e) => {
            return Err(Check::fail(
                5,
                ID,
                format!("POST initialize failed: {e}"),
                "check the network path to the relay",
            ));
        }
    };
    if a.status == 401 || a.status == 403 {
        return Err(Check::fail(
            5,
            ID,
            format!(
                "initialize: the token was refused: {} {}",
                a.status,
                a.error_text()
            ),
            "pass a valid token for this tunnel with --token",
        ));
    }
    if !(200..300).contains(&a.status) {
        return Err(refused(5, ID, "POST initialize", &a));
    }
    let Some(m) = a.rpc_answer(&json!(1)) else {
        return Err(Check::fail(
            5,
            ID,
            format!(
                "initialize answered {} without a JSON-RPC answer: {}",
                a.status,
                a.snippet()
            ),
            "the URL must reach the relay's /<tunnel>/mcp unchanged",
        ));
    };
    if let Some(e) = m.get("error") {
        return Err(Check::fail(
            5,
            ID,
            format!("initialize answered {}", rpc_error(e)),
            "see the bridge's log: the MCP server may fail to start",
        ));
    }
    let result = m["result"].clone();
    let version = result["protocolVersion"]
        .as_str()
        .unwrap_or(LEGACY)
        .to_owned();
    let session = a.header("mcp-session-id").map(str::to_owned);
    Ok((result, session, version))
}

/// Whether `server/discover` says what `initialize` says.
fn consistency(discover: Option<&Value>, init: &Value) -> Check {
    const ID: &str = "discover-consistent";
    let Some(d) = discover else {
        return Check::pass(
            5,
            ID,
            "server/discover is not offered (-32601); initialize answered, so clients fall back to it",
        );
    };
    let mut diffs = Vec::new();
    if d["capabilities"] != init["capabilities"] {
        diffs.push(format!(
            "capabilities (discover {}, initialize {})",
            short(&d["capabilities"]),
            short(&init["capabilities"])
        ));
    }
    let d_info = &d["_meta"][protocol::stateless::META_SERVER_INFO];
    if d_info != &init["serverInfo"] {
        diffs.push(format!(
            "serverInfo (discover {}, initialize {})",
            short(d_info),
            short(&init["serverInfo"])
        ));
    }
    if d.get("instructions") != init.get("instructions") {
        diffs.push("instructions".to_owned());
    }
    if diffs.is_empty() {
        let info = &init["serverInfo"];
        Check::pass(
            5,
            ID,
            format!(
                "server/discover matches initialize ({}): server {} {}, capabilities {}",
                clean(init["protocolVersion"].as_str().unwrap_or("?")),
                clean(info["name"].as_str().unwrap_or("?")),
                clean(info["version"].as_str().unwrap_or("")),
                short(&init["capabilities"])
            ),
        )
    } else {
        Check::fail(
            5,
            ID,
            format!(
                "server/discover and initialize disagree on {}",
                diffs.join("; ")
            ),
            "ChatGPT refuses an \"inconsistent\" server/discover: both must come from the same server; make sure the URL reaches this tunnel's relay and not another MCP server, and that nothing in between rewrites the answers",
        )
    }
}

/// A JSON value on one short line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", clean(&s.chars().take(120).collect::<String>()))
    } else {
        clean(&s)
    }
}

/// How `tools/list` is asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListEra {
    /// In the session `initialize` opened (the check `tools-list`).
    Session,
    /// As a 2026-07-28 request, with the `_meta` envelope (the check `modern-tools-list`).
    Stateless,
}

/// The `_meta` envelope of the doctor's 2026-07-28 requests.
fn envelope() -> Value {
    json!({
        protocol::stateless::META_PROTOCOL_VERSION: MODERN,
        protocol::stateless::META_CLIENT_CAPABILITIES: {},
        protocol::stateless::META_CLIENT_INFO:
            {"name": "bridge-doctor", "version": env!("CARGO_PKG_VERSION")}
    })
}

/// `tools/list`, every page: the tools, or the failed check.
async fn list_tools(
    ctx: &Ctx,
    token: Option<&str>,
    headers: &[(&str, &str)],
    era: ListEra,
) -> Result<Vec<Value>, Check> {
    let (check_id, what) = match era {
        ListEra::Session => ("tools-list", "tools/list"),
        ListEra::Stateless => ("modern-tools-list", "tools/list (2026-07-28)"),
    };
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let id = json!(format!("tools-{page}"));
        let mut params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        if era == ListEra::Stateless {
            params["_meta"] = envelope();
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
        let a = ctx
            .http
            .post_rpc(ctx.url.as_str(), token, &body, headers)
            .await
            .map_err(|e| {
                Check::fail(
                    5,
                    check_id,
                    format!("POST {what} failed: {e}"),
                    "check the network path to the relay",
                )
            })?;
        if !(200..300).contains(&a.status) {
            return Err(refused(5, check_id, &format!("POST {what}"), &a));
        }
        let Some(m) = a.rpc_answer(&id) else {
            return Err(Check::fail(
                5,
                check_id,
                format!(
                    "{what} answered {} without a JSON-RPC answer: {}",
                    a.status,
                    a.snippet()
                ),
                "the URL must reach the relay's /<tunnel>/mcp unchanged",
            ));
        };
        if let Some(e) = m.get("error") {
            let fix = match era {
                ListEra::Session => {
                    "see the bridge's log: the MCP server refuses tools/list (does it offer tools?)"
                }
                ListEra::Stateless => {
                    "clients that prefer 2026-07-28 (ChatGPT, the Python and TypeScript SDKs in auto mode) get this error on every request: update the bridge (older bridges passed the 2026-07-28 envelope to servers opened with initialize, which Python SDK 2.x servers refuse), or run it with `--protocol legacy` so clients fall back to initialize"
                }
            };
            return Err(Check::fail(
                5,
                check_id,
                format!("{what} answered {}", rpc_error(e)),
                fix,
            ));
        }
        let Some(list) = m["result"]["tools"].as_array() else {
            return Err(Check::fail(
                5,
                check_id,
                format!("the {what} result has no tools array"),
                "the MCP server's tools/list answer is malformed",
            ));
        };
        tools.extend(list.iter().cloned());
        match m["result"]["nextCursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return Ok(tools),
        }
    }
    Ok(tools)
}

/// The names of `tools`, in order.
fn tool_names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap_or(""))
        .collect()
}

/// Whether the 2026-07-28 `tools/list` lists what the session's did.
fn stateless_list_check(stateless: &[Value], session: Option<&[Value]>) -> Check {
    const ID: &str = "modern-tools-list";
    let names = tool_names(stateless);
    match session.map(tool_names) {
        Some(s) if s != names => Check::fail(
            5,
            ID,
            format!(
                "tools/list over 2026-07-28 lists {} tools, the session's {}: {} against {}",
                names.len(),
                s.len(),
                short(&json!(names)),
                short(&json!(s))
            ),
            "both eras must reach the same MCP server: make sure nothing between the client and the relay answers one of them",
        ),
        _ => Check::pass(
            5,
            ID,
            format!(
                "tools/list over 2026-07-28 (the `_meta` envelope, no session) answered {} tools{}",
                names.len(),
                if session.is_some() {
                    ", the same as the session's"
                } else {
                    ""
                }
            ),
        ),
    }
}

/// Tool names and input schemas.
fn tools_check(tools: &[Value]) -> Check {
    const ID: &str = "tools-list";
    let mut bad = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let name = t["name"].as_str().unwrap_or("");
        let label = if name.is_empty() {
            format!("#{i}")
        } else {
            clean(name)
        };
        if name.is_empty() {
            bad.push(format!("{label}: no name"));
        } else if name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bad.push(format!("{label}: name outside [A-Za-z0-9_.-]{{1,128}}"));
        }
        if t["inputSchema"]["type"] != "object" {
            bad.push(format!("{label}: inputSchema is not an object schema"));
        }
    }
    if tools.is_empty() {
        return Check::warn(
            5,
            ID,
            "tools/list is empty",
            "the MCP server offers no tools: a connector without tools does nothing in a chat",
        );
    }
    if !bad.is_empty() {
        return Check::fail(
            5,
            ID,
            format!("{} tools, malformed: {}", tools.len(), list(&bad)),
            "fix the tool definitions in the MCP server (a name and an inputSchema with type \"object\" each)",
        );
    }
    let names: Vec<String> = tools
        .iter()
        .map(|t| clean(t["name"].as_str().unwrap_or("")))
        .collect();
    Check::pass(
        5,
        ID,
        format!(
            "{} tools with names and input schemas: {}",
            tools.len(),
            list(&names)
        ),
    )
}

/// The most tokens of tool definitions ChatGPT accepts for one connector (about).
const CHATGPT_TOOL_TOKENS: usize = 16_000;

/// Estimated tokens of one tool definition: its JSON, at about four bytes a token (the
/// ratio of English text and JSON in the tokenizers hosted clients use).
fn tool_tokens(tool: &Value) -> usize {
    serde_json::to_vec(tool).map_or(0, |b| b.len().div_ceil(4))
}

/// The tool definitions' size in tokens: ChatGPT refuses a connector whose tools exceed
/// about [`CHATGPT_TOOL_TOKENS`]. For a tunnel of several `servers` (the prefixes of its
/// tools' names), each server's share is given too.
fn tools_size_check(tools: &[Value], servers: &[String]) -> Check {
    const ID: &str = "tools-size";
    if tools.is_empty() {
        return Check::skip(5, ID, "no tools");
    }
    let mut sizes: Vec<(usize, String)> = tools
        .iter()
        .map(|t| (tool_tokens(t), clean(t["name"].as_str().unwrap_or("?"))))
        .collect();
    let total: usize = sizes.iter().map(|(n, _)| n).sum();
    let shares = server_shares(&sizes, servers);
    if total <= CHATGPT_TOOL_TOKENS {
        return Check::pass(
            5,
            ID,
            format!(
                "about {total} tokens of tool definitions (ChatGPT takes up to about {CHATGPT_TOOL_TOKENS}){shares}"
            ),
        );
    }
    sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let largest: Vec<String> = sizes
        .iter()
        .take(3)
        .map(|(n, name)| format!("{name} (about {n})"))
        .collect();
    Check::warn(
        5,
        ID,
        format!(
            "about {total} tokens of tool definitions in {} tools, more than the about {CHATGPT_TOOL_TOKENS} ChatGPT accepts; the largest: {}{shares}",
            tools.len(),
            largest.join(", ")
        ),
        "ChatGPT refuses such a connector: shorten the largest tools' descriptions and schemas, or hide tools from remote clients with `bridge run --deny-tool GLOB`",
    )
}

/// Each server's share of the tokens (`"; per server: a about N, b about M"`), by the
/// longest server name that prefixes a tool's name with `_`; empty for one server.
fn server_shares(sizes: &[(usize, String)], servers: &[String]) -> String {
    if servers.len() < 2 {
        return String::new();
    }
    let mut per: Vec<(String, usize)> = servers.iter().map(|s| (clean(s), 0)).collect();
    for (n, name) in sizes {
        let owner = per
            .iter_mut()
            .filter(|(s, _)| name.starts_with(&format!("{s}_")))
            .max_by_key(|(s, _)| s.len());
        if let Some((_, total)) = owner {
            *total += n;
        }
    }
    let parts: Vec<String> = per.iter().map(|(s, n)| format!("{s} about {n}")).collect();
    format!("; per server: {}", parts.join(", "))
}

/// Tools without `readOnlyHint`: ChatGPT treats them as write actions.
fn annotations_check(tools: &[Value]) -> Check {
    const ID: &str = "tool-annotations";
    if tools.is_empty() {
        return Check::skip(5, ID, "no tools");
    }
    let unannotated: Vec<String> = tools
        .iter()
        .filter(|t| !t["annotations"]["readOnlyHint"].is_boolean())
        .map(|t| clean(t["name"].as_str().unwrap_or("?")))
        .collect();
    if unannotated.is_empty() {
        return Check::pass(
            5,
            ID,
            format!("all {} tools carry readOnlyHint annotations", tools.len()),
        );
    }
    Check::new(
        5,
        ID,
        Status::Warn,
        format!(
            "{} of {} tools {} no readOnlyHint annotation: {}",
            unannotated.len(),
            tools.len(),
            if unannotated.len() == 1 { "has" } else { "have" },
            list(&unannotated)
        ),
    )
    .with_fix(
        "ChatGPT treats unannotated tools as write actions and asks for confirmation on each call: annotate them in the MCP server (readOnlyHint, destructiveHint, openWorldHint)",
    )
}

/// The first few items of a list, comma-separated.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(", … ({} more)", items.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_compares_capabilities_server_info_and_instructions() {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "s", "version": "1"}});
        let d = protocol::stateless::discover_result(&init, "private");
        assert_eq!(consistency(Some(&d), &init).status, Status::Pass);
        let mut other = d.clone();
        other["capabilities"] = json!({"tools": {}, "prompts": {}});
        let c = consistency(Some(&other), &init);
        assert_eq!(c.status, Status::Fail);
        assert!(c.seen.contains("capabilities"), "{}", c.seen);
        let mut other = d.clone();
        other["_meta"] = json!({});
        assert!(consistency(Some(&other), &init).seen.contains("serverInfo"));
        assert_eq!(consistency(None, &init).status, Status::Pass);
    }

    #[test]
    fn tool_list_size() {
        let tool = |name: &str, description: String| {
            json!({"name": name, "description": description,
                   "inputSchema": {"type": "object"}})
        };
        assert_eq!(tools_size_check(&[], &[]).status, Status::Skip);
        let small = tools_size_check(&[tool("a", "Reads a note".into())], &[]);
        assert_eq!(small.status, Status::Pass);
        assert!(small.seen.contains("about 19 tokens"), "{}", small.seen);
        // 20 tools of about 1,000 tokens each: over the limit, the largest three named.
        let mut tools: Vec<Value> = (0..20)
            .map(|i| tool(&format!("t{i:02}"), "x".repeat(4_000)))
            .collect();
        tools.push(tool("huge", "y".repeat(12_000)));
        let c = tools_size_check(&tools, &[]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.seen.contains("in 21 tools"), "{}", c.seen);
        assert!(
            c.seen
                .contains("the largest: huge (about 3016), t00 (about 1016), t01 (about 1016)"),
            "{}",
            c.seen
        );
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("--deny-tool")));
        // A tunnel of several servers: each one's share, by the longest prefix.
        let tools = [
            tool("files_read", "x".repeat(400)),
            tool("files-big_read", "x".repeat(4_000)),
            tool("notes_add", "x".repeat(40)),
        ];
        let servers = [
            "files".to_owned(),
            "files-big".to_owned(),
            "notes".to_owned(),
        ];
        let c = tools_size_check(&tools, &servers);
        assert!(
            c.seen
                .contains("per server: files about 118, files-big about 1019, notes about 28"),
            "{}",
            c.seen
        );
        assert!(
            !tools_size_check(&tools, &servers[..1])
                .seen
                .contains("per server")
        );
    }

    #[test]
    fn tool_checks() {
        let ok = json!({"name": "a", "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": true}});
        let bare = json!({"name": "b", "inputSchema": {"type": "object"}});
        let bad = json!({"name": "c d", "inputSchema": {}});
        assert_eq!(
            tools_check(&[ok.clone(), bare.clone()]).status,
            Status::Pass
        );
        let c = tools_check(&[bad]);
        assert_eq!(c.status, Status::Fail);
        assert!(c.seen.contains("c d"), "{}", c.seen);
        assert_eq!(
            annotations_check(std::slice::from_ref(&ok)).status,
            Status::Pass
        );
        let c = annotations_check(&[ok, bare]);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.seen.contains("1 of 2") && c.seen.contains('b'),
            "{}",
            c.seen
        );
    }
}
