//! Sign-in throttling: how many passwords may be tried, per address and per
//! account (per node).
//!
//! Each address and each account has an allowance of tries that refills at a
//! steady pace (a token bucket). A sign-in takes one try from both before any
//! password is hashed; when either is empty it is refused with `429
//! rate_limited` and `Retry-After`, however right the password (so the answer
//! tells nothing). A sign-in that succeeds gives its tries back: only failures
//! count, so a classroom behind one address (a school's NAT) signs in freely
//! while someone guessing does not.
//!
//! - **Per address** ([`ADDRESS_TRIES`], one back every [`ADDRESS_REFILL`]):
//!   bounds what one machine may guess across accounts. IPv6 addresses count
//!   by their /64, which one customer usually holds whole.
//! - **Per account** ([`ACCOUNT_TRIES`], one back every [`ACCOUNT_REFILL`]):
//!   bounds the guesses at one account from many addresses. Its cost: someone
//!   who knows an email can keep that account's sign-in refused (at most one
//!   try a minute gets through), never sign in as them. The account is the
//!   email as typed, trimmed and lower-cased, known or not, so a refusal does
//!   not tell which emails have accounts.
//!
//! The map is bounded ([`MAX_ENTRIES`], least recently used out first); an
//! allowance that refilled whole holds nothing and is the first to go.

use std::net::IpAddr;
use std::time::Duration;

use hashlink::LruCache;
use parking_lot::Mutex;

/// Tries an address has before it waits.
pub const ADDRESS_TRIES: u32 = 100;
/// How long an address waits for each try back.
pub const ADDRESS_REFILL: Duration = Duration::from_secs(6);
/// Tries an account has before it waits.
pub const ACCOUNT_TRIES: u32 = 10;
/// How long an account waits for each try back.
pub const ACCOUNT_REFILL: Duration = Duration::from_secs(60);
/// Addresses and accounts remembered at most (a few dozen bytes each).
pub const MAX_ENTRIES: usize = 65_536;

/// Whose tries these are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Account(String),
}

/// An allowance, as the time it will be whole again (a GCRA: each try
/// moves it one refill later; a try is allowed while it stays within the
/// allowance's span of the present).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    whole_at_ms: i64,
}

/// The tries taken by one sign-in, to give back if it succeeds.
#[derive(Debug)]
pub struct Taken(Vec<(Key, u32, Duration)>);

/// The sign-in allowances of this node.
pub struct Throttle {
    buckets: Mutex<LruCache<Key, Bucket>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Throttle {
    fn with_capacity(entries: usize) -> Self {
        Self {
            buckets: Mutex::new(LruCache::new(entries)),
        }
    }

    /// Takes one try from `address`'s allowance (when known) and `account`'s.
    ///
    /// # Errors
    /// When either is empty: how long until both have a try again (nothing
    /// is taken).
    pub fn take(&self, now_ms: i64, address: Option<IpAddr>, account: &str) -> Result<Taken, Duration> {
        let mut keys = vec![(
            Key::Account(account.trim().to_lowercase()),
            ACCOUNT_TRIES,
            ACCOUNT_REFILL,
        )];
        if let Some(a) = address {
            keys.push((Key::Address(prefix(a)), ADDRESS_TRIES, ADDRESS_REFILL));
        }
        let mut buckets = self.buckets.lock();
        let mut wait = 0i64;
        let mut next = Vec::with_capacity(keys.len());
        for (key, tries, refill) in &keys {
            // `get` marks the entry used, a refused try included.
            let whole_at = buckets.get(key).map_or(now_ms, |b| b.whole_at_ms.max(now_ms));
            let after = whole_at.saturating_add(ms(*refill));
            let span = ms(*refill).saturating_mul(i64::from(*tries));
            wait = wait.max(after.saturating_sub(now_ms).saturating_sub(span));
            next.push(after);
        }
        if wait > 0 {
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(u64::MAX));
            return Err(wait.max(Duration::from_secs(1)));
        }
        for ((key, ..), after) in keys.iter().zip(next) {
            buckets.insert(key.clone(), Bucket { whole_at_ms: after });
        }
        Ok(Taken(keys))
    }

    /// Gives back the tries of a sign-in that succeeded.
    pub fn give_back(&self, now_ms: i64, taken: Taken) {
        let mut buckets = self.buckets.lock();
        for (key, _, refill) in taken.0 {
            if let Some(b) = buckets.get_mut(&key) {
                b.whole_at_ms = b.whole_at_ms.saturating_sub(ms(refill)).max(now_ms);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().len()
    }
}

/// The part of an address that names one client: the address itself for
/// IPv4, its /64 for IPv6 (an IPv4 address mapped into IPv6 is IPv4).
fn prefix(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => a,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ADA: &str = "ada@example.org";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_account_has_its_tries_then_one_a_minute() {
        let t = Throttle::default();
        for i in 0..ACCOUNT_TRIES {
            assert!(t.take(0, ip(&format!("10.0.0.{i}")), ADA).is_ok(), "try {i}");
        }
        // From anywhere, in any case, the account waits.
        let wait = t.take(0, ip("10.9.9.9"), " ADA@Example.org ").unwrap_err();
        assert_eq!(wait, ACCOUNT_REFILL);
        assert!(t.take(59_999, ip("10.9.9.9"), ADA).is_err());
        assert!(
            t.take(60_000, ip("10.9.9.9"), ADA).is_ok(),
            "one back after a minute"
        );
        assert!(t.take(60_000, ip("10.9.9.9"), ADA).is_err());
        // Another account is not held up.
        assert!(t.take(60_000, ip("10.9.9.9"), "bob@example.org").is_ok());
    }

    #[test]
    fn an_address_has_its_tries_across_accounts() {
        let t = Throttle::default();
        for i in 0..ADDRESS_TRIES {
            assert!(t.take(0, ip("192.0.2.7"), &format!("u{i}@example.org")).is_ok());
        }
        let wait = t.take(0, ip("192.0.2.7"), "new@example.org").unwrap_err();
        assert_eq!(wait, ADDRESS_REFILL);
        // The refused try took nothing from the account.
        for _ in 0..ACCOUNT_TRIES {
            assert!(t.take(0, ip("192.0.2.8"), "new@example.org").is_ok());
        }
        // An IPv6 client counts by its /64; an IPv4-mapped address as IPv4.
        for i in 0..ADDRESS_TRIES {
            let a = format!("2001:db8:1:2::{:x}", i + 1);
            assert!(t.take(0, ip(&a), &format!("v{i}@example.org")).is_ok());
        }
        assert!(t.take(0, ip("2001:db8:1:2:ffff::1"), "w@example.org").is_err());
        assert!(t.take(0, ip("2001:db8:1:3::1"), "w@example.org").is_ok());
        assert!(t.take(0, ip("::ffff:192.0.2.7"), "x@example.org").is_err());
    }

    #[test]
    fn a_success_gives_its_tries_back() {
        let t = Throttle::default();
        for _ in 0..3 * ACCOUNT_TRIES {
            let taken = t.take(0, ip("10.0.0.1"), ADA).unwrap();
            t.give_back(0, taken);
        }
        for _ in 0..ACCOUNT_TRIES {
            assert!(t.take(0, ip("10.0.0.1"), ADA).is_ok());
        }
        assert!(t.take(0, ip("10.0.0.1"), ADA).is_err());
    }

    #[test]
    fn a_flood_stays_within_the_bound_and_an_account_held_stays_held() {
        let t = Throttle::with_capacity(1_000);
        for _ in 0..ACCOUNT_TRIES {
            t.take(0, None, ADA).unwrap();
        }
        for i in 0..20_000 {
            let _ = t.take(0, None, &format!("x{i}@example.org"));
            assert!(t.len() <= 1_000);
            if i % 100 == 0 {
                assert!(t.take(0, None, ADA).is_err(), "ada stays held ({i})");
            }
        }
    }
}
