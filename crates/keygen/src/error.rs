//! Everything the keygen tool can refuse, each with what to do about it.

use std::path::PathBuf;

/// A keygen failure. Nothing is written or changed when one is returned,
/// unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An appId that breaks the grammar.
    #[error(transparent)]
    InvalidAppId(appauth_core::Error),

    /// `new` with neither appIds nor `--generate-id`.
    #[error("no appId given: name one or more apps, or use --generate-id N")]
    NoAppIds,

    /// The same appId given twice.
    #[error("appId {0} is given more than once")]
    DuplicateAppId(String),

    /// Key files that `new` would overwrite.
    #[error(
        "refusing to overwrite existing key file(s): {}; pass --if-missing to skip apps that \
         already have keys, or --force to replace them",
        list(.paths)
    )]
    AlreadyExists {
        /// The files that exist.
        paths: Vec<PathBuf>,
    },

    /// One half of a keypair exists and the other does not.
    #[error(
        "app {app_id} has {} but not {}: {}",
        existing.display(),
        missing.display(),
        if *repairable {
            "pass --repair to write the public key from the private key (a run was probably \
             killed between the two writes)".to_owned()
        } else {
            format!("restore the private key, or make a new pair for this app alone with \
                     `appauth-keygen new {app_id} --force`")
        }
    )]
    HalfPair {
        /// The app.
        app_id: String,
        /// The file that exists.
        existing: PathBuf,
        /// The file that does not.
        missing: PathBuf,
        /// Whether `--repair` can make the missing half (it can make a public
        /// key from a private key, not the other way round).
        repairable: bool,
    },

    /// Both files exist, but the bundle lacks the private key's public key:
    /// the app's tokens would not verify.
    #[error(
        "app {app_id}: {} holds no key with kid {kid}, the key of {}; restore the matching \
         pair, or make a new pair for this app alone with `appauth-keygen new {app_id} --force`",
        public.display(),
        private.display()
    )]
    PairMismatch {
        /// The app.
        app_id: String,
        /// The private key file.
        private: PathBuf,
        /// The bundle.
        public: PathBuf,
        /// The private key's kid.
        kid: String,
    },

    /// `rotate` would set the old private key aside where a different file is.
    #[error(
        "{} exists and is not the key with kid {kid}; move it away and run rotate again",
        path.display()
    )]
    AsideTaken {
        /// The file in the way.
        path: PathBuf,
        /// The kid of the key to set aside.
        kid: String,
    },

    /// The keys directory could not be locked.
    #[error("cannot lock {}: {source}; check that the directory exists and is readable", path.display())]
    Lock {
        /// The public keys directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Some apps of a run failed after others were made.
    #[error(
        "{} app(s) failed ({}); {} made: {}",
        failures.len(),
        failures.iter().map(|f| format!("{}: {}", f.app_id, f.error)).collect::<Vec<_>>().join("; "),
        done.len(),
        done.iter().map(|o| o.app_id.to_string()).collect::<Vec<_>>().join(", ")
    )]
    SomeFailed {
        /// What was made.
        done: Vec<crate::Outcome>,
        /// What was not, and why.
        failures: Vec<crate::AppFailure>,
    },

    /// A directory that cannot be created.
    #[error("cannot create directory {}: {source}; check the path and its permissions", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A file that cannot be written.
    #[error("cannot write {}: {source}; check that the directory is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A file that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A key file whose contents are not a usable key.
    #[error("{}: {source}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: appauth_core::Error,
    },

    /// Key generation failed in the crypto library.
    #[error("key generation failed: {0}")]
    Generate(#[source] appauth_core::Error),

    /// `retire --kid` with a kid the bundle does not hold.
    #[error("{} holds no key with kid {kid}; it holds: {}", path.display(), present.join(", "))]
    UnknownKid {
        /// The bundle.
        path: PathBuf,
        /// The kid asked for.
        kid: String,
        /// The kids it does hold.
        present: Vec<String>,
    },

    /// A `--kid` that is not shaped like an RFC 7638 thumbprint.
    #[error(
        "\"{0}\" is not a key id (43 base64url characters, as `appauth-keygen inspect` prints)"
    )]
    MalformedKid(String),

    /// `retire` of the only key in a bundle.
    #[error(
        "{} holds only this key; retiring it would lock the app out. To revoke the app, \
         delete the file instead",
        path.display()
    )]
    LastKey {
        /// The bundle.
        path: PathBuf,
    },

    /// `retire` of the newest key when no private key says which is current.
    #[error(
        "kid {kid} is the newest key of the bundle, and no private key was found to tell \
         otherwise (looked at {}); the newest key is the one `rotate` made last, so it is taken \
         as the current one. Pass --private-dir (or --private-subdirs) to point at the private \
         key, or --force if you are sure",
        list(looked)
    )]
    RetiringNewestKey {
        /// The kid.
        kid: String,
        /// Where the private key was looked for.
        looked: Vec<PathBuf>,
    },

    /// `retire` of the key the app currently signs with.
    #[error(
        "kid {kid} belongs to the current private key {}; rotate first (appauth-keygen rotate), \
         ship the new private key, then retire the old kid, or pass --force",
        private.display()
    )]
    RetiringCurrentKey {
        /// The kid.
        kid: String,
        /// The private key file that holds it.
        private: PathBuf,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
