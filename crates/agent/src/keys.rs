//! The signing key: a [`Signer`] on the key file, or none yet.

use std::path::PathBuf;
use std::sync::Arc;

use appauth_client::{KeyFileCheck, Signer};
use arc_swap::ArcSwapOption;

use crate::Metrics;

/// What every signer the agent builds is built from.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// The app the tokens speak for.
    pub app_id: String,
    /// The private key file (PKCS#8 or PKCS#1 PEM), followed.
    pub key: PathBuf,
    /// Token lifetime in seconds.
    pub ttl: u64,
    /// The `aud` claim, for servers configured with an audience.
    pub audience: Option<String>,
    /// The server's maximum token lifetime, which `ttl` must fit in.
    pub max_lifetime: u64,
}

impl KeySettings {
    fn build(&self) -> Result<Signer, appauth_client::Error> {
        let mut builder = Signer::builder(&self.app_id)
            .key_file(&self.key)
            .ttl(self.ttl)
            .max_lifetime(self.max_lifetime);
        if let Some(aud) = &self.audience {
            builder = builder.audience(aud);
        }
        builder.build()
    }
}

/// The agent's key: a signer once a usable key has been read, `None` before.
/// Requests made while there is none are answered 503, never forwarded.
#[derive(Debug)]
pub struct Keys {
    settings: KeySettings,
    signer: ArcSwapOption<Signer>,
    metrics: Metrics,
    /// The last problem logged, so a bad file is logged once, not each second.
    logged: parking_lot::Mutex<Option<String>>,
}

impl Keys {
    /// Reads the key. Without `wait`, a key that cannot be used is an error
    /// naming the file and the cause (the agent then exits non-zero). With
    /// `wait`, the agent starts keyless, answers 503 and is not ready until
    /// the file holds a usable key.
    pub fn load(
        settings: KeySettings,
        wait: bool,
        metrics: Metrics,
    ) -> Result<Arc<Self>, appauth_client::Error> {
        let signer = match settings.build() {
            Ok(signer) => Some(Arc::new(signer)),
            // A bad ttl or appId is a mistake in the flags, not a key that
            // has yet to arrive: never waited for.
            Err(
                e @ (appauth_client::Error::InvalidTtl { .. }
                | appauth_client::Error::InvalidAppId(_)),
            ) => return Err(e),
            Err(e) if wait => {
                tracing::warn!(error = %e, "no usable signing key yet; answering 503 until there is one");
                None
            }
            Err(e) => return Err(e),
        };
        let keys = Arc::new(Self {
            settings,
            signer: ArcSwapOption::new(signer),
            metrics,
            logged: parking_lot::Mutex::new(None),
        });
        if let Some(signer) = keys.signer() {
            keys.metrics.follow(signer.clone());
            tracing::info!(app_id = %signer.app_id(), kid = %signer.kid(), "signing key loaded");
        }
        Ok(keys)
    }

    /// The signer, when a usable key is held.
    pub fn signer(&self) -> Option<Arc<Signer>> {
        self.signer.load_full()
    }

    /// Whether a usable key is held (the agent's readiness).
    pub fn ready(&self) -> bool {
        self.signer.load().is_some()
    }

    /// A valid token, or `None` when no key is usable (logged once).
    pub fn token(&self) -> Option<Arc<str>> {
        let signer = self.signer()?;
        match signer.token() {
            Ok(token) => Some(token),
            Err(e) => {
                self.log_once(format!("cannot sign a token: {e}"));
                None
            }
        }
    }

    /// A fresh token after the upstream refused `rejected` as stale: many
    /// concurrent refusals cost one signature.
    pub fn refresh_after_rejection(&self, rejected: &str) -> Option<Arc<str>> {
        let signer = self.signer()?;
        let before = signer.signatures_made();
        match signer.refresh_after_rejection(rejected) {
            Ok(token) => {
                if signer.signatures_made() != before {
                    self.metrics.refreshed("rejected");
                }
                Some(token)
            }
            Err(e) => {
                self.log_once(format!("cannot sign a token: {e}"));
                None
            }
        }
    }

    /// Looks at the key file once: picks up a rotation (the cached token is
    /// dropped, so the next request carries the new `kid`), or the first
    /// usable key after a keyless start. Returns whether the key changed.
    pub fn check(&self) -> bool {
        let Some(signer) = self.signer() else {
            return match self.settings.build() {
                Ok(signer) => {
                    tracing::info!(app_id = %signer.app_id(), kid = %signer.kid(), "signing key loaded; ready");
                    let signer = Arc::new(signer);
                    self.metrics.follow(signer.clone());
                    self.signer.store(Some(signer));
                    *self.logged.lock() = None;
                    true
                }
                Err(e) => {
                    self.log_once(e.to_string());
                    false
                }
            };
        };
        match signer.reload_key_file() {
            KeyFileCheck::Reloaded { kid, new_kid } => {
                *self.logged.lock() = None;
                if new_kid {
                    self.metrics.refreshed("key_change");
                    tracing::info!(kid = %kid, "key file changed: signing with the new key");
                }
                new_kid
            }
            KeyFileCheck::Refused(problem) => {
                if self.log_once(problem) {
                    self.metrics.key_refused();
                }
                false
            }
            _ => false,
        }
    }

    /// Checks the key file every [`crate::KEY_CHECK_INTERVAL`], for as long
    /// as the process runs.
    pub async fn watch(self: Arc<Self>) {
        let mut every = tokio::time::interval(crate::KEY_CHECK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // A `stat`, and a read and parse only when the file changed.
            let keys = self.clone();
            let _ = tokio::task::spawn_blocking(move || keys.check()).await;
        }
    }

    /// Logs `problem` unless it is the one logged last; true when logged.
    fn log_once(&self, problem: String) -> bool {
        let mut logged = self.logged.lock();
        if logged.as_deref() == Some(&problem) {
            return false;
        }
        tracing::warn!(problem = %problem, "signing key problem");
        *logged = Some(problem);
        true
    }
}
