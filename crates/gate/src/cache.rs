//! The verified-token cache: a client that reuses its token (the client crate
//! does, for most of its lifetime) costs a hash lookup instead of an RSA
//! verification.
//!
//! Only tokens that fully verified enter, so a flood of junk can neither fill
//! nor evict it. A hit is served only while the app's current keys still hold
//! the key that verified the token (its `kid` is the key's SHA-256 thumbprint,
//! so the same kid is the same key) and the token's time rules still hold: a
//! retired or replaced key, or an expired token, is a miss and the entry is
//! dropped. Revocation, policy and rate limit run on every request, hit or
//! not.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use appauth_core::{KeyProvider, Verified, Verifier};
use prometheus_client::metrics::counter::Counter;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

/// Bookkeeping per entry beyond the token text, in bytes: the `Verified`
/// claims, `Arc`s and the map slot.
const ENTRY_OVERHEAD: u64 = 512;

/// The verified identity, and its app and key's accepted-requests counter
/// (resolved once, so a hit touches no metrics lock).
type Entry = (Arc<Verified>, Counter);

/// How many of a token's last bytes its cache hash reads.
const HASHED_TAIL: usize = 32;

/// A cached token's text: equal only to the same text, byte for byte, but
/// hashed by its length and its last [`HASHED_TAIL`] bytes. Those are the
/// end of the signature, which differs between any two tokens (two tokens
/// with the same signature and another header or payload cannot both
/// verify), so the hash spreads as well as one of the whole token, at a
/// twentieth of the bytes: hashing all 540 cost a warm request about 250
/// instructions. Only verified tokens become keys, so no one can fill a
/// bucket, and the hasher's seed is random per process.
struct TokenKey(Box<[u8]>);

/// A token looked up: the same hash as its [`TokenKey`].
struct Lookup<'a>(&'a [u8]);

fn hash_tail<H: Hasher>(token: &[u8], state: &mut H) {
    state.write_usize(token.len());
    state.write(&token[token.len().saturating_sub(HASHED_TAIL)..]);
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(&self.0, state);
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(self.0, state);
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for TokenKey {}

impl Equivalent<TokenKey> for Lookup<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self.0 == *key.0
    }
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<TokenKey, Entry> for ByBytes {
    fn weight(&self, key: &TokenKey, _: &Entry) -> u64 {
        key.0.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A bounded cache of verified tokens, keyed by the token text (so a hash
/// collision can never alias two tokens).
pub struct TokenCache {
    cache: Cache<TokenKey, Entry, ByBytes>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl TokenCache {
    /// A cache holding at most `max_bytes` (tokens plus bookkeeping).
    pub fn new(max_bytes: u64) -> Self {
        let estimated_items = (max_bytes / (ENTRY_OVERHEAD + 700)).max(16) as usize;
        Self {
            cache: Cache::with_weighter(estimated_items, max_bytes, ByBytes),
        }
    }

    /// The verified identity for `token`, if it is cached and still good:
    /// the key that verified it is still one of the app's keys, and the time
    /// rules (`exp` with leeway, certificate validity) still hold at `now`.
    /// The token is taken as bytes, unchecked as UTF-8: a cached one is
    /// text, and bytes equal to it are too.
    pub fn get(
        &self,
        token: impl AsRef<[u8]>,
        keys: &(impl KeyProvider + ?Sized),
        verifier: &Verifier,
        now: i64,
    ) -> Option<Entry> {
        let token = token.as_ref();
        let entry = self.cache.get(&Lookup(token))?;
        if verifier.reverify(&entry.0, keys, now).is_ok() {
            Some(entry)
        } else {
            self.cache.remove(&Lookup(token));
            None
        }
    }

    /// Remembers a token that just verified, with its accepted counter.
    pub fn insert(&self, token: impl AsRef<[u8]>, verified: Arc<Verified>, accepted: Counter) {
        self.cache
            .insert(TokenKey(token.as_ref().into()), (verified, accepted));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.len() == 0
    }

    /// Bytes held (as weighed).
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use appauth_core::{
        Algorithm, AppId, Claims, ManualClock, PrivateKey, PublicKey, VerifyConfig,
        parse_public_bundle, sign_token,
    };

    use super::*;

    type Keys = HashMap<AppId, Arc<[PublicKey]>>;

    fn keys_of(app: &str, key: &PrivateKey) -> Keys {
        let pem = key.public_key_pem().unwrap();
        let parsed = parse_public_bundle(pem.as_bytes(), 0, &[Algorithm::RS512]).unwrap();
        HashMap::from([(AppId::new(app).unwrap(), parsed.into())])
    }

    fn token(key: &PrivateKey, iat: i64, n: u32) -> String {
        let claims = Claims {
            app_id: "a".into(),
            iat,
            exp: iat + 300,
            nbf: None,
            jti: Some(n.to_string()),
            aud: None,
            iss: None,
            extra: Default::default(),
        };
        sign_token(key, Algorithm::RS512, &claims).unwrap()
    }

    /// App "a" with a new key, and a verifier whose clock stands at 1000.
    fn one_app() -> (PrivateKey, Keys, Verifier) {
        let key = PrivateKey::generate(2048).unwrap();
        let keys = keys_of("a", &key);
        let verifier =
            Verifier::with_clock(VerifyConfig::default(), Arc::new(ManualClock::new(1000)));
        (key, keys, verifier)
    }

    /// Verifies `t` and caches it, as the gate does on a miss.
    fn remember(cache: &TokenCache, t: &str, keys: &Keys, verifier: &Verifier) {
        let verified = Arc::new(verifier.verify(t, keys).unwrap());
        cache.insert(t, verified, Counter::default());
    }

    #[test]
    fn hits_only_while_the_key_is_there_and_the_token_is_valid() {
        let key = PrivateKey::generate(2048).unwrap();
        let keys = keys_of("a", &key);
        let clock = Arc::new(ManualClock::new(1000));
        let verifier = Verifier::with_clock(VerifyConfig::default(), clock.clone());
        let cache = TokenCache::new(1024 * 1024);
        let t = token(&key, 1000, 0);
        assert!(cache.get(&t, &keys, &verifier, 1000).is_none());
        remember(&cache, &t, &keys, &verifier);
        assert!(cache.get(&t, &keys, &verifier, 1100).is_some());

        // Expired (exp 1300 + 30 s leeway): a miss, and the entry is gone.
        assert!(cache.get(&t, &keys, &verifier, 1330).is_none());
        assert!(cache.is_empty());

        // The app's key replaced: a miss.
        remember(&cache, &t, &keys, &verifier);
        let other = keys_of("a", &PrivateKey::generate(2048).unwrap());
        assert!(cache.get(&t, &other, &verifier, 1100).is_none());
        // The app gone: a miss.
        remember(&cache, &t, &keys, &verifier);
        assert!(cache.get(&t, &Keys::new(), &verifier, 1100).is_none());
    }

    #[test]
    fn a_token_with_the_same_length_and_tail_is_another_token() {
        let (key, keys, verifier) = one_app();
        let cache = TokenCache::new(1024 * 1024);
        let t = token(&key, 1000, 0);
        remember(&cache, &t, &keys, &verifier);
        // The same hash (length and last bytes), another header: a miss,
        // and the real entry stays.
        let mut forged = t.clone().into_bytes();
        forged[0] = if forged[0] == b'e' { b'f' } else { b'e' };
        assert!(cache.get(&forged, &keys, &verifier, 1000).is_none());
        assert!(
            cache
                .get(&t[..t.len() - 1], &keys, &verifier, 1000)
                .is_none()
        );
        assert!(cache.get(&t, &keys, &verifier, 1000).is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn memory_stays_within_the_budget() {
        let (key, keys, verifier) = one_app();
        let budget = 64 * 1024;
        let cache = TokenCache::new(budget);
        for i in 0..500 {
            let t = token(&key, 1000, i);
            remember(&cache, &t, &keys, &verifier);
        }
        assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
        assert!(cache.len() < 500);
    }
}
