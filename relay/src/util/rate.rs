//! A simple per-address rate limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::sync::LockExt;

/// A simple per-address limiter: at most `max` events per `window`. IPv6 addresses count
/// by their /64 (one host's usual share), so rotating addresses within it gains nothing.
#[derive(Default)]
pub struct RateLimiter {
    events: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl RateLimiter {
    /// Whether `ip` may do one more thing now (and counts it if so).
    pub fn allow(&self, ip: IpAddr, max: usize, window: Duration) -> bool {
        let ip = crate::util::addr::address_key(ip);
        let mut map = self.events.locked();
        if map.len() > 100_000 {
            map.retain(|_, v| v.last().is_some_and(|t| t.elapsed() < window));
        }
        let v = map.entry(ip).or_default();
        v.retain(|t| t.elapsed() < window);
        if v.len() >= max {
            return false;
        }
        v.push(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter() {
        let l = RateLimiter::default();
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allow(ip, 3, Duration::from_secs(60)));
        }
        assert!(!l.allow(ip, 3, Duration::from_secs(60)));
        assert!(l.allow("1.2.3.5".parse().unwrap(), 3, Duration::from_secs(60)));
        for i in 0..3 {
            let ip: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            assert!(l.allow(ip, 3, Duration::from_secs(60)));
        }
        let same_64: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert!(!l.allow(same_64, 3, Duration::from_secs(60)));
    }
}
