//! The owner's dashboard (`bridge run` prints `Dashboard: http://127.0.0.1:PORT/?token=…`):
//! in a real browser (Debian's chromium, JavaScript off) it shows the tunnels and the calls
//! of `--confirm-tool` tools held for approval, with their whole arguments, and its buttons
//! allow once, allow the tool for that client until the bridge restarts, or deny. The
//! bridges here run as a service would: standard input is `/dev/null`, so without the
//! dashboard these calls would be declined at once. Requests without the cookie, with a
//! foreign `Host` or `Origin`, or without the CSRF token are refused. Screenshots go to
//! `target/test-artifacts/`.

use std::thread::JoinHandle;
use std::time::Duration;

use e2e::BridgeOpts;
use e2e::browser::{Browser, artifact};
use e2e::http::BlockingHttp;
use serde_json::{Value, json};

/// A call of the fixture's `test_simple_text` (which needs approval) from another thread;
/// its answer.
fn call_in_background(mcp_url: &str, id: u64) -> JoinHandle<Value> {
    let url = mcp_url.to_owned();
    std::thread::spawn(move || {
        BlockingHttp::new()
            .post_mcp(
                &url,
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": "test_simple_text",
                                   "arguments": {"note": "<b>hi</b> & bye"}}}),
            )
            .response_to(&json!(id))
    })
}

/// The browser waits for a held call on the dashboard and presses `op`: the call as shown,
/// and the page after.
fn decide(url: &str, op: &str, shot: &str) -> (Value, Value) {
    let shot = artifact(shot).display().to_string();
    let mut b = Browser::start(
        "desk_browser.mjs",
        "decide",
        url,
        &["--op", op, "--screenshot", &shot],
        40,
        Duration::from_secs(60),
    );
    let waiting = b.event("waiting");
    let decided = b.event("decided");
    b.finish();
    (waiting, decided)
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
}

/// A `notify-send` that writes its arguments to `<dir>/notes.txt`, and a `PATH` that finds
/// it first.
fn fake_notifier(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let notes = dir.join("notes.txt");
    let script = dir.join("notify-send");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|' \"$@\" >> '{}'\necho >> '{}'\n",
            notes.display(),
            notes.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, notes)
}

#[test]
fn held_calls_wait_for_the_dashboard_and_its_buttons_decide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, notes) = fake_notifier(dir.path());
    let bridge = BridgeOpts::default()
        .no_auth()
        .flags("--confirm-tool test_simple_text --confirm-timeout-secs 20")
        .env(&[("PATH", &path)])
        .start();
    let url = bridge.dashboard_url();

    // Allow once.
    let call = call_in_background(&bridge.mcp_url, 1);
    let (waiting, decided) = decide(&url, "allow-once", "dashboard-held-call.png");
    let shown = &waiting["calls"][0];
    assert_eq!(shown["tool"], "test_simple_text", "{waiting:#}");
    assert_eq!(shown["client"], "anonymous");
    assert!(
        shown["args"]
            .as_str()
            .is_some_and(|a| a.contains("\"note\": \"<b>hi</b> & bye\"")),
        "the arguments, whole and as text: {waiting:#}"
    );
    assert_eq!(
        shown["buttons"],
        json!(["allow-once", "allow-always", "deny"])
    );
    assert!(
        waiting["tunnels"][0]
            .as_str()
            .is_some_and(|t| t.contains(bridge.name()) && t.contains("online")),
        "{waiting:#}"
    );
    let csp = waiting["headers"]["content-security-policy"]
        .as_str()
        .unwrap_or("");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(waiting["scripts"], 0);
    let cookie = &waiting["cookies"][0];
    assert_eq!(cookie["name"], "bridge_desk");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert!(
        !waiting["url"].as_str().unwrap_or("").contains("token="),
        "the secret leaves the address bar: {waiting:#}"
    );
    assert_eq!(decided["notice"], "Allowed the call.", "{decided:#}");
    // A desktop notification announced it.
    let announced = std::fs::read_to_string(&notes).unwrap_or_default();
    assert!(
        announced.contains("A tool call waits for your approval|")
            && announced.contains("anonymous wants to run test_simple_text"),
        "{announced:?}"
    );
    assert_eq!(decided["nothing_waits"], true);
    let answer = call.join().expect("the call");
    assert_eq!(
        text_of(&answer),
        "This is a simple text response for testing.",
        "{answer}"
    );

    // Deny: the client gets a tool error.
    let call = call_in_background(&bridge.mcp_url, 2);
    let (_, decided) = decide(&url, "deny", "dashboard-denied.png");
    assert_eq!(decided["notice"], "Denied the call.", "{decided:#}");
    let answer = call.join().expect("the call");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(text_of(&answer).contains("declined"), "{answer}");

    // Allow always: this client's next call goes straight through.
    let call = call_in_background(&bridge.mcp_url, 3);
    let (_, decided) = decide(&url, "allow-always", "dashboard-allowed-always.png");
    assert!(
        decided["notice"]
            .as_str()
            .is_some_and(|n| n.contains("until the bridge restarts")),
        "{decided:#}"
    );
    assert!(call.join().expect("the call")["result"]["isError"].is_null());
    let again = call_in_background(&bridge.mcp_url, 4)
        .join()
        .expect("the call");
    assert_eq!(
        text_of(&again),
        "This is a simple text response for testing.",
        "not held again: {again}"
    );

    // The tunnel's figures: the tool's calls and latency (numbers and bars), the last calls.
    let shot = artifact("dashboard-tunnel.png").display().to_string();
    let b = Browser::start(
        "desk_browser.mjs",
        "show",
        &url,
        &["--screenshot", &shot],
        40,
        Duration::from_secs(60),
    );
    let mut b = b;
    let page = b.event("page");
    b.finish();
    let tools = page["tool_rows"].as_array().expect("tool rows");
    assert_eq!(tools.len(), 1, "{page:#}");
    let row = tools[0].as_str().unwrap_or("");
    assert!(
        row.starts_with("test_simple_text\t4\t0\t") && row.contains(" ms"),
        "4 calls, none failed (a declined call is no error): {row:?}"
    );
    assert_eq!(page["meters"].as_array().map(Vec::len), Some(2), "{page:#}");
    let calls = page["call_rows"].as_array().expect("call rows");
    assert_eq!(calls.len(), 4, "{page:#}");
    let newest = calls[0].as_str().unwrap_or("");
    assert!(
        newest.contains("test_simple_text")
            && newest.contains("anonymous")
            && newest.contains("ok"),
        "{newest:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c.contains("declined"))),
        "{calls:?}"
    );
}

/// The `Set-Cookie` of the secret's exchange, as a `Cookie` header value.
fn session_cookie(http: &BlockingHttp, url: &str) -> String {
    let r = http.get(url, &[]);
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap_or("").to_owned()
}

#[test]
fn the_dashboard_refuses_strangers_foreign_pages_and_forged_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, notes) = fake_notifier(dir.path());
    let bridge = BridgeOpts::default()
        .no_auth()
        .flags("--confirm-tool test_simple_text --confirm-timeout-secs 20 --no-notify")
        .env(&[("PATH", &path)])
        .start();
    let url = bridge.dashboard_url();
    let base = url.split("/?token=").next().unwrap().to_owned();
    let host = base.trim_start_matches("http://").to_owned();
    let http = BlockingHttp::new();

    // No cookie, a wrong secret, a foreign Host (DNS rebinding).
    let r = http.get(&format!("{base}/"), &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("bridge open"), "{}", r.text());
    assert_eq!(http.get(&format!("{base}/?token=nope"), &[]).status, 403);
    let cookie = session_cookie(&http, &url);
    let rebound = http.get(
        &format!("{base}/"),
        &[
            ("cookie", &cookie),
            (
                "host",
                &format!("evil.example:{}", host.rsplit(':').next().unwrap()),
            ),
        ],
    );
    assert_eq!(rebound.status, 421, "{}", rebound.text());
    let page = http.get(&format!("{base}/"), &[("cookie", &cookie)]);
    assert_eq!(page.status, 200);
    let csrf = e2e::http::between(&page.text(), "name=csrf value=\"", "\"").map(str::to_owned);

    // A held call, and forms that must not decide it.
    let call = call_in_background(&bridge.mcp_url, 1);
    let code = loop {
        let page = http.get(&format!("{base}/"), &[("cookie", &cookie)]).text();
        if let Some(c) = e2e::http::between(&page, "name=code value=\"", "\"") {
            break c.to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let csrf = csrf.unwrap_or_else(|| {
        let page = http.get(&format!("{base}/"), &[("cookie", &cookie)]).text();
        e2e::http::between(&page, "name=csrf value=\"", "\"")
            .expect("a form")
            .to_owned()
    });
    let form = |csrf: &str| format!("csrf={csrf}&op=allow-once&code={code}");
    let post = |body: String, headers: &[(&str, &str)]| {
        http.post(
            &format!("{base}/act"),
            "application/x-www-form-urlencoded",
            body,
            headers,
        )
    };
    let own = base.as_str();
    for (what, body, headers, status) in [
        (
            "a foreign origin",
            form(&csrf),
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "http://evil.example"),
            ],
            403,
        ),
        (
            "no origin",
            form(&csrf),
            vec![("cookie", cookie.as_str())],
            403,
        ),
        ("no cookie", form(&csrf), vec![("origin", own)], 401),
        (
            "no CSRF token",
            format!("op=allow-once&code={code}"),
            vec![("cookie", cookie.as_str()), ("origin", own)],
            403,
        ),
        (
            "a wrong CSRF token",
            form("0000"),
            vec![("cookie", cookie.as_str()), ("origin", own)],
            403,
        ),
    ] {
        let r = post(body, &headers);
        assert_eq!(r.status, status, "{what}: {}", r.text());
    }
    assert!(!call.is_finished(), "still held");
    assert!(!notes.exists(), "--no-notify: no desktop notification");
    // The owner's own form decides it.
    let r = post(form(&csrf), &[("cookie", cookie.as_str()), ("origin", own)]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), "/?done=allowed");
    let answer = call.join().expect("the call");
    assert_eq!(
        text_of(&answer),
        "This is a simple text response for testing."
    );
}

#[test]
fn bridge_open_finds_the_running_dashboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().display().to_string();
    let env = [("XDG_CONFIG_HOME", config.as_str())];
    let open = || {
        std::process::Command::new(e2e::bin("bridge"))
            .args(["open", "--print"])
            .env("XDG_CONFIG_HOME", &config)
            .output()
            .expect("bridge open")
    };
    let none = open();
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no running bridge has a dashboard"),
        "{none:?}"
    );
    let mut bridge = BridgeOpts::default().no_auth().env(&env).start();
    let out = open();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        bridge.dashboard_url()
    );
    bridge.stop();
    assert!(
        !open().status.success(),
        "a stopped bridge's address is gone"
    );
}

/// The browser opens the dashboard and presses the first button `op`: the page after (its
/// screenshot in `dashboard-after-<op>.png`).
fn press(url: &str, op: &str) -> Value {
    let shot = artifact(&format!("dashboard-after-{op}.png"))
        .display()
        .to_string();
    let mut b = Browser::start(
        "desk_browser.mjs",
        "press",
        url,
        &["--op", op, "--screenshot", &shot],
        40,
        Duration::from_secs(60),
    );
    let page = b.event("pressed");
    b.finish();
    assert_eq!(page["post_status"], 303, "{page:#}");
    page
}

/// The dashboard's page as shown (with `then`, the page at that path).
fn show(url: &str, then: Option<&str>, shot: &str) -> Value {
    let shot = artifact(shot).display().to_string();
    let mut args = vec!["--screenshot", shot.as_str()];
    if let Some(p) = then {
        args.extend(["--then", p]);
    }
    let mut b = Browser::start(
        "desk_browser.mjs",
        "show",
        url,
        &args,
        40,
        Duration::from_secs(60),
    );
    let page = b.event("page");
    b.finish();
    page
}

#[test]
fn the_owner_pauses_restarts_and_disconnects_and_reads_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.jsonl");
    let bridge = BridgeOpts::default()
        .no_auth()
        .args(&["--audit-log", audit.to_str().unwrap()])
        .start();
    let url = bridge.dashboard_url();
    let http = BlockingHttp::new();
    let call = |id: u64| {
        http.post_mcp(
            &bridge.mcp_url,
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "test_simple_text", "arguments": {}}}),
        )
        .response_to(&json!(id))
    };
    assert_eq!(
        text_of(&call(1)),
        "This is a simple text response for testing."
    );
    // A client with a session.
    let init = http.post_mcp(
        &bridge.mcp_url,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "desk-test", "version": "1"}}}),
    );
    let session = init.header("mcp-session-id").to_owned();
    assert!(!session.is_empty(), "{init:?}");

    // Pause: calls are refused, listing goes on.
    let paused = press(&url, "pause");
    assert_eq!(paused["paused"], true, "{paused:#}");
    let refused = call(2);
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        text_of(&refused).contains("paused by the owner"),
        "{refused}"
    );
    let listed = http
        .post_mcp(
            &bridge.mcp_url,
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
        )
        .response_to(&json!(3));
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    let resumed = press(&url, "resume");
    assert_eq!(resumed["paused"], false, "{resumed:#}");
    assert_eq!(
        text_of(&call(4)),
        "This is a simple text response for testing."
    );

    // Disconnect the client: its session is gone.
    let page = show(&url, None, "dashboard-actions.png");
    let clients = page["client_rows"].as_array().expect("client rows");
    assert!(
        clients.iter().any(|c| c
            .as_str()
            .is_some_and(|c| c.starts_with("anonymous (desk-test 1)\t1\t"))),
        "{page:#}"
    );
    press(&url, "disconnect");
    let after = http.post(
        &bridge.mcp_url,
        "application/json",
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string(),
        &[
            ("mcp-session-id", session.as_str()),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    );
    assert_eq!(after.status, 404, "the session ended: {}", after.text());

    // Restart the server.
    press(&url, "restart");
    bridge.proc.expect_log(
        "the owner restarts the server",
        Duration::from_secs(30),
        "the restart",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = show(&url, None, "dashboard-restarted.png");
        if page["body_text"]
            .as_str()
            .is_some_and(|t| t.contains("1 running, restarted 1 times"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page:#}");
    }
    assert_eq!(
        text_of(&call(6)),
        "This is a simple text response for testing."
    );

    // The audit log, filtered by tool, from the dashboard's link.
    let page = show(&url, None, "dashboard-audit-links.png");
    let link = page["links"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .find(|h| h.contains("tool=test_simple_text"))
        })
        .unwrap_or_else(|| panic!("a link to the tool's audit entries: {page:#}"))
        .to_owned();
    let audit_page = show(&url, Some(&link), "dashboard-audit.png");
    let rows = audit_page["audit_rows"].as_array().expect("audit rows");
    assert_eq!(rows.len(), 4, "ok, paused, ok, ok: {audit_page:#}");
    assert!(
        rows.iter()
            .all(|r| r.as_str().is_some_and(|r| r.contains("test_simple_text"))),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("declined"))),
        "the paused call: {rows:?}"
    );
}

#[test]
fn the_dashboard_shows_a_tunnel_whose_relay_went_away() {
    let mut relay = e2e::Relay::start(&[]);
    let bridge = BridgeOpts::default().no_auth().via(&relay).start();
    let url = bridge.dashboard_url();
    let online = show(&url, None, "dashboard-online.png");
    assert!(
        online["tunnels"][0]
            .as_str()
            .is_some_and(|t| t.contains("online for")),
        "{online:#}"
    );
    relay.proc.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = show(&url, None, "dashboard-reconnecting.png");
        let row = page["tunnels"][0].as_str().unwrap_or("").to_owned();
        if row.contains("reconnecting for") {
            assert!(
                row.contains(&relay.base),
                "its public URL stays shown: {row}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page:#}");
    }
}
