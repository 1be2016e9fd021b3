//! `relay.example.toml`: a relay starts from it (listen address, data directory and public
//! URL overridden by flags) and answers `/healthz`; flags beat environment variables, which
//! beat the file; errors name the file, the line and the key. (That the example parses and
//! documents every `relay serve` option, as clap defines them, is checked by the relay's
//! unit tests.)

use std::process::Command;
use std::time::Duration;

use e2e::{Proc, bin, unused_port};
use serde_json::Value;

use crate::{relay_from_example, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_with_the_example_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = unused_port();
    let relay = relay_from_example(&format!("127.0.0.1:{port}"), dir.path(), &[]);
    // The public URL comes from the file.
    assert_eq!(relay.base, "https://relay.example.com");
    let health = e2e::http::client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("/healthz");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("JSON health");
    assert_eq!(body["status"], "ok", "{body}");
    assert!(
        dir.path().join("data/relay.db").exists(),
        "the data directory is used"
    );
    // The relay says which settings of the file flags replace.
    let log = relay.proc.log_text();
    assert!(log.contains("overrides the file"), "{log}");
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "relay.toml",
        "listen = \"127.0.0.1:1\"\npublic_url = \"https://file.example\"\ndata_dir = \"state\"\n\
         max_body = 1000\n",
    );
    let start = |env: Option<&str>, flags: &[&str]| {
        let port = unused_port();
        let mut cmd = Command::new(bin("relay"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(flags)
            .env(
                "RELAY_BRIDGE_TOKENS",
                "a-bridge-token-of-32-characters-at-least",
            )
            .env("RUST_LOG", "info")
            .env_remove("RELAY_PUBLIC_URL")
            .env_remove("RELAY_DATA_DIR")
            .env_remove("RELAY_LISTEN");
        if let Some(url) = env {
            cmd.env("RELAY_PUBLIC_URL", url);
        }
        let proc = Proc::start(cmd, "relay");
        proc.expect_log(
            "relay listening",
            Duration::from_secs(30),
            "relay did not start",
        );
        proc.log_text()
    };
    let log = start(None, &[]);
    assert!(log.contains("https://file.example"), "file: {log}");
    assert!(
        dir.path().join("state/relay.db").exists(),
        "data_dir relative to the file"
    );
    let log = start(Some("https://env.example"), &[]);
    assert!(
        log.contains("https://env.example"),
        "environment over file: {log}"
    );
    let log = start(
        Some("https://env.example"),
        &["--public-url", "https://flag.example"],
    );
    assert!(
        log.contains("https://flag.example"),
        "flag over environment: {log}"
    );
}

#[test]
fn configuration_errors_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fails = |name: &str, text: Option<&str>| {
        let file = match text {
            Some(text) => write(dir.path(), name, text),
            None => dir
                .path()
                .join(name)
                .to_str()
                .expect("utf-8 path")
                .to_owned(),
        };
        let out = Command::new(bin("relay"))
            .args(["serve", "--config", &file])
            .env(
                "RELAY_BRIDGE_TOKENS",
                "a-bridge-token-of-32-characters-at-least",
            )
            .output()
            .expect("relay");
        assert!(!out.status.success(), "{name} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fails(
        "typo.toml",
        Some("public_url = \"https://x.example\"\nlistn = \"0.0.0.0:1\"\n"),
    );
    assert!(
        e.contains("typo.toml:2: unknown key \"listn\" (did you mean \"listen\"?)"),
        "{e}"
    );
    let e = fails("kebab.toml", Some("[oauth]\naccess-token-ttl-secs = 60\n"));
    assert!(
        e.contains(
            "kebab.toml:2: unknown key \"oauth.access-token-ttl-secs\" (did you mean \
             \"oauth.access_token_ttl_secs\"?)"
        ),
        "{e}"
    );
    let e = fails(
        "type.toml",
        Some("\n[acme]\ndomain = \"relay.example.com\"\n"),
    );
    assert!(
        e.contains("type.toml:3: acme.domain: invalid type: string \"relay.example.com\""),
        "{e}"
    );
    let e = fails("missing.toml", None);
    assert!(e.contains("missing.toml: No such file"), "{e}");
}
