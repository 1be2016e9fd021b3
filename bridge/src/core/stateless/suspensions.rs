//! 2026-07-28 calls suspended for their inputs: the client holds an
//! `InputRequiredResult` whose opaque `requestState` names the call here, until it
//! retries (single use, bound to the principal, the method and its name), the state
//! expires, or the limits make room for newer ones. Also when the input requests
//! gathered by calls in flight next go out.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::call::StatelessCall;

/// How long a suspended call waits for the client's retry with its inputs.
const INPUT_TTL: Duration = Duration::from_secs(600);
/// Most calls suspended for their inputs per client (the oldest is cancelled to make room).
const MAX_SUSPENDED_PER_PRINCIPAL: usize = 64;
/// Most calls suspended for their inputs in all (the oldest is cancelled to make room).
const MAX_SUSPENDED: usize = 1024;

/// The child's answer to a suspended call, come before the client's retry.
pub(in crate::core) struct EarlyAnswer {
    /// The answer line.
    pub(in crate::core) line: Bytes,
    /// The span of its id.
    pub(in crate::core) span: Range<usize>,
    /// The call it answers.
    pub(in crate::core) call: StatelessCall,
}

/// A call suspended until the client retries with its inputs.
pub(in crate::core) struct Suspension {
    /// The call's child-side id.
    pub(in crate::core) cid: u64,
    principal: String,
    method: String,
    name: Option<String>,
    expires: Instant,
    /// The child's answer, when it came before the retry.
    pub(in crate::core) done: Option<EarlyAnswer>,
}

/// The suspended calls, by `requestState`.
#[derive(Default)]
pub(in crate::core) struct Suspensions {
    by_token: HashMap<String, Suspension>,
    /// When gathered input requests next go out.
    next_flush: Option<Instant>,
}

impl Suspensions {
    /// Suspends the call `cid` under `token` until `now` + [`INPUT_TTL`].
    pub(in crate::core) fn suspend(
        &mut self,
        token: String,
        cid: u64,
        call: &StatelessCall,
        now: Instant,
    ) {
        self.by_token.insert(
            token,
            Suspension {
                cid,
                principal: call.principal.clone(),
                method: call.method.clone(),
                name: call.name.clone(),
                expires: now + INPUT_TTL,
                done: None,
            },
        );
    }

    /// Takes the suspension a retry names, if the retry may continue it: same principal,
    /// method and name, not expired at `now` (a retry that may not leaves it in place).
    pub(in crate::core) fn take_for_retry(
        &mut self,
        token: &str,
        retry: &StatelessCall,
        now: Instant,
    ) -> Option<Suspension> {
        let s = self.by_token.get(token)?;
        let valid = s.principal == retry.principal
            && s.method == retry.method
            && s.name == retry.name
            && s.expires > now;
        if valid {
            self.by_token.remove(token)
        } else {
            None
        }
    }

    /// Forgets a suspension (its call ended).
    pub(in crate::core) fn remove(&mut self, token: &str) -> Option<Suspension> {
        self.by_token.remove(token)
    }

    /// Keeps the child's answer to a suspended call for the client's retry.
    pub(in crate::core) fn keep_answer(&mut self, token: &str, answer: EarlyAnswer) {
        if let Some(s) = self.by_token.get_mut(token) {
            s.done = Some(answer);
        }
    }

    /// The oldest suspension beyond the limits after `principal` suspended one (its own
    /// when it holds too many), taken; `None` within the limits.
    pub(in crate::core) fn take_excess(&mut self, principal: &str) -> Option<Suspension> {
        let mine = self
            .by_token
            .values()
            .filter(|s| s.principal == principal)
            .count();
        let over_mine = mine > MAX_SUSPENDED_PER_PRINCIPAL;
        if !over_mine && self.by_token.len() <= MAX_SUSPENDED {
            return None;
        }
        let oldest = self
            .by_token
            .iter()
            .filter(|(_, s)| !over_mine || s.principal == principal)
            .min_by_key(|(_, s)| s.expires)
            .map(|(t, _)| t.clone())?;
        self.by_token.remove(&oldest)
    }

    /// Takes the suspensions expired at `now`, with their tokens.
    pub(in crate::core) fn take_expired(&mut self, now: Instant) -> Vec<(String, Suspension)> {
        let expired: Vec<String> = self
            .by_token
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(t, _)| t.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|t| self.by_token.remove(&t).map(|s| (t, s)))
            .collect()
    }

    /// Takes every suspension, with its token.
    pub(in crate::core) fn take_all(&mut self) -> Vec<(String, Suspension)> {
        self.by_token.drain().collect()
    }

    /// When gathered input requests next go out.
    pub(in crate::core) fn next_flush(&self) -> Option<Instant> {
        self.next_flush
    }

    /// Input requests gathered until `at` go out then (or earlier, with others).
    pub(in crate::core) fn flush_by(&mut self, at: Instant) {
        self.next_flush = Some(self.next_flush.map_or(at, |n| n.min(at)));
    }

    /// The next flush, after one ran.
    pub(in crate::core) fn set_next_flush(&mut self, at: Option<Instant>) {
        self.next_flush = at;
    }
}
