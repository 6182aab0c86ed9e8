//! Key file naming: `<appId>_public.pem` and `<appId>_private.pem`.
//!
//! Names only ever go from an [`AppId`] to a file name, or from a directory
//! entry back to an `AppId`; an appId read from a token is never joined into a
//! path.

use crate::AppId;

/// Suffix of a public key bundle file.
pub const PUBLIC_SUFFIX: &str = "_public.pem";
/// Suffix of a private key file.
pub const PRIVATE_SUFFIX: &str = "_private.pem";

/// The directory, inside each directory `appauth-keygen` writes to, that holds
/// its locks and temporary files. A server reads no subdirectory of its keys
/// directory, so a temporary copy of a private key never sits where a server
/// loads keys from.
pub const KEYGEN_WORK_DIR: &str = ".appauth-keygen";

/// How keygen releases before the work directory named their temporary files,
/// in the target directory itself. Such a file may hold a whole private key.
pub const LEGACY_KEYGEN_TEMP_PREFIX: &str = ".appauth-keygen-";

/// The largest key file appauth reads, public bundle or private key: the
/// one cap the server, keygen and the client share, so that a key file
/// pointed at `/dev/zero` fails rather than fills the memory.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a key file, at most [`MAX_KEY_FILE_BYTES`] of it, in one open:
/// the cap is enforced on the bytes read, not on a size looked up before
/// (which a file swapped in between would escape). A longer file is an
/// error of kind [`std::io::ErrorKind::FileTooLarge`].
pub fn read_key_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("over the {MAX_KEY_FILE_BYTES}-byte limit for a key file"),
        ));
    }
    Ok(bytes)
}

/// `<appId>_public.pem`.
pub fn public_key_file_name(app: &AppId) -> String {
    format!("{app}{PUBLIC_SUFFIX}")
}

/// `<appId>_private.pem`.
pub fn private_key_file_name(app: &AppId) -> String {
    format!("{app}{PRIVATE_SUFFIX}")
}

/// PEM text with Unix line endings (the `pem` crate defaults to CRLF), so
/// the files appauth writes match what `openssl` writes.
pub fn encode_pem(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}

/// What a file name in a keys directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileName {
    /// `<appId>_public.pem` with a valid appId.
    Public(AppId),
    /// `<appId>_private.pem`: never belongs in a server's keys directory.
    Private(AppId),
    /// Ends like a key file but the appId part breaks the grammar.
    InvalidAppId(String),
    /// A temporary file an interrupted `appauth-keygen` of an older release
    /// left behind: it may hold a private key.
    KeygenLeftover,
    /// Anything else (README, revocation list, editor swap files...).
    Other,
}

/// Classifies a directory entry's file name.
pub fn classify_file_name(name: &str) -> KeyFileName {
    if name.starts_with(LEGACY_KEYGEN_TEMP_PREFIX) && name.ends_with(".tmp") {
        return KeyFileName::KeygenLeftover;
    }
    let (stem, public) = if let Some(stem) = name.strip_suffix(PUBLIC_SUFFIX) {
        (stem, true)
    } else if let Some(stem) = name.strip_suffix(PRIVATE_SUFFIX) {
        (stem, false)
    } else {
        return KeyFileName::Other;
    };
    // Kubernetes and editors leave dot-files around; they are never keys.
    if name.starts_with('.') {
        return KeyFileName::Other;
    }
    match AppId::new(stem) {
        Ok(app) if public => KeyFileName::Public(app),
        Ok(app) => KeyFileName::Private(app),
        Err(_) => KeyFileName::InvalidAppId(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_up_to_the_cap_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let at_cap = dir.path().join("at_cap");
        std::fs::write(&at_cap, vec![b'a'; MAX_KEY_FILE_BYTES as usize]).unwrap();
        assert_eq!(
            read_key_file(&at_cap).unwrap().len() as u64,
            MAX_KEY_FILE_BYTES
        );
        let over = dir.path().join("over");
        std::fs::write(&over, vec![b'a'; MAX_KEY_FILE_BYTES as usize + 1]).unwrap();
        let err = read_key_file(&over).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        // An endless file stops at the cap too.
        let endless = read_key_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(endless.kind(), std::io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn names_round_trip() {
        let app = AppId::new("billing-7").unwrap();
        assert_eq!(public_key_file_name(&app), "billing-7_public.pem");
        assert_eq!(private_key_file_name(&app), "billing-7_private.pem");
        assert_eq!(
            classify_file_name("billing-7_public.pem"),
            KeyFileName::Public(app.clone())
        );
        assert_eq!(
            classify_file_name("billing-7_private.pem"),
            KeyFileName::Private(app)
        );
    }

    #[test]
    fn other_files_are_ignored() {
        for name in [
            "README.md",
            "revoked.txt",
            "x_public.pem.swp",
            ".x_public.pem",
            "..data",
        ] {
            assert_eq!(classify_file_name(name), KeyFileName::Other, "{name}");
        }
        assert_eq!(
            classify_file_name(".appauth-keygen-Ab12.tmp"),
            KeyFileName::KeygenLeftover
        );
        assert!(matches!(
            classify_file_name("a b_public.pem"),
            KeyFileName::InvalidAppId(_)
        ));
        assert!(matches!(
            classify_file_name("_public.pem"),
            KeyFileName::InvalidAppId(_)
        ));
    }
}
