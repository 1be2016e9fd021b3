//! The `Mcp-Param-{Name}` checks of stateless requests: they need the tool list the bridge
//! reports to the relay, so they are exercised with a small stdio server whose tool
//! annotates its parameters with `x-mcp-header`, answered from the relay's copy of that
//! list while the desktop is offline.

use std::time::Duration;

use e2e::clients::tools_server;
use e2e::http::Answer;
use e2e::mcp::{McpClient, STATELESS};
use e2e::{BridgeOpts, Relay};
use serde_json::{Value, json};

use crate::headers::{HeaderVerdict, Headers, Refusal, post, standard, stateless_with};

/// A stdio MCP server whose one tool mirrors parameters into headers; a call answers its
/// arguments.
fn header_server() -> Vec<String> {
    tools_server(&json!({
        "serverInfo": {"name": "header-server", "version": "1"},
        "call": "arguments",
        "tools": [{
            "name": "execute_sql",
            "description": "Runs a query in a region",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"},
                    "limit": {"type": "integer", "x-mcp-header": "Limit"},
                    "options": {"type": "object", "properties": {
                        "dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"}
                    }},
                    "query": {"type": "string"}
                },
                "required": ["region", "query"]
            }
        }],
    }))
}

/// The `Mcp-Param-{Name}` checks, from the tool list the bridge reported, exercised while
/// the desktop is offline and the relay answers from that list.
#[tokio::test]
async fn param_headers_follow_the_reported_tool_schema() {
    let relay = Relay::start(&["--grace-secs", "0.2"]);
    let bridge = BridgeOpts::default()
        .via(&relay)
        .name("header-params")
        .command(header_server())
        .start();
    let ep = McpClient::of(&bridge);

    // While live, a well-formed call passes.
    let call = |id: Value, args: Value| {
        stateless_with(
            id,
            "tools/call",
            json!({"name": "execute_sql", "arguments": args}),
            STATELESS,
        )
    };
    let base = standard("tools/call", Some("execute_sql"));
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = base.clone();
        h.extend_from_slice(extra);
        h
    };
    let args = json!({"region": "us-west1", "limit": 42, "query": "SELECT 1"});
    post(
        &ep,
        &call(json!(1), args.clone()),
        &with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "42")]),
        "live call",
    )
    .await
    .assert_passed("live call");

    // Give the bridge time to report its tool list, then take the desktop away.
    let listed = |a: &Answer| {
        a.message().is_some_and(|m| {
            m["result"]["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == "execute_sql"))
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(bridge);
    let list = json!({"jsonrpc": "2.0", "id": "l", "method": "tools/list"});
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = post(&ep, &list, &[], "offline tools/list").await;
        if listed(&a) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never answered from the reported tool list: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let passes: Vec<(&str, Value, Headers<'_>)> = vec![
        (
            "all headers",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "42")]),
        ),
        (
            "header names in other cases, integer as 42.0",
            args.clone(),
            with(&[
                ("mcp-param-region", "us-west1"),
                ("MCP-PARAM-LIMIT", "42.0"),
            ]),
        ),
        (
            "absent and null values need no header",
            json!({"region": "us-west1", "limit": null, "query": "q"}),
            with(&[("Mcp-Param-Region", "us-west1")]),
        ),
        (
            "Base64 value",
            json!({"region": "Hello, 世界", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8sIOS4lueVjA==?=")]),
        ),
        (
            "value without the Base64 markers is literal",
            json!({"region": "=?base64?SGVsbG8=", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8=")]),
        ),
        (
            "nested boolean",
            json!({"region": "r", "query": "q", "options": {"dry_run": false}}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Dry-Run", "false")]),
        ),
        (
            "unannotated headers are ignored",
            json!({"region": "r", "query": "q"}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Query", "other")]),
        ),
    ];
    for (i, (what, args, headers)) in passes.into_iter().enumerate() {
        let a = post(&ep, &call(json!(100 + i), args), &headers, what).await;
        a.assert_passed(what);
        assert_eq!(a.status, 200, "{what}: {a:?}");
    }

    let refusals: Vec<Refusal<'_>> = vec![
        (
            "header missing for a value in the body",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1")]),
            "Mcp-Param-Limit",
        ),
        (
            "different string",
            args.clone(),
            with(&[("Mcp-Param-Region", "eu-west1"), ("Mcp-Param-Limit", "42")]),
            "Mcp-Param-Region",
        ),
        (
            "different integer",
            args.clone(),
            with(&[("Mcp-Param-Region", "us-west1"), ("Mcp-Param-Limit", "43")]),
            "Mcp-Param-Limit",
        ),
        (
            "header for an absent value",
            json!({"region": "r", "query": "q"}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Limit", "1")]),
            "Mcp-Param-Limit",
        ),
        (
            "invalid Base64 padding",
            json!({"region": "Hello", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVsbG8?=")]),
            "Mcp-Param-Region",
        ),
        (
            "invalid Base64 characters",
            json!({"region": "Hello", "query": "q"}),
            with(&[("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")]),
            "Mcp-Param-Region",
        ),
        (
            "boolean spelled otherwise",
            json!({"region": "r", "query": "q", "options": {"dry_run": true}}),
            with(&[("Mcp-Param-Region", "r"), ("Mcp-Param-Dry-Run", "True")]),
            "Mcp-Param-Dry-Run",
        ),
    ];
    for (i, (what, args, headers, header)) in refusals.into_iter().enumerate() {
        let id = json!(format!("param-{i}"));
        let a = post(&ep, &call(id.clone(), args), &headers, what).await;
        a.assert_mismatch(&id, header, what);
    }
}
