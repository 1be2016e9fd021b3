//! Many `echo` calls at once, and the bookkeeping that checks them: every call answered
//! properly, no call run twice, nothing run that no call sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::Bridge;
use serde_json::json;

use crate::calls::{Got, Session};

/// One `echo` call of a load run.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) text: String,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    pub(crate) got: Result<Got, String>,
}

/// The texts the fixture recorded as `echoed <text>`, with how often.
pub(crate) fn echoed(bridge: &Bridge) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in bridge.counts() {
        if let Some(t) = l.strip_prefix("echoed ") {
            *m.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// Whether an error says the call was refused before it reached the server.
pub(crate) fn refused_before_running(message: &str) -> bool {
    message.contains("retry in a moment")
}

/// Checks the fixture's record against the answers: no call ran twice, every success ran,
/// whatever ran got its answer or an error (it was in flight), no refused call ran, and the
/// number of executions (`call echo` lines) lies between the successes and the successes
/// plus the errors of calls that may have reached the server. Returns the executions.
pub(crate) fn check_executions(bridge: &Bridge, calls: &[Call]) -> usize {
    let ran = echoed(bridge);
    let twice: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "calls executed twice: {twice:?}");
    let by_text: HashMap<&str, &Call> = calls.iter().map(|c| (c.text.as_str(), c)).collect();
    for c in calls {
        if matches!(c.got, Ok(Got::Text(_))) {
            assert!(
                ran.contains_key(&c.text),
                "{:?} succeeded but never ran",
                c.text
            );
        }
    }
    for text in ran.keys() {
        match by_text.get(text.as_str()).map(|c| &c.got) {
            Some(Ok(Got::Text(_))) => {}
            Some(Ok(Got::Error { message, .. })) if !refused_before_running(message) => {}
            Some(other) => panic!("{text:?} ran but its call ended as {other:?}"),
            None => {
                // Checks made outside the load are not in `calls`.
                assert!(
                    text.starts_with("final-") || text.starts_with("probe-"),
                    "the fixture ran {text:?}, which no call sent"
                );
            }
        }
    }
    let executions = bridge.count("call echo");
    let ok = successes(calls);
    let may_have_run = calls
        .iter()
        .filter(|c| matches!(&c.got, Ok(Got::Error { message, .. }) if !refused_before_running(message)))
        .count();
    // A server killed between recording `call echo` and `echoed <text>` leaves fewer of
    // the latter.
    assert!(ran.values().sum::<usize>() <= executions);
    assert!(
        ok <= executions && executions <= ok + may_have_run,
        "{executions} executions for {ok} successes and {may_have_run} errors after \
         reaching the server"
    );
    executions
}

/// `echo` calls from `workers` tasks per session until [`EchoLoad::finish`], each with a
/// unique id and text.
pub(crate) struct EchoLoad {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Call>, Session)>>,
}

impl EchoLoad {
    /// Starts the tasks; each call may take `limit`. After an error a task backs off
    /// 20 ms; with `reopen`, a task whose session is gone (404: its server died under
    /// `--isolate`) opens a new one.
    pub(crate) fn start(
        sessions: &[Session],
        workers: usize,
        limit: Duration,
        reopen: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(1));
        let mut tasks = Vec::new();
        for (s, session) in sessions.iter().enumerate() {
            for w in 0..workers {
                let (mut session, stop, next_id) = (session.clone(), stop.clone(), next_id.clone());
                tasks.push(tokio::spawn(async move {
                    let mut calls = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = json!(next_id.fetch_add(1, Ordering::SeqCst));
                        let text = format!("s{s}-w{w}-{n}");
                        n += 1;
                        let started = Instant::now();
                        let got = session
                            .call(&id, "echo", json!({"text": text}), limit)
                            .await;
                        let ended = Instant::now();
                        let failed = !matches!(got, Ok(Got::Text(_)));
                        let gone = matches!(got, Ok(Got::Error { status: 404, .. }));
                        calls.push(Call {
                            text,
                            started,
                            ended,
                            got,
                        });
                        if gone && reopen {
                            // The session ended with its server (--isolate): start another.
                            while !stop.load(Ordering::SeqCst) {
                                if let Ok(s) = Session::open(&session.ep).await {
                                    session = s;
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        } else if failed {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    (calls, session)
                }));
            }
        }
        Self { stop, tasks }
    }

    /// Stops the tasks and waits for them: all their calls, and the session each ended with.
    pub(crate) async fn finish(self) -> (Vec<Call>, Vec<Session>) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut all, mut sessions) = (Vec::new(), Vec::new());
        for t in self.tasks {
            let (calls, session) = t.await.expect("load task");
            all.extend(calls);
            sessions.push(session);
        }
        (all, sessions)
    }
}

/// Asserts no call ended unacceptably (hang, broken answer, another call's answer), and
/// that every answer with text carries the call's own text.
pub(crate) fn assert_all_answered(calls: &[Call]) {
    let bad: Vec<String> = calls
        .iter()
        .filter_map(|c| match &c.got {
            Err(e) => Some(format!("{}: {e}", c.text)),
            Ok(Got::Text(t)) if *t != c.text => Some(format!("{}: got {t:?}", c.text)),
            _ => None,
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} calls were not answered properly, e.g. {:?}",
        bad.len(),
        calls.len(),
        &bad[..bad.len().min(10)]
    );
}

pub(crate) fn successes(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c.got, Ok(Got::Text(_))))
        .count()
}
