//! `--check-config`: the server's files, read as the server would read
//! them, with every problem reported at once.

use std::sync::Arc;

use appauth_core::SystemClock;

use appauth_actix::{AccessControl, KeyStore};

use crate::ServerConfig;

/// `--check-config`: reads the keys directory, policy and revocations the
/// way the server would and reports every problem. `Ok` holds a summary.
pub fn check_config(config: &ServerConfig) -> Result<String, Vec<String>> {
    // The key directory is read by the store the server itself uses.
    let store = KeyStore::new(
        &config.keys_dir,
        config.verify.algorithms.clone(),
        Arc::new(SystemClock),
    );
    let (mut problems, apps) = match store.full_scan() {
        Ok(mut report) => {
            report.problems.sort();
            (report.problems, store.app_count())
        }
        Err(e) => (
            vec![format!("keys directory {}: {e}", config.keys_dir.display())],
            0,
        ),
    };
    if let Err(errors) = AccessControl::load(config.policy.clone(), config.revocations_path()) {
        problems.extend(errors.iter().map(ToString::to_string));
    }
    if problems.is_empty() {
        Ok(format!(
            "ok: {apps} app key file(s), policy {}, revocations {}",
            config
                .policy
                .as_ref()
                .map_or("none".into(), |p| p.display().to_string()),
            config.revocations_path().display()
        ))
    } else {
        Err(problems)
    }
}
