//! Document ids: 26-character, ULID-like, sortable by creation time.
//!
//! An id is 128 bits: a 48-bit Unix timestamp in milliseconds followed by 80 random bits,
//! written in Crockford's base32 (`0-9A-Z` without `I L O U`), most significant bits first, so
//! the lexicographic order of ids is their numeric order. Within this process ids are strictly
//! increasing: a second id in the same millisecond (or after the clock stepped back) takes the
//! previous random part plus one, as ULID's "monotonic" mode does.
//!
//! Ids a client chooses itself (`PUT /tables/<t>/docs/<id>`) need not be ULIDs; they must only
//! satisfy [`is_valid_id`], because an id becomes a token of a NATS subject.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a generated id.
pub const ID_LEN: usize = 26;

/// The id rule lives in `rfa-wire`, where the CLI checks ids before it sends them.
pub use rfa_wire::names::{
    DOC_ID_RULE as ID_RULE, MAX_DOC_ID_LEN as MAX_ID_LEN, is_valid_doc_id as is_valid_id,
};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;
const TIME_MASK: u64 = (1 << 48) - 1;

/// The last id handed out: (milliseconds, random part).
static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A new id, greater than every id this process made before.
pub fn new_id() -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let fresh = rand::random::<u128>() & RANDOM_MASK;
    // A poisoned lock only means another thread panicked while holding it; the pair inside is
    // still a valid id, so carry on with it.
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (ms, random) = next(*last, now_ms, fresh);
    *last = (ms, random);
    drop(last);
    encode(ms, random)
}

/// The (time, random) pair that follows `last` at `now_ms`, given fresh random bits.
fn next(last: (u64, u128), now_ms: u64, fresh: u128) -> (u64, u128) {
    let (last_ms, last_random) = last;
    if now_ms > last_ms {
        (now_ms & TIME_MASK, fresh & RANDOM_MASK)
    } else if last_random < RANDOM_MASK {
        (last_ms, last_random + 1)
    } else {
        // 2^80 ids in one millisecond: borrow the next millisecond.
        ((last_ms + 1) & TIME_MASK, 0)
    }
}

/// Crockford base32 of the 128-bit value `ms << 80 | random`.
fn encode(ms: u64, random: u128) -> String {
    let value = (u128::from(ms & TIME_MASK) << RANDOM_BITS) | (random & RANDOM_MASK);
    (0..ID_LEN)
        .map(|i| {
            let shift = 5 * (ID_LEN - 1 - i);
            char::from(ALPHABET[((value >> shift) & 31) as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(encode(0, 0), "00000000000000000000000000");
        assert_eq!(encode(TIME_MASK, RANDOM_MASK), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        // The timestamp occupies the first ten characters.
        assert_eq!(&encode(1, 0)[..10], "0000000001");
        assert_eq!(&encode(0, 1)[10..], "0000000000000001");
    }

    #[test]
    fn ids_are_well_formed() {
        let id = new_id();
        assert_eq!(id.len(), ID_LEN);
        assert!(id.bytes().all(|b| ALPHABET.contains(&b)));
        assert!(is_valid_id(&id));
    }

    #[test]
    fn ids_sort_by_time() {
        let earlier = encode(1_000, RANDOM_MASK);
        let later = encode(1_001, 0);
        assert!(earlier < later);
    }

    #[test]
    fn ids_are_strictly_monotonic() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn ids_are_monotonic_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate ids");
        assert_eq!(n, 8_000);
    }

    #[test]
    fn same_millisecond_and_clock_steps_back() {
        assert_eq!(next((5, 7), 5, 99), (5, 8));
        assert_eq!(next((5, 7), 3, 99), (5, 8));
        assert_eq!(next((5, 7), 6, 99), (6, 99));
        assert_eq!(next((5, RANDOM_MASK), 5, 99), (6, 0));
    }

    #[test]
    fn validates_client_ids() {
        assert!(is_valid_id("abc-DEF_123"));
        assert!(is_valid_id(&"a".repeat(128)));
        assert!(!is_valid_id(&"a".repeat(129)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a.b"));
        assert!(!is_valid_id("a*"));
        assert!(!is_valid_id("a>"));
        assert!(!is_valid_id("a b"));
    }
}
