//! HTTP basic authentication against the web config's bcrypt hashes.
//!
//! bcrypt is slow on purpose (cost 10 is ~70 ms of CPU), so: hashes are
//! checked on the blocking pool, at most [`VERIFY_AT_ONCE`] at a time (a
//! flood of wrong passwords costs at most that many cores and never the
//! async workers the prober runs on), and a successful check is remembered
//! for [`CACHE_TTL`] so a scrape every few seconds costs one bcrypt a
//! minute. The cache keys on a SHA-256 of user, stored hash and password:
//! no password is kept, and a changed hash invalidates its entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

/// How long a successful check is remembered.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries remembered at most (a few users, a few scrapers).
const CACHE_SIZE: usize = 256;
/// bcrypt checks running at once at most.
const VERIFY_AT_ONCE: usize = 2;
/// Checked when the user is unknown, so that an unknown user takes as long
/// as a wrong password (no user enumeration by timing). Cost 10, as
/// exporter-toolkit's docs suggest; its password is unused.
const DUMMY_HASH: &str = "$2y$10$qxkUsZLusyMqYX3dr9Bgsu8lBMlZ4lOMJab/i2XwU76ciXdnJ.jhu";

/// Verifies `Authorization: Basic` headers; one per server.
pub(crate) struct BasicAuth {
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    verifying: Semaphore,
}

impl Default for BasicAuth {
    fn default() -> Self {
        BasicAuth {
            cache: Mutex::new(HashMap::new()),
            verifying: Semaphore::new(VERIFY_AT_ONCE),
        }
    }
}

impl BasicAuth {
    /// True when `users` is empty (no authentication configured) or the
    /// header carries a user of `users` with the right password.
    pub(crate) async fn allows(
        &self,
        users: &BTreeMap<String, String>,
        header: Option<&HeaderValue>,
    ) -> bool {
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (DUMMY_HASH.to_string(), false),
        };
        let key = cache_key(&user, &hash, &password);
        if known && self.cached(&key) {
            return true;
        }
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok && known {
            self.remember(key);
        }
        ok && known
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SIZE {
            cache.retain(|_, at| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pw: &str) -> HeaderValue {
        let t = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {t}")).unwrap()
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_cached() {
        let auth = BasicAuth::default();
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap());
        assert!(auth.allows(&BTreeMap::new(), None).await, "no users: open");
        assert!(!auth.allows(&users, None).await);
        assert!(!auth.allows(&users, Some(&header("alice", "nope"))).await);
        assert!(!auth.allows(&users, Some(&header("bob", "s3cret"))).await);
        assert!(
            !auth
                .allows(&users, Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert!(auth.allows(&users, Some(&header("alice", "s3cret"))).await);
        assert_eq!(auth.cache.lock().unwrap().len(), 1, "success cached");
        // A new hash for alice: the old entry no longer matches.
        users.insert("alice".to_string(), bcrypt::hash("other", 4).unwrap());
        assert!(!auth.allows(&users, Some(&header("alice", "s3cret"))).await);
        assert!(auth.allows(&users, Some(&header("alice", "other"))).await);
    }

    #[test]
    fn the_dummy_hash_is_a_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }
}
