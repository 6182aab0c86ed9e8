//! Looking inside a token, as `appauth-token inspect` does: its header and
//! claims (decoded, untrusted), its times in words, and, given the app's
//! keys, the server's own verdict from the same [`Verifier`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appauth_core::files::{KeyFileName, classify_file_name};
use appauth_core::{AppId, PrivateKey, PublicKey, Verifier, parse_public_bundle};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub use appauth_core::files::MAX_KEY_FILE_BYTES;

/// Why the keys to check a token against could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The file or directory cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Over [`MAX_KEY_FILE_BYTES`].
    #[error("{} is over the {MAX_KEY_FILE_BYTES}-byte limit for a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Neither a public key bundle nor a private key.
    #[error("{} holds no usable key: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: appauth_core::Error,
    },
}

/// Reads at most [`MAX_KEY_FILE_BYTES`] of `path`.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, KeysError> {
    appauth_core::files::read_key_file(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::FileTooLarge => KeysError::TooLarge {
            path: path.to_path_buf(),
        },
        _ => KeysError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The keys in `path`: a public key bundle, or a private key (its public
/// half), as `now` sees certificates.
pub fn keys_from_file(path: &Path, now: i64) -> Result<Arc<[PublicKey]>, KeysError> {
    let bytes = read_key_file(path)?;
    let bad = |source| KeysError::BadKey {
        path: path.to_path_buf(),
        source,
    };
    match parse_public_bundle(&bytes, now, &[appauth_core::Algorithm::RS512]) {
        Ok(keys) => Ok(keys.into()),
        Err(public_err) => {
            let Ok(private) = PrivateKey::from_pem(&bytes) else {
                return Err(bad(public_err));
            };
            let pem = private.public_key_pem().map_err(bad)?;
            parse_public_bundle(pem.as_bytes(), now, &[appauth_core::Algorithm::RS512])
                .map(Into::into)
                .map_err(bad)
        }
    }
}

/// The keys of `app` in a keys directory: the file whose name says it is
/// `<app>_public.pem`. The directory is listed and names are matched; the
/// appId a token claims is never joined into a path.
pub fn keys_from_dir(
    dir: &Path,
    app: &AppId,
    now: i64,
) -> Result<Option<Arc<[PublicKey]>>, KeysError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KeysError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let KeyFileName::Public(found) = classify_file_name(name)
            && found == *app
        {
            return keys_from_file(&entry.path(), now).map(Some);
        }
    }
    Ok(None)
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeysFrom {
    /// Not checked: the token is only decoded.
    Nowhere,
    /// One file, public or private, taken as the token's app's keys.
    File(PathBuf),
    /// A keys directory, as the server reads it.
    Dir(PathBuf),
}

/// The verdict on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It verifies: signed by this key, and every rule holds.
    Verified {
        /// The key that verified it.
        kid: String,
    },
    /// It does not: the server would answer with this reason.
    Refused {
        /// The reason code (`expired`, `bad_signature`, ...).
        reason: &'static str,
        /// What exactly, as the server would log it.
        detail: String,
    },
    /// No keys were given, so only the contents are shown.
    NotChecked,
}

/// What `inspect` found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The header, decoded, untrusted (`null` when it does not decode).
    pub header: Value,
    /// The claims, decoded, untrusted (`null` when they do not decode).
    pub claims: Value,
    /// The verdict.
    pub verdict: Verdict,
    /// The clock the verdict was given at.
    pub now: i64,
}

fn decode_part(part: Option<&str>) -> Value {
    part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// Decodes `token` and, with keys, verifies it with `verifier` exactly as
/// the server would (steps 1-7 of docs/spec.md §3).
pub fn inspect(token: &str, keys: &KeysFrom, verifier: &Verifier) -> Result<Inspection, KeysError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let header = decode_part(parts.next());
    let claims = decode_part(parts.next());
    let now = verifier.clock().now();
    let app = claims
        .get("appId")
        .and_then(Value::as_str)
        .and_then(|a| AppId::new(a).ok());
    let provider: Option<HashMap<AppId, Arc<[PublicKey]>>> = match (keys, &app) {
        (KeysFrom::Nowhere, _) => None,
        (KeysFrom::File(path), app) => {
            let keys = keys_from_file(path, now)?;
            // Offered for the app the token claims: the signature decides.
            Some(app.iter().map(|a| (a.clone(), keys.clone())).collect())
        }
        (KeysFrom::Dir(dir), Some(app)) => Some(
            keys_from_dir(dir, app, now)?
                .map(|k| (app.clone(), k))
                .into_iter()
                .collect(),
        ),
        (KeysFrom::Dir(_), None) => Some(HashMap::new()),
    };
    let verdict = match provider {
        None => Verdict::NotChecked,
        Some(keys) => match verifier.verify(token, &keys) {
            Ok(v) => Verdict::Verified {
                kid: v.kid.to_string(),
            },
            Err(e) => Verdict::Refused {
                reason: e.reason().as_str(),
                detail: e.to_string(),
            },
        },
    };
    Ok(Inspection {
        header,
        claims,
        verdict,
        now,
    })
}

/// JSON text with every invisible formatting character escaped as `\uXXXX`
/// (JSON's own escape, so the line stays valid JSON): serde_json escapes the
/// control characters, but would print a bidirectional override (U+202E)
/// raw, and a terminal would then show a claim reordered.
fn visible(json: String) -> String {
    let invisible = |c: char| {
        matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
    };
    if !json.chars().any(invisible) {
        return json;
    }
    json.chars()
        .map(|c| {
            if invisible(c) {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `t` relative to `now`, in words: `in 4 min 10 s`, `3 h 2 min ago`.
pub fn in_words(t: i64, now: i64) -> String {
    let d = t.abs_diff(now);
    let amount = match d {
        0 => return "now".into(),
        1..60 => format!("{d} s"),
        60..3600 => format!("{} min {} s", d / 60, d % 60),
        3600..86_400 => format!("{} h {} min", d / 3600, d % 3600 / 60),
        _ => format!("{} d {} h", d / 86_400, d % 86_400 / 3600),
    };
    if t > now {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn time(claims: &Value, name: &str, now: i64) -> Value {
    match claims.get(name).and_then(Value::as_i64) {
        Some(t) => json!({
            "at": t,
            "rfc3339": jiff::Timestamp::from_second(t).map(|ts| ts.to_string()).unwrap_or_default(),
            "words": in_words(t, now),
        }),
        None => Value::Null,
    }
}

impl Inspection {
    /// The exit status `appauth-token inspect` gives: 0 only when the token
    /// verifies, 1 when it is refused, 2 when it is not a token at all (its
    /// header or claims do not decode: unusable input, as for the other
    /// commands), 3 when it was not checked.
    pub fn exit_code(&self) -> u8 {
        if self.header.is_null() || self.claims.is_null() {
            return 2;
        }
        match self.verdict {
            Verdict::Verified { .. } => 0,
            Verdict::Refused { .. } => 1,
            Verdict::NotChecked => 3,
        }
    }

    /// As one JSON object.
    pub fn to_json(&self) -> Value {
        let verdict = match &self.verdict {
            Verdict::Verified { kid } => json!({ "status": "verified", "kid": kid }),
            Verdict::Refused { reason, detail } => {
                json!({ "status": "refused", "reason": reason, "detail": detail })
            }
            Verdict::NotChecked => json!({ "status": "not_checked" }),
        };
        json!({
            "header": self.header,
            "claims": self.claims,
            "issued": time(&self.claims, "iat", self.now),
            "expires": time(&self.claims, "exp", self.now),
            "verdict": verdict,
        })
    }

    /// As lines for a person.
    pub fn to_text(&self) -> String {
        let j = self.to_json();
        let mut out = String::new();
        let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<9}{v}\n"));
        line(&mut out, "header", visible(self.header.to_string()));
        line(&mut out, "claims", visible(self.claims.to_string()));
        for (key, label) in [("issued", "issued"), ("expires", "expires")] {
            let t = &j[key];
            if !t.is_null() {
                line(
                    &mut out,
                    label,
                    format!(
                        "{} ({})",
                        t["rfc3339"].as_str().unwrap_or("?"),
                        t["words"].as_str().unwrap_or("?")
                    ),
                );
            }
        }
        let verdict = match &self.verdict {
            Verdict::Verified { kid } => format!("verified: signed by kid {kid}; every rule holds"),
            Verdict::Refused { reason, detail } => format!("REFUSED: {reason} ({detail})"),
            Verdict::NotChecked => {
                "not checked: give --key FILE or --keys-dir DIR to verify it".to_owned()
            }
        };
        line(&mut out, "verdict", verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_escaped_and_the_line_stays_json() {
        let claims = json!({ "appId": "a", "note": "abc\u{202E}fed\u{200B}" });
        let text = visible(claims.to_string());
        assert!(
            !text.contains('\u{202E}') && !text.contains('\u{200B}'),
            "{text}"
        );
        assert!(
            text.contains(r"\u202e") && text.contains(r"\u200b"),
            "{text}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, claims);
        // Nothing to escape: the text as it was.
        assert_eq!(visible(r#"{"a":"b"}"#.into()), r#"{"a":"b"}"#);
    }

    #[test]
    fn times_read_as_words() {
        assert_eq!(in_words(1000, 1000), "now");
        assert_eq!(in_words(1250, 1000), "in 4 min 10 s");
        assert_eq!(in_words(1000 - 7320, 1000), "2 h 2 min ago");
        assert_eq!(in_words(1000 + 90_000, 1000), "in 1 d 1 h");
    }
}
