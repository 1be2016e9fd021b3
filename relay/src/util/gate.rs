//! Limits on guessing secrets: the operator password (consent page, status page) and
//! bridge tokens presented over HTTP.
//!
//! An attempt is reserved *before* the secret is checked, atomically with the check of
//! the limit, so a burst of concurrent guesses cannot all be evaluated: at most `max`
//! failures per address (and, where set, in total) per window. A correct secret refunds
//! its reservation (the one who knows it is not punished for earlier typos of their own,
//! and nothing is learnt from a refund that the answer does not already say).
//!
//! Argon2 verifications are expensive (about 19 MiB and tens of milliseconds each), so
//! they are also bounded in concurrency: one at a time per address and [`MAX_VERIFYING`]
//! in the whole relay. A request that finds them busy is answered at once (429 or 503),
//! never queued; verifications run on the blocking thread pool.

use protocol::sync::LockExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Most Argon2 verifications running at once in the whole relay.
pub const MAX_VERIFYING: usize = 2;
/// Most addresses whose failures are remembered (the oldest are forgotten beyond it).
const MAX_ADDRESSES: usize = 100_000;

/// Why an attempt was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Too many failures from this address (or in total) in the window: 429.
    #[error("too many failed attempts; try again later")]
    TooMany,
    /// Another attempt from this address is being checked: 429.
    #[error("another attempt from this address is being checked")]
    Busy,
    /// The relay is checking as many passwords as it will at once: 503.
    #[error("the relay is busy checking passwords; try again shortly")]
    Saturated,
}

#[derive(Default)]
struct Ledger {
    /// Reserved attempts and failures per address key, oldest first.
    by_key: HashMap<IpAddr, VecDeque<Instant>>,
    /// The same, all addresses together (only with a global limit).
    all: VecDeque<Instant>,
    /// Addresses with an attempt being checked.
    busy: HashSet<IpAddr>,
}

/// Failure limits (per address and, optionally, in total) with reservations, plus the
/// concurrency bound of Argon2 verifications.
pub struct Gate {
    ledger: Mutex<Ledger>,
    max: usize,
    global_max: Option<usize>,
    window: Duration,
    exclusive: bool,
    verifying: Arc<Semaphore>,
    evaluated: AtomicU64,
}

impl Gate {
    /// At most `max` failures per address in `window`, and `global_max` in total if set;
    /// with `exclusive`, one attempt at a time per address (for checks that take time).
    pub fn new(max: usize, global_max: Option<usize>, window: Duration, exclusive: bool) -> Self {
        Self {
            ledger: Mutex::default(),
            max,
            global_max,
            window,
            exclusive,
            verifying: Arc::new(Semaphore::new(MAX_VERIFYING)),
            evaluated: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.locked()
    }

    /// Reserves one attempt for `ip`: refused if the address (or the relay, with a global
    /// limit) has used up its failures, or if the address has an attempt being checked.
    /// The reservation counts as a failure unless [`Attempt::succeeded`] is called.
    pub fn begin(&self, ip: IpAddr) -> Result<Attempt<'_>, Refused> {
        let key = crate::util::addr::address_key(ip);
        let now = Instant::now();
        let window = self.window;
        let fresh = |t: &Instant| now.duration_since(*t) < window;
        let mut l = self.lock();
        if self.exclusive && l.busy.contains(&key) {
            return Err(Refused::Busy);
        }
        if l.by_key.len() >= MAX_ADDRESSES {
            l.by_key.retain(|_, v| v.back().is_some_and(fresh));
            if l.by_key.len() >= MAX_ADDRESSES {
                // Forget an arbitrary address rather than grow without bound.
                if let Some(k) = l.by_key.keys().next().copied() {
                    l.by_key.remove(&k);
                }
            }
        }
        while l.all.front().is_some_and(|t| !fresh(t)) {
            l.all.pop_front();
        }
        if self.global_max.is_some_and(|g| l.all.len() >= g) {
            return Err(Refused::TooMany);
        }
        let v = l.by_key.entry(key).or_default();
        while v.front().is_some_and(|t| !fresh(t)) {
            v.pop_front();
        }
        if v.len() >= self.max {
            return Err(Refused::TooMany);
        }
        v.push_back(now);
        if self.global_max.is_some() {
            l.all.push_back(now);
        }
        if self.exclusive {
            l.busy.insert(key);
        }
        Ok(Attempt {
            gate: self,
            key,
            at: now,
            refund: false,
        })
    }

    /// Failures (and attempts in progress) of `ip` within the window.
    pub fn failures(&self, ip: IpAddr) -> usize {
        let now = Instant::now();
        self.lock()
            .by_key
            .get(&crate::util::addr::address_key(ip))
            .map_or(0, |v| {
                v.iter()
                    .filter(|t| now.duration_since(**t) < self.window)
                    .count()
            })
    }

    /// How many secrets were actually checked so far (passwords verified, tokens looked up).
    pub fn evaluated(&self) -> u64 {
        self.evaluated.load(Ordering::Relaxed)
    }

    fn end(&self, key: IpAddr, at: Instant, refund: bool) {
        let mut l = self.lock();
        l.busy.remove(&key);
        if refund {
            if let Some(v) = l.by_key.get_mut(&key)
                && let Some(i) = v.iter().rposition(|t| *t == at)
            {
                v.remove(i);
            }
            if let Some(i) = l.all.iter().rposition(|t| *t == at) {
                l.all.remove(i);
            }
        }
    }
}

/// One reserved attempt. Dropped without [`Attempt::succeeded`], it stays counted as a
/// failure; either way the address may try again (within its limit) once it is dropped.
pub struct Attempt<'a> {
    gate: &'a Gate,
    key: IpAddr,
    at: Instant,
    refund: bool,
}

impl Attempt<'_> {
    /// Notes that a secret is being checked now (cheap checks: token lookups).
    pub fn evaluate(&self) {
        self.gate.evaluated.fetch_add(1, Ordering::Relaxed);
    }

    /// Verifies `password` against an Argon2 PHC `hash` on the blocking pool, if one of
    /// the relay's verification slots is free (otherwise [`Refused::Saturated`] at once).
    pub async fn verify_password(&self, hash: String, password: String) -> Result<bool, Refused> {
        let permit = self
            .gate
            .verifying
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Saturated)?;
        self.evaluate();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = crate::util::password::verify_password(&hash, &password);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        Ok(ok)
    }

    /// The secret was right: the reservation is refunded.
    pub fn succeeded(mut self) {
        self.refund = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.gate.end(self.key, self.at, self.refund);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reservations_are_taken_before_the_check() {
        let g = Gate::new(3, None, Duration::from_secs(60), true);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            let attempt = g.begin(a).expect("within the limit");
            // While one is being checked, another from the same address is refused.
            assert_eq!(g.begin(a).err(), Some(Refused::Busy));
            drop(attempt);
        }
        assert_eq!(g.begin(a).err(), Some(Refused::TooMany));
        assert_eq!(g.failures(a), 3);
        // Another address is not affected.
        g.begin(ip("192.0.2.2"))
            .expect("another address")
            .succeeded();
    }

    #[test]
    fn success_refunds_its_reservation() {
        let g = Gate::new(2, None, Duration::from_secs(60), true);
        let a = ip("192.0.2.1");
        drop(g.begin(a).unwrap());
        for _ in 0..10 {
            g.begin(a).unwrap().succeeded();
        }
        assert_eq!(g.failures(a), 1);
        drop(g.begin(a).unwrap());
        assert_eq!(g.begin(a).err(), Some(Refused::TooMany));
    }

    #[test]
    fn global_limit_and_ipv6_prefixes() {
        let g = Gate::new(2, Some(3), Duration::from_secs(60), false);
        drop(g.begin(ip("2001:db8:1:2::1")).unwrap());
        drop(g.begin(ip("2001:db8:1:2::2")).unwrap());
        assert_eq!(
            g.begin(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::TooMany),
            "one /64 is one address"
        );
        drop(g.begin(ip("198.51.100.7")).unwrap());
        assert_eq!(
            g.begin(ip("203.0.113.9")).err(),
            Some(Refused::TooMany),
            "the global limit"
        );
        assert_eq!(
            crate::util::addr::address_key(ip("::ffff:192.0.2.1")),
            ip("192.0.2.1")
        );
    }

    #[tokio::test]
    async fn verifications_are_bounded_in_the_whole_relay() {
        let g = Gate::new(100, None, Duration::from_secs(60), true);
        let held: Vec<_> = (0..MAX_VERIFYING)
            .map(|_| g.verifying.clone().try_acquire_owned().unwrap())
            .collect();
        let attempt = g.begin(ip("192.0.2.1")).unwrap();
        assert_eq!(
            attempt.verify_password("x".into(), "y".into()).await,
            Err(Refused::Saturated)
        );
        drop(held);
        let hash = crate::util::password::hash_password("pw").unwrap();
        assert_eq!(attempt.verify_password(hash, "pw".into()).await, Ok(true));
        assert_eq!(g.evaluated(), 1);
    }
}
