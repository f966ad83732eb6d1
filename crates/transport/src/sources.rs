//! What each source address holds of a node's inbound connections: open ones, handshakes
//! under way, and connections that have not sent their first message yet, each bounded by
//! its own limit, so that one address cannot take the descriptors, the handshake work or
//! the silent connections a node can afford.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Limits;

/// Which count of a source address a [`PerSource`] holds one of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// The connection is open (its whole life).
    Open,
    /// Its TLS handshake is under way.
    Handshaking,
    /// It has not sent its first message yet.
    Silent,
}

/// One source address's counts, indexed by [`Held`].
#[derive(Default)]
struct Counts([usize; 3]);

impl Counts {
    fn of(&mut self, held: Held) -> &mut usize {
        &mut self.0[held as usize]
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

type Table = Arc<Mutex<HashMap<IpAddr, Counts>>>;

/// The counts of every source address a node has inbound connections from.
#[derive(Default)]
pub(crate) struct Sources(Table);

fn lock(table: &Table) -> MutexGuard<'_, HashMap<IpAddr, Counts>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sources {
    /// One more connection from `ip`, open, handshaking and silent at once, unless `ip`
    /// holds as many of any of them as `limits` allow; then the count that is full and its
    /// limit.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        limits: &Limits,
    ) -> Result<[PerSource; 3], (Held, usize)> {
        let bounds = [
            (Held::Open, limits.max_connections_per_source),
            (Held::Handshaking, limits.max_pending_per_source),
            (Held::Silent, limits.max_silent_per_source),
        ];
        let mut table = lock(&self.0);
        let counts = table.entry(ip).or_default();
        if let Some(&full) = bounds.iter().find(|(h, max)| *counts.of(*h) >= *max) {
            if counts.is_empty() {
                table.remove(&ip);
            }
            return Err(full);
        }
        Ok(bounds.map(|(held, _)| {
            *counts.of(held) += 1;
            PerSource {
                table: self.0.clone(),
                ip,
                held,
            }
        }))
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        lock(&self.0).len()
    }
}

/// One inbound connection counted against its source address for as long as this lives:
/// its whole life, its handshake, or until its first message.
pub(crate) struct PerSource {
    table: Table,
    ip: IpAddr,
    held: Held,
}

impl Drop for PerSource {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if let Entry::Occupied(mut e) = table.entry(self.ip) {
            let n = e.get_mut().of(self.held);
            *n = n.saturating_sub(1);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(open: usize, handshaking: usize, silent: usize) -> Limits {
        Limits {
            max_connections_per_source: open,
            max_pending_per_source: handshaking,
            max_silent_per_source: silent,
            ..Limits::default()
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn each_count_is_bounded_on_its_own_and_freed_when_its_part_ends() {
        let sources = Sources::default();
        let l = limits(3, 1, 2);
        // One handshake at a time: the second is refused until the first is done.
        let [open1, hs1, silent1] = sources.admit(A, &l).expect("first");
        assert_eq!(sources.admit(A, &l).err(), Some((Held::Handshaking, 1)));
        drop(hs1);
        // Two silent at once: the third waits for a first message.
        let [_open2, hs2, silent2] = sources.admit(A, &l).expect("second");
        drop(hs2);
        assert_eq!(sources.admit(A, &l).err(), Some((Held::Silent, 2)));
        drop(silent1);
        drop(silent2);
        // Three open in all, whatever else they are past.
        let [_open3, hs3, silent3] = sources.admit(A, &l).expect("third");
        drop((hs3, silent3));
        assert_eq!(sources.admit(A, &l).err(), Some((Held::Open, 3)));
        // Another address has counts of its own.
        let other = sources.admit(B, &l).expect("another address");
        drop(other);
        drop(open1);
        assert!(
            sources.admit(A, &l).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn an_address_with_nothing_left_leaves_the_table() {
        let sources = Sources::default();
        let l = limits(1, 1, 1);
        let held = sources.admit(A, &l).expect("admitted");
        assert!(sources.admit(A, &l).is_err());
        assert_eq!(sources.addresses(), 1);
        drop(held);
        assert_eq!(sources.addresses(), 0);
        // A refusal of an address holding nothing leaves no entry either.
        assert!(sources.admit(B, &limits(0, 1, 1)).is_err());
        assert_eq!(sources.addresses(), 0);
    }
}
