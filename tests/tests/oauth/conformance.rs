//! `conformance authorization` (0.2.0-alpha.12) against the relay's issuer: the metadata
//! scenario and the authorization-code grant, the test being the browser and the owner.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::clients::deps;
use e2e::wait::eventually;
use e2e::{Proc, repo_root, unused_port};
use reqwest::Url;
use serde_json::Value;

use crate::grants::{Consent, Grants, alice_serving, redirect_params};

/// Every `checks.json` under `dir`: (check id, status, error message).
fn conformance_checks(dir: &Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "checks.json") {
                let text = std::fs::read_to_string(&p).expect("checks.json");
                let checks: Value = serde_json::from_str(&text).expect("checks JSON");
                for c in checks.as_array().expect("array") {
                    found.push((
                        c["id"].as_str().unwrap_or("").to_owned(),
                        c["status"].as_str().unwrap_or("").to_owned(),
                        c["errorMessage"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

/// `conformance authorization` (0.2.0-alpha.12) against the relay's issuer: the metadata
/// scenario and the authorization-code grant, the test being the browser and the owner.
/// The suite sends `resource` (which the relay requires: the tunnel's MCP URL) only when
/// given `--resource`; without it the relay answers the authorization request with a
/// redirect carrying `error=invalid_target` and the grant scenario fails.
#[test]
fn conformance_authorization_server_scenarios_pass() {
    const TUNNEL: &str = "conf-desk";
    let alpha = deps().var("CONFORMANCE_ALPHA_JS");
    assert!(
        Path::new(&alpha).exists(),
        "{alpha} is missing: run tests/deps/install.sh"
    );
    let (relay, _bridge, http) = alice_serving(TUNNEL);
    let port = unused_port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let client_id = relay.register(&http, &[&callback]);

    let out = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(deps().var("NODE22"));
    cmd.arg(&alpha)
        .arg("authorization")
        .args(["--url", &relay.base, "--client-id", &client_id])
        .args(["--port", &port.to_string()])
        .args(["--resource", &relay.mcp_url(TUNNEL)])
        .arg("-o")
        .arg(out.path())
        .current_dir(repo_root());
    let mut suite = Proc::start(cmd, "conformance");
    let mut seen = Vec::new();
    let authorize_url = loop {
        let line = suite
            .next_line(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("conformance printed no authorization URL: {seen:#?}"));
        seen.push(line.clone());
        if line.starts_with(&relay.url("/oauth/authorize?")) {
            break line;
        }
    };
    let params: HashMap<String, String> = Url::parse(&authorize_url)
        .expect("URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(params.get("resource"), Some(&relay.mcp_url(TUNNEL)));
    assert_eq!(params.get("redirect_uri"), Some(&callback));
    assert_eq!(params["code_challenge_method"], "S256");

    // The browser: the consent page, the owner's approval, the redirect to the harness.
    let consent = Consent::open(&http, &authorize_url);
    relay.approve("alice", &consent.code, TUNNEL);
    let r = consent.poll(&http);
    let q = redirect_params(&r, &callback, &relay.base, "conformance consent");
    assert_eq!(q["state"][0], params["state"]);
    let landed = http.get(r.header("location"), &[]);
    assert_eq!(
        landed.status,
        200,
        "the harness's callback: {}",
        landed.text()
    );

    let status =
        eventually(Duration::from_secs(60), || suite.exited()).expect("conformance did not finish");
    while let Some(line) = suite.next_line(Duration::from_millis(100)) {
        seen.push(line);
    }
    let summary = seen.join("\n");
    let checks = conformance_checks(out.path());
    let ids: Vec<(&str, &str)> = checks
        .iter()
        .map(|(id, status, _)| (id.as_str(), status.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("authorization-code-grant", "SUCCESS"),
            ("authorization-server-metadata", "SUCCESS"),
            ("authorization-server-metadata-cimd", "SUCCESS"),
        ],
        "{checks:#?}\n{summary}"
    );
    assert_eq!(status, 0, "conformance exit {status:?}:\n{summary}");
    assert!(summary.contains("Total: 3 passed, 0 failed"), "{summary}");
}
