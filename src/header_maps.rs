//! Header maps kept for reuse on each worker thread. A request served on the gateway's
//! own HTTP/1 paths builds two `HeaderMap`s, the client's request head and the
//! upstream's response head, each two allocations. A map whose head has been written is
//! cleared and kept here instead of being freed, and the next head parsed on the thread
//! takes it: four allocations and four frees fewer a request.
//!
//! Bounded: a thread keeps at most [`KEPT`] maps and none with room for more than
//! [`ROOMIEST`] fields (a map grown by a head with many fields is freed, as before); with
//! the room its repeated fields took, bounded by the limit on a head's fields, a worker
//! keeps under 100 KiB whatever its clients send. A kept map is empty: clearing it drops
//! every name and value of the head that used it.
//!
//! A leaf: the listener's and the upstream's head parsers and writers import it, and it
//! imports nothing of the crate.

use std::cell::RefCell;

use http::HeaderMap;

/// The most maps a thread keeps. Each request takes one and gives it back before it
/// takes the next, so a few cover a worker's interleaved requests.
pub const KEPT: usize = 8;
/// The most fields a kept map may have room for (its usable capacity; 64 slots).
pub const ROOMIEST: usize = 48;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for at least `fields` fields: a kept one if the thread has one.
pub fn take(fields: usize) -> HeaderMap {
    match MAPS.try_with(|maps| maps.borrow_mut().pop()) {
        Ok(Some(mut map)) => {
            map.reserve(fields);
            map
        }
        _ => HeaderMap::with_capacity(fields),
    }
}

/// Gives `map` back once its head is written: cleared and kept for the next head, or
/// freed if the thread keeps enough or the map is larger than a kept one may be.
pub fn give_back(mut map: HeaderMap) {
    let room = map.capacity();
    if room == 0 || room > ROOMIEST {
        return;
    }
    map.clear();
    // After the thread's maps are gone (the thread ending), the map is simply freed.
    let _ = MAPS.try_with(|maps| {
        let mut maps = maps.borrow_mut();
        if maps.len() < KEPT {
            maps.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, HOST};

    fn kept() -> usize {
        MAPS.with(|maps| maps.borrow().len())
    }

    #[test]
    fn a_map_given_back_is_taken_again_empty() {
        let mut map = take(4);
        map.insert(HOST, HeaderValue::from_static("secret.example"));
        map.append("x-token", HeaderValue::from_static("abc"));
        let room = map.capacity();
        let before = kept();
        give_back(map);
        assert_eq!(kept(), before + 1);
        let again = take(4);
        assert_eq!(kept(), before);
        assert!(again.is_empty(), "a kept map holds nothing of the head that used it");
        assert!(again.get(HOST).is_none());
        assert_eq!(again.capacity(), room, "the same allocation, not a new one");
    }

    #[test]
    fn a_taken_map_has_the_room_asked_for() {
        give_back(HeaderMap::with_capacity(2));
        let map = take(30);
        assert!(map.capacity() >= 30);
    }

    #[test]
    fn large_maps_and_more_than_kept_are_freed() {
        while kept() > 0 {
            drop(take(1));
        }
        give_back(HeaderMap::with_capacity(ROOMIEST + 1));
        give_back(HeaderMap::new());
        assert_eq!(kept(), 0, "a map with room for many fields, or none, is not kept");
        for _ in 0..KEPT + 3 {
            give_back(HeaderMap::with_capacity(8));
        }
        assert_eq!(kept(), KEPT);
    }
}
