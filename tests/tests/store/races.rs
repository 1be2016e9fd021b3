//! Single-use steps attempted at once from two handles on one database (two processes, or
//! two relay nodes): exactly one attempt wins, and the reuse rules hold for the others.

use std::sync::Arc;

use relay::store::{CodeGrant, Grant, Issue, RefreshError, Store, now};
use tokio::sync::Barrier;

use crate::{Backend, Fresh, on_both_backends};

on_both_backends!(
    one_code_redeemed_a_hundred_times_at_once,
    one_refresh_token_used_a_hundred_times_at_once,
    one_name_claimed_by_many_tokens_at_once,
    one_token_added_by_many_nodes_at_once,
    reuses_and_revocations_at_once,
    one_code_redeemed_with_its_tokens_a_hundred_times_at_once,
);

/// Stores the code `the-code` of [`grant`] through `store`; its request.
async fn the_code(store: &Store) -> CodeGrant {
    let code = CodeGrant {
        grant: grant(),
        redirect_uri: "https://x/cb".into(),
        challenge: "ch".into(),
        expires: now() + 60,
    };
    store.put_code("the-code", &code).await.unwrap();
    code
}

/// Attempts in all, alternating between the two handles.
const ATTEMPTS: usize = 100;

fn grant() -> Grant {
    Grant {
        client_id: "c".into(),
        tunnel: "t1".into(),
        resource: "https://relay.test/t1/mcp".into(),
        owner_token: 1,
        scope: "mcp".into(),
    }
}

/// Runs `attempt(handle, i)` `ATTEMPTS` times at once (released together by a barrier),
/// alternating between `a` and `b`; the results in attempt order.
async fn at_once<T, F, Fut>(a: Arc<Store>, b: Arc<Store>, attempt: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Store>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(ATTEMPTS));
    let attempt = Arc::new(attempt);
    let mut tasks = Vec::new();
    for i in 0..ATTEMPTS {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (barrier, attempt) = (barrier.clone(), attempt.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            attempt(store, i).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("attempt task"));
    }
    out
}

async fn one_code_redeemed_a_hundred_times_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let code = the_code(&one).await;
    let results = at_once(one.clone(), two.clone(), |s, _| async move {
        s.take_code("the-code").await.expect("no store error")
    })
    .await;
    let winners: Vec<_> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    let (won, family) = winners[0];
    assert_eq!(won, &code);
    // The winner issues its tokens; the 99 reuses revoked the family, so they are dead.
    one.put_token("access", "won-at", &won.grant, now() + 60, family)
        .await
        .unwrap();
    two.put_token("refresh", "won-rt", &won.grant, now() + 60, family)
        .await
        .unwrap();
    assert!(one.access_token("won-at").await.unwrap().is_none());
    assert_eq!(
        two.use_refresh("won-rt").await.unwrap(),
        Err(RefreshError::Reused)
    );
}

async fn one_refresh_token_used_a_hundred_times_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    one.put_token("refresh", "the-rt", &grant(), now() + 60, "fam")
        .await
        .unwrap();
    one.put_token("access", "the-at", &grant(), now() + 60, "fam")
        .await
        .unwrap();
    let results = at_once(one.clone(), two.clone(), |s, _| async move {
        s.use_refresh("the-rt").await.expect("no store error")
    })
    .await;
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "exactly one rotation wins");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| *r == Err(RefreshError::Reused)),
        "every other attempt is a reuse"
    );
    // The reuses revoked the family: the old access token and what the winner issues.
    assert!(one.access_token("the-at").await.unwrap().is_none());
    let (g, family) = won[0];
    two.put_token("access", "next-at", g, now() + 60, family)
        .await
        .unwrap();
    assert!(one.access_token("next-at").await.unwrap().is_none());
}

async fn one_name_claimed_by_many_tokens_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let mut ids = Vec::new();
    for i in 0..ATTEMPTS {
        let t = one.create_token(&format!("token-{i}")).await.unwrap();
        ids.push(one.token_id(&t).await.unwrap().unwrap());
    }
    let ids = Arc::new(ids);
    let claims = {
        let ids = ids.clone();
        at_once(one.clone(), two.clone(), move |s, i| {
            let id = ids[i];
            async move { s.claim_name("contested", id).await.expect("no store error") }
        })
        .await
    };
    let winners: Vec<usize> = (0..ATTEMPTS).filter(|&i| claims[i]).collect();
    assert_eq!(winners.len(), 1, "exactly one token gets the name");
    assert_eq!(
        two.name_owner("contested").await.unwrap(),
        Some(ids[winners[0]])
    );
}

async fn one_token_added_by_many_nodes_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    // Nodes starting together add the same configured token.
    let results = at_once(one.clone(), two.clone(), |s, _| async move {
        s.add_token_hash("configured-1", [9; 32])
            .await
            .expect("no store error")
    })
    .await;
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "one row: {results:?}"
    );
    assert_eq!(one.list_tokens().await.unwrap().len(), 1);
}

/// Reuses of refresh tokens (each burning its family) while the owner revokes the same
/// client and the operator its bridge token: every step completes, none deadlocks, and
/// everything ends revoked.
async fn reuses_and_revocations_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let owner = one.create_token("alice").await.unwrap();
    let owner = one.token_id(&owner).await.unwrap().unwrap();
    let families = 10;
    for f in 0..families {
        let g = Grant {
            owner_token: owner,
            ..grant()
        };
        for t in 0..5 {
            for kind in ["access", "refresh"] {
                one.put_token(
                    kind,
                    &format!("{kind}-{f}-{t}"),
                    &g,
                    now() + 60,
                    &format!("f{f}"),
                )
                .await
                .unwrap();
            }
        }
        // Each family's first refresh token is already used: using it again is a reuse.
        one.use_refresh(&format!("refresh-{f}-0"))
            .await
            .unwrap()
            .unwrap();
    }
    at_once(one.clone(), two.clone(), move |s, i| async move {
        match i % 10 {
            0 => {
                s.revoke_client("t1", "c").await.expect("revoke_client");
            }
            1 if i == 1 => match s.revoke_token("alice").await {
                Ok(()) | Err(relay::store::StoreError::NoSuchToken(_)) => {}
                Err(e) => panic!("revoke_token: {e}"),
            },
            _ => {
                let f = i % families;
                let r = s
                    .use_refresh(&format!("refresh-{f}-0"))
                    .await
                    .expect("use_refresh");
                assert_eq!(r, Err(RefreshError::Reused));
            }
        }
    })
    .await;
    for f in 0..families {
        for t in 0..5 {
            assert!(
                one.access_token(&format!("access-{f}-{t}"))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }
}

/// The token endpoint's way: each redemption brings the tokens it would issue.
async fn one_code_redeemed_with_its_tokens_a_hundred_times_at_once(b: Backend) {
    let db = Fresh::new(b);
    let (one, two) = (Arc::new(db.open().await), Arc::new(db.open().await));
    the_code(&one).await;
    let results = at_once(one.clone(), two.clone(), |s, i| async move {
        let issue = Issue {
            access: format!("at-{i}"),
            access_expires: now() + 60,
            refresh: format!("rt-{i}"),
            refresh_expires: now() + 600,
        };
        s.redeem_code("the-code", &issue)
            .await
            .expect("no store error")
            .is_some()
    })
    .await;
    let winners: Vec<usize> = (0..ATTEMPTS).filter(|&i| results[i]).collect();
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    for i in 0..ATTEMPTS {
        let state = one.token_state(&format!("at-{i}")).await.unwrap();
        if i == winners[0] {
            // Issued, and revoked by the 99 reuses.
            assert!(state.expect("the winner's token").revoked);
        } else {
            assert_eq!(state, None, "a loser issued nothing");
        }
    }
}
