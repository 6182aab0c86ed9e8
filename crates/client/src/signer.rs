//! The cached token signer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use appauth_core::{
    Algorithm, AppId, Audience, Claims, Clock, Fingerprint, Kid, PrivateKey, SystemClock,
    sign_token,
};
use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::Error;

/// Default token lifetime: 300 s, as the Node recipe uses.
pub const DEFAULT_TTL: u64 = 300;
/// How far `iat` is set in the past, to absorb a server clock that is behind.
pub const IAT_BACKDATE: u64 = 10;
/// The longest `exp - iat` a server accepts by default.
pub const SERVER_MAX_LIFETIME: u64 = appauth_core::DEFAULT_MAX_LIFETIME;
/// A cached token is never handed out when it has fewer seconds than this
/// left: it must survive the trip to the server.
const MIN_REMAINING: i64 = 5;

/// A token and when to replace it.
struct Cached {
    token: Arc<str>,
    refresh_at: i64,
    exp: i64,
}

/// Signs appauth tokens for one app and caches them.
///
/// [`Signer::token`] returns the cached token and signs a new one only when
/// the cached one nears expiry (a fifth of its lifetime left). Reading the
/// cache is a lock-free atomic load; when a refresh is due, exactly one caller
/// signs while the others keep using the still-valid token. Share it across
/// threads and tasks in an `Arc`.
///
/// ```no_run
/// use appauth_client::Signer;
/// let signer = Signer::builder("orders-service")
///     .key_file("keys/orders-service_private.pem")
///     .build()?;
/// let token = signer.token()?; // send as `x-token: <token>`
/// # Ok::<(), appauth_client::Error>(())
/// ```
pub struct Signer {
    app_id: AppId,
    key: ArcSwap<PrivateKey>,
    /// The file the key came from, followed: a rotated key is picked up at
    /// the next signature.
    file: Option<KeyFile>,
    ttl: u64,
    audience: Option<String>,
    app_as_issuer: bool,
    extra: Map<String, Value>,
    clock: Arc<dyn Clock>,
    cached: ArcSwapOption<Cached>,
    refreshing: parking_lot::Mutex<()>,
    signatures: AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("app_id", &self.app_id)
            .field("kid", self.key.load().kid())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Starts building a signer for `app_id`.
    pub fn builder(app_id: impl Into<String>) -> SignerBuilder {
        SignerBuilder {
            app_id: app_id.into(),
            key: None,
            ttl: DEFAULT_TTL,
            max_lifetime: SERVER_MAX_LIFETIME,
            audience: None,
            app_as_issuer: false,
            extra: Map::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The app this signer speaks for.
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }

    /// The `kid` of the key tokens are signed with now.
    pub fn kid(&self) -> Kid {
        self.key.load().kid().clone()
    }

    /// Why the key file was last refused, while the previous key stays in
    /// use (`None` once a good key is read again).
    pub fn key_file_problem(&self) -> Option<String> {
        self.file.as_ref().and_then(|f| f.problem.lock().clone())
    }

    /// The token lifetime in seconds.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// How many signatures this signer has made: a cache works when this
    /// grows by one per lifetime, not per call.
    pub fn signatures_made(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// How many times a changed key file was read as a key and put in use.
    pub fn key_reloads(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |f| f.reloads.load(Ordering::Relaxed))
    }

    /// Reads the key file now if it changed, instead of at the next
    /// signature. When it holds a different key, the cached token is
    /// dropped, so the next [`Signer::token`] signs with the new key (a
    /// process that hands tokens to others, such as a token file writer,
    /// learns of a rotation within its polling interval, not at the next
    /// refresh). A signer built from PEM bytes has no file: `Unchanged`.
    pub fn reload_key_file(&self) -> KeyFileCheck {
        let Some(file) = &self.file else {
            return KeyFileCheck::Unchanged;
        };
        let before = self.key.load().kid().clone();
        let check = file.follow(&self.key);
        if let KeyFileCheck::Reloaded { kid, .. } = &check {
            let new_kid = *kid != before;
            if new_kid {
                let _guard = self.refreshing.lock();
                self.cached.store(None);
            }
            return KeyFileCheck::Reloaded {
                kid: kid.clone(),
                new_kid,
            };
        }
        check
    }

    /// A valid token: the cached one, or a freshly signed one when the cache
    /// is empty or near expiry.
    pub fn token(&self) -> Result<Arc<str>, Error> {
        let now = self.clock.now();
        if let Some(cached) = self.cached.load().as_ref() {
            if now < cached.refresh_at {
                return Ok(cached.token.clone());
            }
            if now < cached.exp - MIN_REMAINING {
                // Due for refresh but still good: whoever gets the lock signs,
                // everyone else carries on with the current token.
                return match self.refreshing.try_lock() {
                    Some(_guard) => self.refresh_locked(now, None),
                    None => Ok(cached.token.clone()),
                };
            }
        }
        // Nothing usable: wait for whoever is signing, or sign.
        let _guard = self.refreshing.lock();
        self.refresh_locked(self.clock.now(), None)
    }

    /// Signs a new token unless the cached one has already changed since
    /// `rejected` was handed out. For a client whose token was refused with
    /// 401: many concurrent refusals still cost one signature.
    pub fn refresh_after_rejection(&self, rejected: &str) -> Result<Arc<str>, Error> {
        let _guard = self.refreshing.lock();
        self.refresh_locked(self.clock.now(), Some(rejected))
    }

    /// Called with `refreshing` held.
    fn refresh_locked(&self, now: i64, rejected: Option<&str>) -> Result<Arc<str>, Error> {
        if let Some(cached) = self.cached.load().as_ref() {
            let replaced_since = rejected.is_some_and(|r| *cached.token != *r);
            let fresh = rejected.is_none() && now < cached.refresh_at;
            if replaced_since || fresh {
                return Ok(cached.token.clone());
            }
        }
        let cached = self.sign(now)?;
        let token = cached.token.clone();
        self.cached.store(Some(Arc::new(cached)));
        Ok(token)
    }

    fn sign(&self, now: i64) -> Result<Cached, Error> {
        let ttl = i64::try_from(self.ttl).unwrap_or(i64::MAX);
        let exp = now.saturating_add(ttl);
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| {
            Error::Sign(appauth_core::Error::Crypto {
                operation: "draw a random jti",
            })
        })?;
        let claims = Claims {
            app_id: self.app_id.to_string(),
            iat: now.saturating_sub(IAT_BACKDATE as i64),
            exp,
            nbf: None,
            jti: Some(URL_SAFE_NO_PAD.encode(jti)),
            aud: self.audience.clone().map(Audience::One),
            iss: self.app_as_issuer.then(|| self.app_id.to_string()),
            extra: self.extra.clone(),
        };
        if let Some(file) = &self.file {
            let _ = file.follow(&self.key);
        }
        let key = self.key.load();
        let token = sign_token(&key, Algorithm::RS512, &claims).map_err(Error::Sign)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(Cached {
            token: token.into(),
            refresh_at: exp - ttl / 5,
            exp,
        })
    }
}

/// What [`Signer::reload_key_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFileCheck {
    /// The file is as last read (or the signer has no file).
    Unchanged,
    /// The file changed and was read as a key, now in use.
    Reloaded {
        /// The `kid` of the key now in use.
        kid: Kid,
        /// Whether it is another key than before (a rewrite of the same key
        /// is not).
        new_kid: bool,
    },
    /// The file changed but does not read as a key: the previous key stays
    /// in use. The text names the file and the cause.
    Refused(String),
}

/// A key file being followed.
struct KeyFile {
    path: PathBuf,
    /// The file as last read.
    stamp: parking_lot::Mutex<Option<Fingerprint>>,
    /// Why the last read was refused.
    problem: parking_lot::Mutex<Option<String>>,
    /// Changed files read as keys.
    reloads: AtomicU64,
}

impl KeyFile {
    /// Re-reads the key when the file changed (replaced by rename, rewritten
    /// in place, a Kubernetes `..data` swap: all change the fingerprint taken
    /// through symlinks). A file that does not read as a key (half-written,
    /// removed, garbage) leaves the current key in use and is tried again at
    /// the next signature. One `stat` per signature, not per request.
    fn follow(&self, key: &ArcSwap<PrivateKey>) -> KeyFileCheck {
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| Fingerprint::of(&m));
        let mut stamp = self.stamp.lock();
        if now == *stamp {
            return KeyFileCheck::Unchanged;
        }
        let read = crate::inspect::read_key_file(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|pem| PrivateKey::from_pem(&pem).map_err(|e| e.to_string()));
        match read {
            Ok(new) => {
                *stamp = now;
                *self.problem.lock() = None;
                let kid = new.kid().clone();
                key.store(Arc::new(new));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                KeyFileCheck::Reloaded { kid, new_kid: true }
            }
            Err(problem) => {
                let problem = format!(
                    "{}: {problem}; still signing with the previous key",
                    self.path.display()
                );
                *self.problem.lock() = Some(problem.clone());
                KeyFileCheck::Refused(problem)
            }
        }
    }
}

/// Builds a [`Signer`]; every check happens in [`SignerBuilder::build`], so a
/// bad key or lifetime fails at start-up, not at the first request.
pub struct SignerBuilder {
    app_id: String,
    key: Option<KeySource>,
    ttl: u64,
    max_lifetime: u64,
    audience: Option<String>,
    app_as_issuer: bool,
    extra: Map<String, Value>,
    clock: Arc<dyn Clock>,
}

enum KeySource {
    File(PathBuf),
    Pem(Vec<u8>),
}

impl SignerBuilder {
    /// Reads the private key (PKCS#8 or PKCS#1 PEM) from `path`.
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key = Some(KeySource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Uses a private key (PKCS#8 or PKCS#1 PEM) given as bytes.
    pub fn key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(KeySource::Pem(pem.into()));
        self
    }

    /// Token lifetime in seconds (default 300).
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = secs;
        self
    }

    /// The longest token lifetime the server accepts (its
    /// `--max-token-lifetime`; default [`SERVER_MAX_LIFETIME`]). The lifetime
    /// asked for with [`SignerBuilder::ttl`], plus the `iat` backdating, must
    /// fit within it.
    pub fn max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime = secs;
        self
    }

    /// Puts `aud` in every token, for servers configured with an audience.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }

    /// Also names the app as the token's issuer and subject (`iss` and `sub`
    /// = the appId), so a JWT gateway configured per issuer (Envoy's
    /// `jwt_authn`, Istio's `RequestAuthentication`) can verify appauth
    /// tokens. appauth's own server reads only `appId`.
    pub fn app_as_issuer(mut self, on: bool) -> Self {
        self.app_as_issuer = on;
        self
    }

    /// Adds a claim to every token. `appId`, `iat`, `exp`, `jti`, `aud` and
    /// `nbf` are the signer's own and refused at build time.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Uses another clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks everything and builds the signer.
    pub fn build(self) -> Result<Signer, Error> {
        let app_id = AppId::new(&self.app_id).map_err(Error::InvalidAppId)?;
        let max = self.max_lifetime.saturating_sub(IAT_BACKDATE);
        if self.ttl == 0 || self.ttl > max {
            return Err(Error::InvalidTtl {
                ttl: self.ttl,
                max,
                backdate: IAT_BACKDATE,
                server_max: self.max_lifetime,
            });
        }
        let sub = self.app_as_issuer.then_some("sub");
        if let Some(reserved) = ["appId", "iat", "exp", "jti", "aud", "nbf", "iss"]
            .into_iter()
            .chain(sub)
            .find(|r| self.extra.contains_key(*r))
        {
            return Err(Error::ReservedClaim(reserved.into()));
        }
        let mut file = None;
        let key = match self.key.ok_or(Error::NoKey)? {
            KeySource::File(path) => {
                // Absolute now, so a later chdir cannot change which file is
                // followed.
                let path = std::path::absolute(&path).unwrap_or(path);
                let stamp = std::fs::metadata(&path).ok().map(|m| Fingerprint::of(&m));
                // Capped: `--key /dev/zero` must fail, not fill the memory.
                let pem = crate::inspect::read_key_file(&path).map_err(|e| Error::ReadKey {
                    path: path.clone(),
                    source: match e {
                        crate::inspect::KeysError::Read { source, .. } => source,
                        other => std::io::Error::other(other.to_string()),
                    },
                })?;
                let key = PrivateKey::from_pem(&pem).map_err(|source| Error::BadKey {
                    path: Some(path.clone()),
                    source,
                })?;
                file = Some(KeyFile {
                    path,
                    stamp: parking_lot::Mutex::new(stamp),
                    problem: parking_lot::Mutex::new(None),
                    reloads: AtomicU64::new(0),
                });
                key
            }
            KeySource::Pem(pem) => {
                PrivateKey::from_pem(&pem).map_err(|source| Error::BadKey { path: None, source })?
            }
        };
        let mut extra = self.extra;
        if self.app_as_issuer {
            extra.insert("sub".into(), app_id.to_string().into());
        }
        Ok(Signer {
            app_id,
            key: ArcSwap::from_pointee(key),
            file,
            ttl: self.ttl,
            audience: self.audience,
            app_as_issuer: self.app_as_issuer,
            extra,
            clock: self.clock,
            cached: ArcSwapOption::empty(),
            refreshing: parking_lot::Mutex::new(()),
            signatures: AtomicU64::new(0),
        })
    }
}
