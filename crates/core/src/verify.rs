//! The verification rules of docs/spec.md §3, steps 1-7, as plain code.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dangerous::{self, TimeClaims};
use crate::{Algorithm, AppId, Claims, Clock, Kid, PublicKey, Rejection, SystemClock};

/// Where the verifier finds an app's keys. The server's watched directory is
/// one implementation; a `HashMap` is another, for tests and embedding.
pub trait KeyProvider {
    /// The keys of `app`, or `None` when the app is unknown. Must not touch
    /// the disk: it runs on the request path.
    fn keys_for(&self, app: &AppId) -> Option<Arc<[PublicKey]>>;

    /// The app named `app` (already checked against the appId grammar) and
    /// its keys. A provider that stores its `AppId`s answers with a clone of
    /// its own, which the verifier hands to the caller, so a cold request
    /// copies no appId; this default builds a new one.
    fn app_keys(&self, app: &str) -> Option<(AppId, Arc<[PublicKey]>)> {
        let app = AppId::new(app).ok()?;
        self.keys_for(&app).map(|keys| (app, keys))
    }

    /// Whether `app` currently has the key `kid`, valid at `now`. Used to
    /// re-check a cached verification; implementations may answer without
    /// cloning the bundle.
    fn has_key(&self, app: &AppId, kid: &Kid, now: i64) -> bool {
        self.keys_for(app)
            .is_some_and(|keys| bundle_has_key(&keys, kid, now))
    }
}

/// Whether `keys` holds the key `kid`, valid at `now` (a certificate's key
/// stops being valid at its `notAfter`).
pub fn bundle_has_key(keys: &[PublicKey], kid: &Kid, now: i64) -> bool {
    keys.iter()
        .any(|k| k.kid() == kid && k.not_after().is_none_or(|t| now <= t))
}

impl<S: std::hash::BuildHasher> KeyProvider for HashMap<AppId, Arc<[PublicKey]>, S> {
    fn keys_for(&self, app: &AppId) -> Option<Arc<[PublicKey]>> {
        self.get(app).cloned()
    }

    fn app_keys(&self, app: &str) -> Option<(AppId, Arc<[PublicKey]>)> {
        self.get_key_value(app)
            .map(|(app, keys)| (app.clone(), keys.clone()))
    }
}

/// Default clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY: u64 = 30;
/// Default longest accepted token lifetime (`exp - iat`), in seconds.
pub const DEFAULT_MAX_LIFETIME: u64 = 3600;

/// What the verifier checks besides the signature.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Algorithms accepted in the `alg` header. Default: `[RS512]`. Only RSA
    /// algorithms exist in [`Algorithm`], so `none`, `HS*` and `ES*` cannot be
    /// allowed. Keys are prepared for exactly these algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default: 30.
    pub leeway: u64,
    /// Longest accepted `exp - iat`, in seconds. Default: 3600. Bounds the
    /// damage of a leaked token.
    pub max_lifetime: u64,
    /// When set, `aud` must name this audience. Default: none (`aud` is not
    /// checked, so a token minted for another service is accepted: set it
    /// when several services share caller keys).
    pub audience: Option<String>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            algorithms: vec![Algorithm::RS512],
            leeway: DEFAULT_LEEWAY,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            audience: None,
        }
    }
}

/// A caller whose token verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The calling application.
    pub app_id: AppId,
    /// The key that verified the signature.
    pub kid: Kid,
    /// The algorithm it was signed with.
    pub alg: Algorithm,
    /// All claims, including unknown ones.
    pub claims: Claims,
}

/// Verifies appauth tokens.
///
/// ```
/// use std::collections::HashMap;
/// use appauth_core::{Verifier, VerifyConfig, Reason};
///
/// let verifier = Verifier::new(VerifyConfig::default());
/// let keys = HashMap::new();
/// let err = verifier.verify("not-a-token", &keys).unwrap_err();
/// assert_eq!(err.reason(), Reason::Malformed);
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifyConfig,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier on the system clock.
    pub fn new(config: VerifyConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A verifier on a given clock.
    pub fn with_clock(config: VerifyConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock }
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs steps 1-7 of docs/spec.md §3, in order. Everything before the
    /// signature check is cheap, so junk, an unknown app, an expired or
    /// over-long token never costs an RSA operation.
    pub fn verify(
        &self,
        token: &str,
        keys: &(impl KeyProvider + ?Sized),
    ) -> Result<Verified, Rejection> {
        self.verify_bytes(token.as_bytes(), keys)
    }

    /// [`Verifier::verify`] of a token as a request header's bytes, not yet
    /// checked as text: one that is not UTF-8 is refused as
    /// [`Rejection::NotThreeParts`], like any other text that is not three
    /// base64url parts. An adapter hands the header's value here as it is.
    pub fn verify_bytes(
        &self,
        token: &[u8],
        keys: &(impl KeyProvider + ?Sized),
    ) -> Result<Verified, Rejection> {
        // 1. Shape, then every part decoded before any is read.
        let mut buffers = dangerous::PartBuffers::new();
        let dangerous::DecodedToken {
            signing_input,
            header: header_json,
            payload: payload_json,
            signature,
        } = dangerous::decode(token, &mut buffers)?;

        // 2. Header and algorithm.
        let header = dangerous::header(header_json)?;
        if header.crit {
            return Err(Rejection::CriticalHeader);
        }
        let alg = Algorithm::from_header(&header.alg)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or_else(|| Rejection::UnsupportedAlgorithm {
                alg: dangerous::printable(&header.alg, 16),
            })?;
        let kid = header.kid;

        // 3. appId, from claims not yet trusted.
        let claims = dangerous::claims(payload_json)?;
        if !crate::is_valid_app_id(claims.app_id()) {
            return Err(Rejection::InvalidAppId);
        }

        // 4. The app's keys, from memory.
        let (app_id, app_keys) =
            keys.app_keys(claims.app_id())
                .ok_or_else(|| Rejection::UnknownApp {
                    app_id: claims.app_id().to_owned(),
                })?;

        // 5. With a kid, only that key; without, every key of the bundle.
        let wanted = |k: &&PublicKey| kid.as_deref().is_none_or(|kid| k.kid().as_str() == kid);
        if let Some(kid) = &kid
            && !app_keys.iter().any(|k| wanted(&k))
        {
            return Err(Rejection::UnknownKid {
                app_id: app_id.to_string(),
                kid: dangerous::printable(kid, 64),
            });
        }

        // 6. Time and audience, then the signature. The claims are not yet
        // trusted, but a token they condemn is refused whatever its
        // signature says, so replaying an expired token costs no RSA.
        let now = self.clock.now();
        self.check_claims(&claims, now)?;
        let signer = app_keys
            .iter()
            .filter(wanted)
            .find(|k| k.verify(alg, signing_input, signature, now))
            .ok_or_else(|| Rejection::BadSignature {
                app_id: app_id.to_string(),
            })?;

        Ok(Verified {
            app_id,
            kid: signer.kid().clone(),
            alg,
            claims: claims.into_claims(),
        })
    }

    /// Re-checks a token that verified earlier (a cache hit): the key that
    /// verified it is still one of the app's keys, in date, and the time and
    /// audience rules still hold at `now`. Cheap: no RSA, no allocation on
    /// success.
    pub fn reverify(
        &self,
        verified: &Verified,
        keys: &(impl KeyProvider + ?Sized),
        now: i64,
    ) -> Result<(), Rejection> {
        if !keys.has_key(&verified.app_id, &verified.kid, now) {
            return Err(Rejection::BadSignature {
                app_id: verified.app_id.to_string(),
            });
        }
        self.check_claims(&verified.claims, now)
    }

    /// The time and audience rules of step 6, run before the signature.
    fn check_claims(&self, claims: &impl TimeClaims, now: i64) -> Result<(), Rejection> {
        let app_id = || claims.app_id().to_owned();
        let (iat, exp) = (claims.iat(), claims.exp());
        let leeway = i64::try_from(self.config.leeway).unwrap_or(i64::MAX);
        if iat > exp {
            return Err(Rejection::IssuedAfterExpiry {
                app_id: app_id(),
                iat,
                exp,
            });
        }
        if now >= exp.saturating_add(leeway) {
            return Err(Rejection::Expired {
                app_id: app_id(),
                exp,
                now,
            });
        }
        if let Some(nbf) = claims.nbf()
            && nbf > now.saturating_add(leeway)
        {
            return Err(Rejection::NotYetValid {
                app_id: app_id(),
                nbf,
                now,
            });
        }
        if iat > now.saturating_add(leeway) {
            return Err(Rejection::IssuedInFuture {
                app_id: app_id(),
                iat,
                now,
            });
        }
        let lifetime = exp.saturating_sub(iat);
        if u64::try_from(lifetime).is_ok_and(|l| l > self.config.max_lifetime) {
            return Err(Rejection::LifetimeTooLong {
                app_id: app_id(),
                lifetime,
                max: self.config.max_lifetime,
            });
        }
        if let Some(expected) = &self.config.audience
            && !claims.names_audience(expected)
        {
            return Err(Rejection::WrongAudience {
                app_id: app_id(),
                expected: expected.clone(),
            });
        }
        Ok(())
    }
}
