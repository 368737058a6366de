//! Fuzzes the cache entry formats (`<id>.json` and `<id>.enc`, as read from disk on every
//! `get-token`): `koidc::fuzz::cache_entry` decodes the input both ways, decrypts a sealed
//! entry with a fixed key, and panics if a decoded entry does not survive a write and a read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    koidc::fuzz::cache_entry(data);
});
