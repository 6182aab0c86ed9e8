//! `appauth-keygen`: the command line over the `appauth_keygen` library.

use std::path::PathBuf;
use std::process::ExitCode;

use appauth_core::AppId;
use appauth_keygen::{Existing, Inspection, KeyDirs, Outcome};
use clap::{Args, Parser, Subcommand};

/// Generate, rotate, retire and inspect appauth RSA keypairs.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true, env = "APPAUTH_KEYGEN_JSON")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a keypair for each app: <appId>_private.pem (PKCS#8, 0600) and <appId>_public.pem.
    New {
        /// The apps to make keys for.
        app_ids: Vec<String>,
        /// Make N fresh random appIds instead of naming them (1 to 10000 per run).
        #[arg(long, value_name = "N", conflicts_with = "app_ids",
              value_parser = clap::value_parser!(u16).range(1..=10_000))]
        generate_id: Option<u16>,
        #[command(flatten)]
        dirs: DirArgs,
        /// RSA modulus size.
        #[arg(long, default_value_t = 2048, value_parser = bits_parser())]
        bits: usize,
        /// Skip apps whose pair is already sound (exit 0): for re-runnable builds. A broken pair fails.
        #[arg(long, conflicts_with = "force")]
        if_missing: bool,
        /// Replace existing keys. The old keys are lost.
        #[arg(long, conflicts_with = "repair")]
        force: bool,
        /// As --if-missing, and where a private key has no public key (a run
        /// killed between the two writes), write the public key from it.
        #[arg(long)]
        repair: bool,
    },
    /// Add a new key to an app's bundle and replace its private key; the old
    /// private key is deleted (its public key stays in the bundle until retired).
    Rotate {
        /// The app.
        app_id: String,
        #[command(flatten)]
        dirs: DirArgs,
        /// RSA modulus size of the new key.
        #[arg(long, default_value_t = 2048, value_parser = bits_parser())]
        bits: usize,
        /// Keep the old private key in `<private dir>/retired/` instead of
        /// deleting it (it can still sign tokens the bundle accepts).
        #[arg(long)]
        keep_retired: bool,
    },
    /// Drop an old public key from an app's bundle.
    Retire {
        /// The app.
        app_id: String,
        /// The key id (RFC 7638 thumbprint) to drop, as `inspect` prints it.
        // base64url: a kid may start with '-', which is a value, not a flag.
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
        #[command(flatten)]
        dirs: DirArgs,
        /// Retire even the key of the current private key.
        #[arg(long)]
        force: bool,
        /// Keep a kept copy of the retired key's private half in
        /// `<private dir>/retired/` instead of deleting it.
        #[arg(long)]
        keep_retired: bool,
    },
    /// Print an RFC 7517 JWK Set (RS512, use sig, kid = RFC 7638 thumbprint)
    /// of the keys in FILES, or of each app in --keys-dir (by appId).
    Jwks {
        /// Public key bundles; their keys make one set.
        #[arg(required_unless_present = "keys_dir", conflicts_with = "keys_dir")]
        files: Vec<PathBuf>,
        /// A keys directory: one set per app, as {"<appId>": {"keys": [...]}}.
        #[arg(long)]
        keys_dir: Option<PathBuf>,
        /// With --keys-dir: only this app's set, as a plain JWK Set.
        #[arg(long, requires = "keys_dir")]
        app: Option<String>,
    },
    /// Print appId, bits, kid and format of each key in the files.
    Inspect {
        /// Key files (public bundles or private keys).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct DirArgs {
    /// Directory for both key files.
    #[arg(long, default_value = ".", env = "APPAUTH_KEYGEN_OUT_DIR")]
    out_dir: PathBuf,
    /// Directory for private keys (default: --out-dir).
    #[arg(long, env = "APPAUTH_KEYGEN_PRIVATE_DIR")]
    private_dir: Option<PathBuf>,
    /// Directory for public keys (default: --out-dir).
    #[arg(long, env = "APPAUTH_KEYGEN_PUBLIC_DIR")]
    public_dir: Option<PathBuf>,
    /// Put each private key in a subdirectory named after its app, so each
    /// app's deployment can mount only its own.
    #[arg(long)]
    private_subdirs: bool,
}

impl DirArgs {
    fn resolve(self) -> KeyDirs {
        KeyDirs {
            private: self.private_dir.unwrap_or_else(|| self.out_dir.clone()),
            public: self.public_dir.unwrap_or(self.out_dir),
            private_per_app: self.private_subdirs,
        }
    }
}

fn bits_parser() -> impl clap::builder::TypedValueParser<Value = usize> {
    |s: &str| match s.parse::<usize>() {
        Ok(bits) if appauth_core::GENERATED_KEY_BITS.contains(&bits) => Ok(bits),
        _ => Err(format!("unsupported key size {s}: use 2048, 3072 or 4096")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A pipeline reading --json learns what was made even when the
            // run as a whole failed.
            if json {
                let doc = match &e {
                    appauth_keygen::Error::SomeFailed { done, failures } => {
                        serde_json::json!({ "results": done, "errors": failures })
                    }
                    other => serde_json::json!({ "results": [], "error": other.to_string() }),
                };
                println!("{doc}");
            } else if let appauth_keygen::Error::SomeFailed { done, .. } = &e {
                print_outcomes(done, false);
            }
            eprintln!("appauth-keygen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), appauth_keygen::Error> {
    let json = cli.json;
    match cli.command {
        Command::New {
            app_ids,
            generate_id,
            dirs,
            bits,
            if_missing,
            force,
            repair,
        } => {
            let apps = match generate_id {
                Some(n) => (0..n).map(|_| appauth_keygen::random_app_id()).collect(),
                None => parse_apps(&app_ids)?,
            };
            let existing = match (repair, if_missing, force) {
                (true, _, _) => Existing::Repair,
                (_, true, _) => Existing::Skip,
                (_, _, true) => Existing::Replace,
                _ => Existing::Refuse,
            };
            let out = appauth_keygen::generate(&apps, bits, &dirs.resolve(), existing)?;
            print_outcomes(&out, json);
        }
        Command::Rotate {
            app_id,
            dirs,
            bits,
            keep_retired,
        } => {
            let app = parse_app(&app_id)?;
            let out = appauth_keygen::rotate(&app, bits, &dirs.resolve(), keep_retired)?;
            print_outcomes(&[out], json);
        }
        Command::Retire {
            app_id,
            kid,
            dirs,
            force,
            keep_retired,
        } => {
            let app = parse_app(&app_id)?;
            let out = appauth_keygen::retire(&app, &kid, &dirs.resolve(), force, keep_retired)?;
            print_outcomes(&[out], json);
        }
        Command::Jwks {
            files,
            keys_dir,
            app,
        } => {
            let set = match (keys_dir, app) {
                (Some(dir), Some(app)) => {
                    let app = parse_app(&app)?;
                    let sets = appauth_keygen::jwks_of_dir(&dir, Some(&app))?;
                    match sets.get(app.as_str()) {
                        Some(set) => set.clone(),
                        None => {
                            return Err(appauth_keygen::Error::Read {
                                path: dir.join(appauth_core::files::public_key_file_name(&app)),
                                source: std::io::Error::from(std::io::ErrorKind::NotFound),
                            });
                        }
                    }
                }
                (Some(dir), None) => appauth_keygen::jwks_of_dir(&dir, None)?,
                (None, _) => appauth_keygen::jwks_of_files(&files)?,
            };
            println!("{set:#}");
        }
        Command::Inspect { files } => {
            let found = files
                .iter()
                .map(|f| appauth_keygen::inspect(f))
                .collect::<Result<Vec<_>, _>>()?;
            print_inspections(&found, json);
        }
    }
    Ok(())
}

fn parse_app(s: &str) -> Result<AppId, appauth_keygen::Error> {
    AppId::new(s).map_err(appauth_keygen::Error::InvalidAppId)
}

fn parse_apps(ids: &[String]) -> Result<Vec<AppId>, appauth_keygen::Error> {
    ids.iter().map(|s| parse_app(s)).collect()
}

fn print_outcomes(out: &[Outcome], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "results": out }));
        return;
    }
    for o in out {
        let kid = o.kid.as_ref().map(|k| k.as_str()).unwrap_or("-");
        let status = serde_json::to_value(o.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{status:<8} {app}  kid={kid}  private={private}  public={public}",
            app = o.app_id,
            private = o.private_key.display(),
            public = o.public_key.display()
        );
        if o.resumed {
            println!("         finished the rotation an interrupted run had begun");
        }
        for path in &o.cleaned_up {
            eprintln!(
                "appauth-keygen: removed {}, left by an interrupted run",
                path.display()
            );
        }
        for path in &o.deleted_private_keys {
            println!(
                "         deleted the retired private key {}",
                path.display()
            );
        }
        if let Some(old) = &o.old_private_key {
            println!("         previous private key kept at {}", old.display());
            eprintln!(
                "appauth-keygen: warning: {} still signs tokens the bundle accepts until its \
                 key is retired; keep it out of every deployment, and delete it when done",
                old.display()
            );
        }
        if !o.bundle.is_empty() {
            let kids: Vec<_> = o.bundle.iter().map(|k| k.as_str()).collect();
            println!("         bundle now holds: {}", kids.join(", "));
        }
    }
}

fn print_inspections(found: &[Inspection], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "files": found }));
        return;
    }
    for f in found {
        println!(
            "{}  appId={}",
            f.file.display(),
            f.app_id.as_deref().unwrap_or("-")
        );
        for k in &f.keys {
            println!(
                "  {kind:<7} {format:<11} {bits} bits  kid={kid}",
                kind = k.kind,
                format = k.format,
                bits = k.bits,
                kid = k.kid
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_starting_with_a_hyphen_is_a_value() {
        let kid = "-YbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        let cli = Cli::try_parse_from(["appauth-keygen", "retire", "app", "--kid", kid]).unwrap();
        match cli.command {
            Command::Retire { kid: got, .. } => assert_eq!(got, kid),
            _ => panic!("parsed as another command"),
        }
    }
}
