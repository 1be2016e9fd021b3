//! The audit log is rotated at its size limit, and the policy's roots join those of the
//! `root` option, each reported once.

use std::path::Path;
use std::time::Duration;

use e2e::mcp::{request, tool_call};
use e2e::{Bridge, BridgeOpts};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::policy::{LIMIT, PolicyClient, audit_lines, check_record, names, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let bridge = Bridge::start(BridgeOpts {
        args: vec![
            "--audit-log".into(),
            audit.to_str().unwrap().into(),
            "--audit-max-bytes".into(),
            "1024".into(),
        ],
        ..Default::default()
    });
    let c = PolicyClient::of(&bridge);
    let sid = c.initialize().await;
    let n = 40;
    for i in 0..n {
        let r = c
            .post(
                &tool_call(json!(i), "echo", json!({"text": format!("r{i}")})),
                Some(&sid),
            )
            .await;
        assert!(r.answer()["result"].is_object(), "{r:?}");
    }
    // Lists are not audited, and no policy means no rewriting.
    let r = c
        .post(&request(json!("l"), "tools/list", json!({})), Some(&sid))
        .await;
    assert!(names(&r.answer()["result"]).contains("exit"));
    let files = [
        audit.clone(),
        e2e_rotated(&audit, 1),
        e2e_rotated(&audit, 2),
        e2e_rotated(&audit, 3),
    ];
    let deadline = Instant::now() + LIMIT;
    loop {
        let total: usize = files.iter().map(|f| audit_lines(f).len()).sum();
        if total >= 12 && e2e_rotated(&audit, 3).exists() {
            break;
        }
        assert!(Instant::now() < deadline, "{total} lines");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in &files {
        if !f.exists() {
            continue;
        }
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= 1024, "{} has {size} bytes", f.display());
        for l in audit_lines(f) {
            check_record(&l);
            assert_eq!(l["tool"], "echo");
            assert_eq!(l["outcome"], "ok");
        }
    }
    assert!(!e2e_rotated(&audit, 4).exists());
    drop(bridge);
}

fn e2e_rotated(path: &Path, n: usize) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_roots_join_the_root_option() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["a", "b"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let file = dir.path().join("bridge.toml");
    std::fs::write(
        &file,
        "root = [\"a\"]\n\n[policy]\nroots = [\"a\", \"b\"]\n",
    )
    .unwrap();
    let bridge = Bridge::start(BridgeOpts {
        args: vec!["--config".into(), file.to_str().unwrap().into()],
        ..Default::default()
    });
    let c = PolicyClient::of(&bridge);
    // The fixture's `test_roots` asks for its roots: the bridge answers them.
    let r = c
        .post(&tool_call(json!(1), "test_roots", json!({})), None)
        .await;
    let answer: Value = serde_json::from_str(&text(&r.answer()["result"])).expect("roots JSON");
    let uris: Vec<&str> = answer["roots"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 2, "each root once: {answer}");
    assert!(
        uris[0].starts_with("file:///") && uris[0].ends_with("/a"),
        "{answer}"
    );
    assert!(uris[1].ends_with("/b"), "{answer}");
}
