//! ChatGPT Apps / MCP Apps widgets whose HTML loads files from a local asset server
//! (`assets = "http://127.0.0.1:PORT"` in a `[servers.NAME]` table, `--assets` on the
//! command line): the Python SDK server names that origin in its widget HTML and in its
//! widget CSP (`openai/widgetCSP`, `ui.csp`); through the tunnel both name the relay, the
//! relay serves the files at `/<tunnel>/assets/…` (a member's below its name), and a real
//! browser shows the widget under the CSP a hosted client would build from it.

use e2e::browser::Browser;
use e2e::http::BlockingHttp;
use e2e::upstreams::{Transport, Upstream, static_files};
use e2e::{BridgeOpts, bin};
use serde_json::{Value, json};
use std::time::Duration;

const BOARD_JS: &str = "document.getElementById('board').textContent = 'board loaded from ' + new URL(import.meta.url).origin;\n";
const BOARD_CSS: &str = "#board { color: rgb(1, 2, 3); }\n";

/// A directory with the widget's files.
fn asset_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("board.js"), BOARD_JS).unwrap();
    std::fs::write(dir.path().join("board.css"), BOARD_CSS).unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    std::fs::write(
        dir.path().join("img/dot.svg"),
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
    )
    .unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'x'; 300_000]).unwrap();
    dir
}

/// The widget template as the tunnel's client reads it.
fn read_widget(http: &BlockingHttp, mcp_url: &str) -> Value {
    let read = http
        .post_mcp(
            mcp_url,
            &json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read",
                    "params": {"uri": "ui://widget/board.html"}}),
        )
        .response_to(&json!(7));
    read["result"]["contents"][0].clone()
}

#[test]
fn a_widget_and_its_assets_work_in_a_browser_through_an_aggregated_tunnel() {
    let files = asset_dir();
    let (_asset_server, asset_port) = static_files(files.path());
    let local = format!("http://127.0.0.1:{asset_port}");
    let notes = Upstream::python_with_env(Transport::Streamable, &[("WIDGET_ASSETS", &local)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[servers.files]\ncommand = {fx}\ntunnel = \"work\"\n\n\
             [servers.notes]\nurl = \"{url}\"\ntunnel = \"work\"\nassets = \"{local}\"\n",
            fx = serde_json::to_string(&bin("mcp-fixture").display().to_string()).unwrap(),
            url = notes.url(),
        ),
    )
    .unwrap();
    let bridge = BridgeOpts::default().no_auth().config(&config).start();
    let base = bridge.relay_base().to_owned();
    let assets = format!("{base}/work/assets/notes");
    let http = BlockingHttp::new();

    // The template names the relay: its files below the member's path, its CSP the relay's
    // origin; the local origin is gone.
    let widget = read_widget(&http, &bridge.mcp_url);
    let html = widget["text"].as_str().expect("widget HTML");
    assert!(
        html.contains(&format!("src=\"{assets}/board.js\""))
            && html.contains(&format!("href=\"{assets}/board.css\"")),
        "{html}"
    );
    assert!(!html.contains(&asset_port.to_string()), "{html}");
    let csp = &widget["_meta"]["openai/widgetCSP"];
    assert_eq!(csp["resource_domains"], json!([base]), "{widget}");
    assert_eq!(csp["connect_domains"], json!([base]), "{widget}");
    assert_eq!(
        widget["_meta"]["ui"]["csp"]["resourceDomains"],
        json!([base]),
        "{widget}"
    );
    // The tool still names its template.
    let listed = http
        .post_mcp(
            &bridge.mcp_url,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .response_to(&json!(1));
    let board = listed["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "notes_board"))
        .cloned()
        .unwrap_or_else(|| panic!("notes_board in {listed}"));
    assert_eq!(
        board["_meta"]["openai/outputTemplate"],
        "ui://widget/board.html"
    );

    // The files, as the asset server has them, with the headers that fence them off the
    // relay's origin and let a sandboxed widget load them.
    let js = http.get(&format!("{assets}/board.js"), &[]);
    assert_eq!(js.status, 200, "{}", js.text());
    assert_eq!(js.text(), BOARD_JS);
    assert!(js.header("content-type").contains("javascript"), "{js:?}");
    assert_eq!(js.header("x-content-type-options"), "nosniff");
    assert_eq!(js.header("content-security-policy"), "sandbox");
    assert_eq!(js.header("access-control-allow-origin"), "*");
    let head = http.send(
        e2e::http::client()
            .head(format!("{assets}/board.css"))
            .header("accept", "text/css"),
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-type").starts_with("text/css"),
        "{head:?}"
    );
    // A directory's redirect stays below the member's path.
    let moved = http.get(&format!("{assets}/img"), &[]);
    assert_eq!(moved.status, 301, "{}", moved.text());
    assert_eq!(moved.header("location"), "/work/assets/notes/img/");
    // Only GET and HEAD; only the published origin's path.
    let post = http.post(&format!("{assets}/board.js"), "text/plain", "x".into(), &[]);
    assert_eq!(post.status, 405);
    assert_eq!(http.get(&format!("{assets}/missing.js"), &[]).status, 404);
    let elsewhere = http.get(&format!("{base}/work/assets/files/board.js"), &[]);
    assert_eq!(
        elsewhere.status, 404,
        "the stdio member publishes no assets"
    );

    // A browser shows the widget as a hosted client does: sandboxed, under the CSP built
    // from the declared domains. The script and the style come from the relay.
    let widget_json = dir.path().join("widget.json");
    std::fs::write(
        &widget_json,
        serde_json::to_vec(&json!({"html": html, "csp": csp})).unwrap(),
    )
    .unwrap();
    let shot = e2e::browser::artifact("widget-assets.png");
    let expect = format!("board loaded from {base}");
    let b = Browser::start(
        "widget_browser.mjs",
        "show",
        &widget_json.display().to_string(),
        &[
            "--expect",
            &expect,
            "--screenshot",
            &shot.display().to_string(),
        ],
        40,
        Duration::from_secs(60),
    );
    let done = b.finish();
    assert_eq!(done["board"], json!(expect), "{done:#}");
    assert_eq!(done["board_color"], "rgb(1, 2, 3)", "{done:#}");
    let requests = done["requests"].as_array().expect("requests");
    let loaded = done["loaded"].as_array().expect("loaded");
    for file in ["board.js", "board.css"] {
        let url = format!("{assets}/{file}");
        assert!(loaded.contains(&json!(url)), "{url} in {done:#}");
    }
    assert!(
        !requests.iter().any(|r| r["url"]
            .as_str()
            .is_some_and(|u| u.contains(&format!(":{asset_port}/")))),
        "the browser never reaches the local asset server: {done:#}"
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
        "a screenshot"
    );
}

#[test]
fn assets_of_one_server_are_bounded_and_say_when_the_asset_server_is_gone() {
    let files = asset_dir();
    let (asset_server, asset_port) = static_files(files.path());
    let local = format!("http://localhost:{asset_port}");
    let notes = Upstream::python_with_env(Transport::Streamable, &[("WIDGET_ASSETS", &local)]);
    let bridge = BridgeOpts::default()
        .no_auth()
        .upstream(&notes.url())
        .args(&["--assets", &local, "--max-message", "200000"])
        .start();
    let base = bridge.relay_base().to_owned();
    let assets = format!("{base}/{}/assets", bridge.name());
    assert!(
        bridge.welcome.contains(&format!("Assets: {assets}/")),
        "the bridge prints where the assets are: {:?}",
        bridge.welcome
    );
    let http = BlockingHttp::new();
    // The other spelling of loopback in the HTML is moved too.
    let widget = read_widget(&http, &bridge.mcp_url);
    let html = widget["text"].as_str().expect("widget HTML");
    assert!(html.contains(&format!("{assets}/board.js")), "{html}");
    assert_eq!(
        widget["_meta"]["openai/widgetCSP"]["resource_domains"],
        json!([base])
    );

    assert_eq!(
        http.get(&format!("{assets}/board.js"), &[]).text(),
        BOARD_JS
    );
    let big = http.get(&format!("{assets}/big.bin"), &[]);
    assert_eq!(big.status, 502, "{}", big.text());
    assert!(
        big.text().contains("larger than 200000 bytes"),
        "{}",
        big.text()
    );
    let long = format!("{assets}/{}", "a".repeat(3000));
    assert_eq!(http.get(&long, &[]).status, 414);

    drop(asset_server);
    let gone = http.get(&format!("{assets}/board.js"), &[]);
    assert_eq!(gone.status, 502, "{}", gone.text());
    assert!(gone.text().contains("not reachable"), "{}", gone.text());
    // MCP goes on.
    let listed = http
        .post_mcp(
            &bridge.mcp_url,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .response_to(&json!(1));
    assert!(listed["result"]["tools"].is_array(), "{listed}");
}
