//! End-to-end tests of the `appauth-keygen` binary on real files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod faults;

fn keygen(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appauth-keygen"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run appauth-keygen")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.trim().is_empty(), "no error message");
    stderr
}

/// Every file below `dir` with its bytes, to prove a failed run changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    all.sort();
    all
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed")
}

#[test]
fn keys_are_read_back_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&keygen(
        tmp.path(),
        &["new", "app-1", "--out-dir", "k", "--bits", "3072"],
    ));
    let private = tmp.path().join("k/app-1_private.pem");
    let public = tmp.path().join("k/app-1_public.pem");

    let text = fs::read_to_string(&private).unwrap();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "not PKCS#8"
    );
    let out = openssl(&["pkey", "-in", private.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(3072 bit"));

    let out = openssl(&[
        "rsa",
        "-pubin",
        "-in",
        public.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(3072 bit"));

    // openssl derives the same public key from the private key.
    let derived = openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout"]);
    assert_eq!(derived.stdout, fs::read(&public).unwrap());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn refusing_to_overwrite_leaves_files_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&keygen(tmp.path(), &["new", "app-1", "--out-dir", "k"]));
    let before = snapshot(tmp.path());
    let err = fails(&keygen(
        tmp.path(),
        &["new", "app-1", "app-2", "--out-dir", "k"],
    ));
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(err.contains("--if-missing"), "{err}");
    assert_eq!(snapshot(tmp.path()), before, "a refused run changed files");

    // --if-missing skips app-1 and makes app-2; a second run changes nothing.
    let out = ok(&keygen(
        tmp.path(),
        &[
            "new",
            "app-1",
            "app-2",
            "--out-dir",
            "k",
            "--if-missing",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<_> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["app_id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("app-1", "skipped"), ("app-2", "created")]);
    let after = snapshot(tmp.path());
    ok(&keygen(
        tmp.path(),
        &["new", "app-1", "app-2", "--out-dir", "k", "--if-missing"],
    ));
    assert_eq!(snapshot(tmp.path()), after);

    // --force replaces.
    ok(&keygen(
        tmp.path(),
        &["new", "app-1", "--out-dir", "k", "--force"],
    ));
    assert_ne!(
        fs::read(tmp.path().join("k/app-1_private.pem")).unwrap(),
        after
            .iter()
            .find(|(p, _)| p.ends_with("k/app-1_private.pem"))
            .unwrap()
            .1
    );
}

#[test]
fn split_directories_and_generated_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&keygen(
        tmp.path(),
        &[
            "new",
            "--generate-id",
            "4",
            "--private-dir",
            "priv",
            "--public-dir",
            "pub",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        let app = r["app_id"].as_str().unwrap();
        assert_eq!(app.len(), 34, "{app}");
        assert!(tmp.path().join(format!("priv/{app}_private.pem")).exists());
        assert!(tmp.path().join(format!("pub/{app}_public.pem")).exists());
        assert!(!tmp.path().join(format!("pub/{app}_private.pem")).exists());
    }
}

#[test]
fn rotate_then_retire_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let first = ok(&keygen(
        tmp.path(),
        &["new", "app-1", "--out-dir", "k", "--json"],
    ));
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let old_kid = first["results"][0]["kid"].as_str().unwrap().to_owned();
    let original_public = fs::read(tmp.path().join("k/app-1_public.pem")).unwrap();
    let original_private = fs::read(tmp.path().join("k/app-1_private.pem")).unwrap();

    let rotated = ok(&keygen(
        tmp.path(),
        &[
            "rotate",
            "app-1",
            "--out-dir",
            "k",
            "--json",
            "--keep-retired",
        ],
    ));
    let rotated: serde_json::Value = serde_json::from_str(&rotated).unwrap();
    let r = &rotated["results"][0];
    let new_kid = r["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(r["bundle"], serde_json::json!([old_kid, new_kid]));
    // Asked to, the old private key is kept in retired/, unchanged.
    let aside = PathBuf::from(r["old_private_key"].as_str().unwrap());
    assert!(
        aside.ends_with(format!("k/retired/app-1_private.{old_kid}.pem")),
        "{aside:?}"
    );
    assert_eq!(fs::read(tmp.path().join(&aside)).unwrap(), original_private);

    // Retiring the current key is refused; retiring the old one works.
    let err = fails(&keygen(
        tmp.path(),
        &["retire", "app-1", "--kid", &new_kid, "--out-dir", "k"],
    ));
    assert!(err.contains("rotate first"), "{err}");
    ok(&keygen(
        tmp.path(),
        &["retire", "app-1", "--kid", &old_kid, "--out-dir", "k"],
    ));
    // Its public key retired, the kept private half goes too.
    assert!(!tmp.path().join(&aside).exists());
    let inspected = ok(&keygen(
        tmp.path(),
        &[
            "inspect",
            "k/app-1_public.pem",
            "k/app-1_private.pem",
            "--json",
        ],
    ));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["files"][0]["keys"][0]["kid"], new_kid.as_str());
    assert_eq!(inspected["files"][0]["keys"].as_array().unwrap().len(), 1);
    assert_eq!(inspected["files"][1]["keys"][0]["kid"], new_kid.as_str());
    assert_eq!(inspected["files"][0]["app_id"], "app-1");
    assert_ne!(
        fs::read(tmp.path().join("k/app-1_public.pem")).unwrap(),
        original_public
    );

    // The last key cannot be retired; unknown kids are named.
    let err = fails(&keygen(
        tmp.path(),
        &[
            "retire",
            "app-1",
            "--kid",
            &new_kid,
            "--out-dir",
            "k",
            "--force",
        ],
    ));
    assert!(err.contains("lock the app out"), "{err}");
    let err = fails(&keygen(
        tmp.path(),
        &["retire", "app-1", "--kid", &old_kid, "--out-dir", "k"],
    ));
    assert!(err.contains("holds no key with kid"), "{err}");
}

#[test]
fn bad_input_is_refused_with_a_message_and_no_file_written() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("not-a-dir"), b"x").unwrap();
    fs::write(
        tmp.path().join("corrupt.pem"),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let long = "a".repeat(129);
    let before = snapshot(tmp.path());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["new", "../x"], "invalid appId"),
        (vec!["new", "a/b"], "invalid appId"),
        (vec!["new", ""], "it is empty"),
        (vec!["new", ".."], "invalid appId"),
        (vec!["new", &long], "longer than 128"),
        (vec!["new", "ok-app", "../x"], "invalid appId"),
        (vec!["new"], "no appId given"),
        (
            vec!["new", "x", "--bits", "1024"],
            "unsupported key size 1024: use 2048, 3072 or 4096",
        ),
        (
            vec!["new", "x", "--out-dir", "not-a-dir/sub"],
            "cannot create directory",
        ),
        (vec!["inspect", "corrupt.pem"], "damaged"),
        (vec!["inspect", "missing.pem"], "cannot read"),
        (vec!["rotate", "nobody"], "cannot read"),
        (vec!["retire", "nobody", "--kid", "nope"], "not a key id"),
    ];
    for (args, expected) in cases {
        let out = keygen(tmp.path(), &args);
        let err = fails(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        // The first line says what is wrong and what to do.
        assert!(
            err.lines().next().unwrap().contains(expected),
            "{args:?}: {err}"
        );
    }
    assert_eq!(snapshot(tmp.path()), before, "a refused run wrote files");
}

#[test]
fn gen_keys_script_is_idempotent_and_splits_private_keys_per_app() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("apps.txt");
    fs::write(
        &list,
        "# apps of the build\norders-service\nbilling-service  # team b\n\n",
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gen-keys.sh");
    let run = || {
        let out = Command::new("bash")
            .arg(&script)
            .arg(&list)
            .arg(tmp.path().join("out"))
            .env("APPAUTH_KEYGEN", env!("CARGO_BIN_EXE_appauth-keygen"))
            .output()
            .unwrap();
        ok(&out)
    };
    let first = run();
    assert!(first.contains("2 created, 0 already had keys"), "{first}");
    let out = tmp.path().join("out");
    for app in ["orders-service", "billing-service"] {
        assert!(out.join(format!("public/{app}_public.pem")).exists());
        assert!(
            out.join(format!("private/{app}/{app}_private.pem"))
                .exists()
        );
    }
    let before = snapshot(&out);
    let second = run();
    assert!(second.contains("0 created, 2 already had keys"), "{second}");
    assert_eq!(snapshot(&out), before, "a re-run changed files");
}

#[test]
fn jwks_prints_sets_another_implementation_verifies_with() {
    let dir = tempfile::tempdir().unwrap();
    ok(&keygen(
        dir.path(),
        &["new", "orders", "billing", "--out-dir", "."],
    ));
    ok(&keygen(dir.path(), &["rotate", "orders", "--out-dir", "."]));
    let set: serde_json::Value = serde_json::from_str(&ok(&keygen(
        dir.path(),
        &["jwks", "--keys-dir", ".", "--app", "orders"],
    )))
    .unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{set}");
    for k in keys {
        assert_eq!(
            (&k["kty"], &k["alg"], &k["use"]),
            (&"RSA".into(), &"RS512".into(), &"sig".into())
        );
    }
    // The current private key's token verifies with the set's key of its
    // kid, through jsonwebtoken's own JWK reader.
    let private = appauth_core::PrivateKey::from_pem(
        &std::fs::read(dir.path().join("orders_private.pem")).unwrap(),
    )
    .unwrap();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == private.kid().as_str())
        .expect("the current key's kid is in the set");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let now = appauth_core::Clock::now(&appauth_core::SystemClock);
    let claims = appauth_core::Claims {
        app_id: "orders".into(),
        iat: now,
        exp: now + 60,
        nbf: None,
        jti: None,
        aud: None,
        iss: None,
        extra: Default::default(),
    };
    let token =
        appauth_core::sign_token(&private, appauth_core::Algorithm::RS512, &claims).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512),
    )
    .unwrap();

    // A whole directory: one set per app; files: one set of their keys.
    let all: serde_json::Value =
        serde_json::from_str(&ok(&keygen(dir.path(), &["jwks", "--keys-dir", "."]))).unwrap();
    assert_eq!(all.as_object().unwrap().len(), 2);
    assert_eq!(all["orders"], set);
    let files: serde_json::Value = serde_json::from_str(&ok(&keygen(
        dir.path(),
        &["jwks", "billing_public.pem", "orders_public.pem"],
    )))
    .unwrap();
    assert_eq!(files["keys"].as_array().unwrap().len(), 3);
    let err = fails(&keygen(
        dir.path(),
        &["jwks", "--keys-dir", ".", "--app", "nobody"],
    ));
    assert!(err.contains("nobody_public.pem"), "{err}");
    // An endless file is refused, not read into memory.
    let err = fails(&keygen(dir.path(), &["jwks", "/dev/zero"]));
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn only_the_private_directory_is_closed_and_absurd_counts_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    ok(&keygen(
        dir.path(),
        &[
            "new",
            "orders",
            "--public-dir",
            "out/public",
            "--private-dir",
            "out/private",
        ],
    ));
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // A server running as another user must traverse out/ to reach out/public.
    assert_eq!(mode("out"), 0o755);
    assert_eq!(mode("out/public"), 0o755);
    assert_eq!(mode("out/private"), 0o700);

    for n in ["18446744073709551615", "0", "10001"] {
        let out = keygen(
            dir.path(),
            &["new", "--generate-id", n, "--out-dir", "many"],
        );
        assert_eq!(out.status.code(), Some(2), "{n}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--generate-id"),
            "{n}"
        );
    }
    assert!(!dir.path().join("many").exists());
}

/// Every file under `dir`, relative, sorted (directories end in `/`).
fn listing(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_directories_hold_the_key_files_and_nothing_else_after_new_rotate_and_retire() {
    let tmp = tempfile::tempdir().unwrap();
    let split = ["--private-dir", "secret", "--public-dir", "public"];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(split);
        ok(&keygen(tmp.path(), &all))
    };
    let (secret, public) = (tmp.path().join("secret"), tmp.path().join("public"));
    run(&["new", "app", "other"]);
    assert_eq!(listing(&secret), ["app_private.pem", "other_private.pem"]);
    assert_eq!(listing(&public), ["app_public.pem", "other_public.pem"]);

    // Three rotations: the bundle grows, the private directory holds the
    // current key only (no .pem.old, no lock, no work directory).
    let mut kids = Vec::new();
    for _ in 0..3 {
        let out: serde_json::Value =
            serde_json::from_str(&run(&["rotate", "app", "--json"])).unwrap();
        let r = &out["results"][0];
        assert!(r.get("old_private_key").is_none(), "{r}");
        assert_eq!(
            r["deleted_private_keys"].as_array().map(Vec::len),
            Some(1),
            "{r}"
        );
        kids = r["bundle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listing(&secret), ["app_private.pem", "other_private.pem"]);
        assert_eq!(listing(&public), ["app_public.pem", "other_public.pem"]);
    }
    assert_eq!(kids.len(), 4);
    run(&["retire", "app", "--kid", &kids[0]]);
    assert_eq!(listing(&secret), ["app_private.pem", "other_private.pem"]);
    assert_eq!(listing(&public), ["app_public.pem", "other_public.pem"]);

    // Kept on request, in retired/ only (no mount of the directory takes a
    // subdirectory), with a warning; and a rotate without the flag leaves
    // what was kept on purpose.
    let kept = keygen(
        tmp.path(),
        &[
            "rotate",
            "app",
            "--keep-retired",
            "--private-dir",
            "secret",
            "--public-dir",
            "public",
        ],
    );
    assert!(kept.status.success());
    assert!(
        String::from_utf8_lossy(&kept.stderr).contains("still signs tokens"),
        "{kept:?}"
    );
    let kept_file = format!("retired/app_private.{}.pem", kids[3]);
    assert_eq!(
        listing(&secret),
        [
            "app_private.pem",
            "other_private.pem",
            "retired/",
            kept_file.as_str()
        ]
    );
    run(&["rotate", "app"]);
    assert!(listing(&secret).contains(&kept_file));
    // Retiring that key's public half deletes the kept private half.
    run(&["retire", "app", "--kid", &kids[3]]);
    assert_eq!(
        listing(&secret),
        ["app_private.pem", "other_private.pem", "retired/"]
    );

    // What older releases left, beside the key: deleted by the next rotate.
    let legacy = secret.join(format!("app_private.{}.pem.old", kids[1]));
    fs::copy(secret.join("other_private.pem"), &legacy).unwrap();
    fs::create_dir_all(public.join(".appauth-keygen")).unwrap();
    fs::write(public.join(".appauth-keygen/app.lock"), "").unwrap();
    run(&["rotate", "app"]);
    assert!(!legacy.exists());
    assert_eq!(listing(&public), ["app_public.pem", "other_public.pem"]);
}
