//! The appauth key generator: makes, rotates, retires and inspects the RSA
//! keypairs that build pipelines hand to applications (docs/spec.md §9).
//!
//! ```
//! use appauth_keygen::{generate, KeyDirs, Existing, Status};
//! use appauth_core::AppId;
//!
//! let dir = tempfile::tempdir()?;
//! let dirs = KeyDirs::single(dir.path());
//! let apps = [AppId::new("billing")?];
//! let out = generate(&apps, 2048, &dirs, Existing::Refuse)?;
//! assert_eq!(out[0].status, Status::Created);
//! // A second run never overwrites: it fails, or skips with Existing::Skip.
//! assert!(generate(&apps, 2048, &dirs, Existing::Refuse).is_err());
//! assert_eq!(generate(&apps, 2048, &dirs, Existing::Skip)?[0].status, Status::Skipped);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod inspect;
mod keygen;
mod lock;
mod write;

pub use error::Error;
pub use inspect::{Inspection, KeyInfo, inspect, jwks_of_dir, jwks_of_files};
pub use keygen::{
    AppFailure, Existing, KeyDirs, Outcome, Status, generate, random_app_id, retire, rotate,
};
pub use write::{PRIVATE_MODE, PUBLIC_MODE, Replace, write_atomic};
