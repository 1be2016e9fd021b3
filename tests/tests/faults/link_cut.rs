//! The relay link is cut (a TCP proxy between bridge and relay drops every connection and
//! refuses new ones for a while) under hundreds to thousands of calls: calls in flight get an error,
//! calls made meanwhile wait for the bridge and succeed, sessions survive, a late answer
//! never reaches another call, and a flapping link does not keep the bridge away past the
//! relay's grace period.

use std::time::{Duration, Instant};

use e2e::cut_proxy::CutProxy;
use e2e::{Bridge, Relay, addr_of};
use serde_json::json;

use crate::calls::{Endpoint, Got, Session};
use crate::load::{Call, EchoLoad, assert_all_answered, check_executions, successes};
use crate::stack::{connected_via, settle, slow_call_running, stop_bridge};

/// A relay, a link-cutting proxy in front of it, and a bridge through the proxy serving
/// the fixture with `env`, once connected.
async fn cut_link_stack(env: &[(&str, &str)]) -> (Relay, CutProxy, Bridge, Endpoint) {
    let relay = Relay::start(&[]);
    let proxy = CutProxy::start(addr_of(&relay.base)).await;
    let (bridge, ep) = connected_via(&proxy.url(), &relay.token, env).await;
    (relay, proxy, bridge, ep)
}

/// A cut of the link, as the test saw it.
struct Cut {
    at: Instant,
    reconnected: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn link_cut_during_load() {
    let (_relay, proxy, mut bridge, ep) = cut_link_stack(&[("FIXTURE_RECORD_ECHO", "1")]).await;
    settle(&ep, 1, "before the load").await;
    let sessions = Session::must_open_many(&ep, 6).await;

    let load = EchoLoad::start(&sessions, 2, Duration::from_secs(30), false);
    let mut cuts = Vec::new();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..3 {
        let at = Instant::now();
        proxy.cut();
        ep.wait_connected(false, Duration::from_secs(2), "after a cut")
            .await;
        tokio::time::sleep(Duration::from_millis(1500).saturating_sub(at.elapsed())).await;
        proxy.resume();
        let resumed = Instant::now();
        ep.wait_connected(true, Duration::from_secs(9), &format!("after cut {i}"))
            .await;
        let reconnected = Instant::now();
        eprintln!(
            "cut {i}: link down {:?}, bridge back {:?} after the link",
            resumed - at,
            reconnected - resumed
        );
        cuts.push(Cut { at, reconnected });
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let (calls, _) = load.finish().await;

    assert_all_answered(&calls);
    // The relay drops its side of the link at once; allow it this long to notice.
    let notice = Duration::from_millis(300);
    let in_flight_at_cut = |c: &Call| {
        cuts.iter()
            .any(|cut| c.started < cut.at + notice && c.ended >= cut.at)
    };
    let mut waited = 0;
    let mut errors = 0;
    for c in &calls {
        match c.got.as_ref().expect("checked") {
            Got::Text(_) => {}
            Got::Error { status, .. } => {
                errors += 1;
                assert!(
                    in_flight_at_cut(c),
                    "{} failed without being in flight at a cut: {:?}",
                    c.text,
                    c.got
                );
                assert!(
                    *status == 503 || *status == 200,
                    "{}: status {status}",
                    c.text
                );
            }
            Got::ToolError(t) => panic!("{}: answered as offline: {t}", c.text),
        }
        // Held across a cut: made after the link went down, answered once it was back.
        if matches!(c.got, Ok(Got::Text(_)))
            && cuts.iter().any(|cut| {
                c.started >= cut.at && c.started < cut.reconnected && c.ended >= cut.reconnected
            })
        {
            waited += 1;
        }
    }
    assert!(
        waited > 0,
        "no call made while the link was down was held and answered after it"
    );
    let ran = check_executions(&bridge, &calls);
    let ok = successes(&calls);
    // Enough calls around each cut to mean something; how many fit in the run depends on
    // the machine (about 2,500 on an idle 2-core one, a third of that when it is busy).
    assert!(
        calls.len() >= 300,
        "only {} calls in the load run",
        calls.len()
    );
    eprintln!(
        "link_cut_during_load: {} calls, {ok} answered, {errors} errors (in flight at a cut), \
         {waited} made while the link was down (all answered), {ran} executed",
        calls.len()
    );

    // The sessions survived the cuts.
    for (i, s) in sessions.iter().enumerate() {
        s.echo_ok(1_000_000 + i as u64, &format!("final-{i}")).await;
    }
    let st = settle(&ep, 1, "after the load").await;
    assert_eq!(st["bridge"]["sessions"], json!(sessions.len()), "{st}");
    assert_eq!(st["bridge"]["restarts"], json!(0), "{st}");
    stop_bridge(&mut bridge, "link_cut_during_load").await;
}

/// A call in flight when the link drops is answered by the server after the bridge has
/// reconnected; its answer must go nowhere, not to the call that now has the same
/// exchange number on the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answer_after_reconnect_reaches_no_other_call() {
    let (_relay, proxy, mut bridge, ep) = cut_link_stack(&[]).await;
    let a = Session::must_open(&ep).await;
    let old = slow_call_running(&bridge, &a, json!("old"), 3000, "old").await;
    proxy.cut();
    ep.wait_connected(false, Duration::from_secs(2), "cut")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.resume();
    ep.wait_connected(true, Duration::from_secs(9), "reconnect")
        .await;
    // New calls take exchange numbers 1, 2, … on the new connection, the old call's among
    // them; they are still running when the old call's answer comes.
    let b = Session::must_open(&ep).await;
    let mut news = Vec::new();
    for i in 0..24 {
        let b = b.clone();
        news.push(tokio::spawn(async move {
            let got = b
                .call(
                    &json!(format!("new-{i}")),
                    "slow",
                    json!({"ms": 4000, "tag": format!("new-{i}")}),
                    Duration::from_secs(20),
                )
                .await;
            (i, got)
        }));
    }
    let old = old.await.expect("task");
    assert!(
        matches!(old, Ok(Got::Error { .. })),
        "the call in flight at the cut: {old:?}"
    );
    for t in news {
        let (i, got) = t.await.expect("task");
        assert_eq!(
            got,
            Ok(Got::Text(format!("done new-{i}"))),
            "call new-{i} after the reconnect"
        );
    }
    assert_eq!(bridge.count("call slow"), 25);
    settle(&ep, 1, "after the late answer").await;
    stop_bridge(&mut bridge, "late answer").await;
}

/// A flapping link (down 0.5 s, up 2 s, six times): each time the bridge must be back
/// within a few seconds of the link, well inside the relay's 10 s grace period, so a call
/// made while the link is down waits and succeeds instead of being answered "offline".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brief_flaps_reconnect_within_grace() {
    let (_relay, proxy, mut bridge, ep) = cut_link_stack(&[]).await;
    let s = Session::must_open(&ep).await;
    let mut outcomes = Vec::new();
    for i in 0..6u64 {
        proxy.cut();
        ep.wait_connected(false, Duration::from_secs(2), "cut")
            .await;
        let during = s.spawn_call(
            json!(i),
            "echo",
            json!({"text": format!("probe-{i}")}),
            Duration::from_secs(45),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.resume();
        let back = ep
            .wait_connected(true, Duration::from_secs(40), "after a flap")
            .await;
        let got = during.await.expect("task");
        eprintln!("flap {i}: the bridge was back {back:?} after the link; the call: {got:?}");
        outcomes.push((i, back, got));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (i, back, got) in outcomes {
        assert_eq!(got, Ok(Got::Text(format!("probe-{i}"))), "flap {i}");
        assert!(
            back < Duration::from_secs(3),
            "flap {i}: back after {back:?}"
        );
    }
    settle(&ep, 1, "after the flaps").await;
    stop_bridge(&mut bridge, "flaps").await;
}
