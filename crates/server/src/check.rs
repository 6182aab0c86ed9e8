//! `--check-config`: the server's files, read as the server would read
//! them, with every problem reported at once.

use crate::ServerConfig;

/// `--check-config`: reads the keys directory, policy and revocations
/// through the very builder the server starts ([`crate::gate_builder`]),
/// and reports every problem. `Ok` holds a summary.
pub fn check_config(config: &ServerConfig) -> Result<String, Vec<String>> {
    let checked = crate::gate_builder(config).check()?;
    Ok(format!(
        "ok: {} app key file(s), policy {}, revocations {}, traces {}",
        checked.apps,
        checked
            .policy
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        checked.revocations.display(),
        config.traces.describe()
    ))
}
