//! What only a shared database needs: nodes starting together, the schema version and
//! public URL checks, and moving a SQLite relay's state in (`relay db copy`).

use relay::store::postgres::SCHEMA_VERSION;
use relay::store::trace::TraceEvent;
use relay::store::{CodeGrant, Grant, Storage, Store, StoreError, now};

use e2e::postgres::Postgres;

async fn connect(url: &str, public: Option<&str>) -> Result<Store, StoreError> {
    Store::connect(&Storage::Postgres(url.to_owned()), public).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_migrate_once() {
    let pg = Postgres::shared();
    let url = pg.new_database();
    let (a, b, c) = tokio::join!(
        connect(&url, Some("https://relay.test/")),
        connect(&url, Some("https://relay.test/")),
        connect(&url, Some("https://relay.test/")),
    );
    for s in [a, b, c] {
        s.expect("every node starts");
    }
    let versions = pg
        .psql(&url, "SELECT version FROM relay_schema ORDER BY version")
        .expect("psql");
    let expected: Vec<String> = (1..=SCHEMA_VERSION).map(|v| v.to_string()).collect();
    assert_eq!(
        versions.lines().collect::<Vec<_>>(),
        expected,
        "each migration once"
    );
}

#[tokio::test]
async fn a_node_refuses_a_newer_schema() {
    let pg = Postgres::shared();
    let url = pg.new_database();
    drop(connect(&url, None).await.expect("migrates"));
    pg.psql(&url, "INSERT INTO relay_schema (version) VALUES (999)")
        .expect("psql");
    let err = connect(&url, None).await.err().expect("refused");
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    assert!(err.to_string().contains("version 999"), "{err}");
}

#[tokio::test]
async fn a_node_refuses_another_relays_database() {
    let pg = Postgres::shared();
    let url = pg.new_database();
    drop(
        connect(&url, Some("https://a.example/"))
            .await
            .expect("first node"),
    );
    drop(
        connect(&url, Some("https://a.example/"))
            .await
            .expect("same URL"),
    );
    drop(connect(&url, None).await.expect("a command serves no URL"));
    let err = connect(&url, Some("https://b.example/"))
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("https://a.example/") && text.contains("https://b.example/"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    // A closed loopback port: refused at once.
    let port = e2e::ports::unused_port();
    let err = connect(&format!("postgres://relay@127.0.0.1:{port}/relay"), None)
        .await
        .err()
        .expect("no database there");
    assert!(matches!(err, StoreError::Pool(_)), "{err}");
    let err = connect("not a url", None).await.err().expect("invalid");
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
}

#[tokio::test]
async fn copy_moves_a_sqlite_relays_state_into_postgres() {
    let dir = tempfile::tempdir().expect("temp dir");
    let grant = |owner| Grant {
        client_id: "mcpcl_1".into(),
        tunnel: "files".into(),
        resource: "https://relay.test/files/mcp".into(),
        owner_token: owner,
        scope: "mcp".into(),
    };
    let (secret, owner) = {
        let s = Store::open(dir.path()).expect("sqlite");
        s.create_token("first").await.unwrap();
        s.revoke_token("first").await.unwrap();
        let secret = s.create_token("alice").await.unwrap();
        let owner = s.token_id(&secret).await.unwrap().unwrap();
        assert!(s.claim_name("files", owner).await.unwrap());
        s.put_token("access", "at", &grant(owner), now() + 600, "fam")
            .await
            .unwrap();
        s.put_token("refresh", "rt", &grant(owner), now() + 600, "fam")
            .await
            .unwrap();
        s.put_code(
            "code",
            &CodeGrant {
                grant: grant(owner),
                redirect_uri: "https://chatgpt.com/cb".into(),
                challenge: "ch".into(),
                expires: now() + 60,
            },
        )
        .await
        .unwrap();
        s.client_used("files", "mcpcl_1", 1234).await.unwrap();
        s.trace_add(
            &TraceEvent {
                time_ms: 5,
                tunnel: Some("files".into()),
                step: "token".into(),
                outcome: "ok".into(),
                reason: "code exchanged".into(),
                client_id: Some("mcpcl_1".into()),
                ..TraceEvent::default()
            },
            100,
        )
        .await
        .unwrap();
        (secret, owner)
    };
    let pg = Postgres::shared();
    let url = pg.new_database();
    let counts = relay::store::copy::sqlite_to_postgres(dir.path(), &url)
        .await
        .expect("copied");
    let count = |t: &str| counts.iter().find(|(n, _)| *n == t).map(|(_, c)| *c);
    assert_eq!(count("bridge_tokens"), Some(2));
    assert_eq!(count("oauth_tokens"), Some(2));
    assert_eq!(count("oauth_trace"), Some(1));

    let s = connect(&url, Some("https://relay.test/"))
        .await
        .expect("pg");
    assert_eq!(s.token_id(&secret).await.unwrap(), Some(owner), "ids kept");
    assert_eq!(s.live_owner("files").await.unwrap(), Some(owner));
    let at = s
        .access_token("at")
        .await
        .unwrap()
        .expect("live access token");
    assert_eq!(at.grant, grant(owner));
    assert!(s.use_refresh("rt").await.unwrap().is_ok());
    assert!(s.take_code("code").await.unwrap().is_some());
    let clients = s.authorized_clients("files").await.unwrap();
    assert_eq!(clients[0].first_used, Some(1234));
    assert_eq!(
        s.trace_for_tunnel("files", 10, 1000).await.unwrap()[0].reason,
        "code exchanged"
    );
    let tokens = s.list_tokens().await.unwrap();
    assert!(tokens[0].revoked.is_some() && tokens[1].revoked.is_none());
    // New rows continue after the copied ids.
    let next = s.create_token("bob").await.unwrap();
    assert!(s.token_id(&next).await.unwrap().unwrap() > owner);

    let again = relay::store::copy::sqlite_to_postgres(dir.path(), &url).await;
    assert!(
        again
            .err()
            .is_some_and(|e| e.to_string().contains("already holds relay state")),
        "a second copy would merge two relays' state"
    );
}
