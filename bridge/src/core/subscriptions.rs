//! Resource subscriptions on the children, reference-counted: a child is subscribed to a
//! resource once, whatever the number of sessions and listen streams that follow it, and
//! unsubscribed when the last one stops.

use std::collections::HashMap;

use crate::child::ChildId;

/// What releasing one subscriber left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// It was the last: the child is to be unsubscribed.
    Last,
    /// Others still follow the resource.
    Held,
    /// None was counted.
    Unknown,
}

/// Subscribers per (child, resource URI).
#[derive(Default)]
pub(super) struct Subscriptions {
    counts: HashMap<(ChildId, String), usize>,
}

impl Subscriptions {
    /// One more subscriber; whether it is the first (the child is to be subscribed).
    pub(super) fn add(&mut self, child: ChildId, uri: &str) -> bool {
        let n = self.counts.entry((child, uri.to_owned())).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// One subscriber fewer.
    pub(super) fn release(&mut self, child: ChildId, uri: &str) -> Release {
        let key = (child, uri.to_owned());
        let Some(n) = self.counts.get_mut(&key) else {
            return Release::Unknown;
        };
        *n -= 1;
        if *n > 0 {
            return Release::Held;
        }
        self.counts.remove(&key);
        Release::Last
    }

    /// Moves the subscriptions of `old` to `new` (the shared child was restarted); the
    /// URIs to subscribe `new` to.
    pub(super) fn move_child(&mut self, old: ChildId, new: ChildId) -> Vec<String> {
        let moved: Vec<(String, usize)> = self
            .counts
            .iter()
            .filter(|((c, _), _)| *c == old)
            .map(|((_, u), n)| (u.clone(), *n))
            .collect();
        moved
            .into_iter()
            .map(|(uri, n)| {
                self.counts.remove(&(old, uri.clone()));
                self.counts.insert((new, uri.clone()), n);
                uri
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_per_child_and_resource() {
        let mut s = Subscriptions::default();
        assert!(s.add(1, "file:///a"));
        assert!(!s.add(1, "file:///a"));
        assert!(s.add(2, "file:///a"), "another child counts apart");
        assert_eq!(s.release(1, "file:///a"), Release::Held);
        assert_eq!(s.release(1, "file:///a"), Release::Last);
        assert_eq!(s.release(1, "file:///a"), Release::Unknown);
        assert!(s.add(1, "file:///a"), "first again after the last left");
    }

    #[test]
    fn a_restart_moves_the_counts() {
        let mut s = Subscriptions::default();
        s.add(1, "file:///a");
        s.add(1, "file:///a");
        s.add(3, "file:///b");
        assert_eq!(s.move_child(1, 2), ["file:///a"]);
        assert_eq!(s.release(1, "file:///a"), Release::Unknown);
        assert_eq!(s.release(2, "file:///a"), Release::Held);
        assert_eq!(s.release(2, "file:///a"), Release::Last);
        assert_eq!(s.release(3, "file:///b"), Release::Last);
    }
}
