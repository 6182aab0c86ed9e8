//! `--check-config`: the server's files, read as the server would read
//! them, with every problem reported at once.

use std::sync::Arc;

use appauth_core::SystemClock;

use crate::access::AccessControl;
use crate::{Metrics, ServerConfig};

/// `--check-config`: reads the keys directory, policy and revocations the
/// way the server would and reports every problem. `Ok` holds a summary.
pub fn check_config(config: &ServerConfig) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let mut apps = 0;
    match std::fs::read_dir(&config.keys_dir) {
        Err(e) => problems.push(format!("keys directory {}: {e}", config.keys_dir.display())),
        Ok(entries) => {
            let now = appauth_core::Clock::now(&SystemClock);
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                use appauth_core::files::{KeyFileName, classify_file_name};
                let path = config.keys_dir.join(&name);
                match classify_file_name(&name) {
                    KeyFileName::Public(_) => {
                        let parsed =
                            std::fs::read(&path)
                                .map_err(|e| e.to_string())
                                .and_then(|b| {
                                    appauth_core::parse_public_bundle(
                                        &b,
                                        now,
                                        &config.verify.algorithms,
                                    )
                                    .map_err(|e| e.to_string())
                                });
                        match parsed {
                            Ok(_) => apps += 1,
                            Err(e) => problems.push(format!("{}: {e}", path.display())),
                        }
                    }
                    KeyFileName::Private(_) => problems.push(format!(
                        "{}: a private key does not belong in the server's keys directory",
                        path.display()
                    )),
                    KeyFileName::InvalidAppId(_) => problems.push(format!(
                        "{}: the name is not <appId>_public.pem with a valid appId",
                        path.display()
                    )),
                    KeyFileName::Other => {}
                }
            }
        }
    }
    let metrics = Arc::new(Metrics::new());
    if let Err(errors) =
        AccessControl::load(config.policy.clone(), config.revocations_path(), metrics)
    {
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
