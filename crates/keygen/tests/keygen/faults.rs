//! Keygen under what pipelines do to it: parallel runs on the same apps,
//! runs killed halfway, keys checked out without their private half.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{fails, keygen, ok, openssl};

/// The base64 body of each PEM block in `text`, which is what two writers of
/// the same key agree on whatever their line lengths.
fn pem_bodies(text: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        } else if line.starts_with("-----END ") {
            bodies.extend(current.take());
        } else if let Some(body) = current.as_mut() {
            body.push_str(line.trim());
        }
    }
    bodies
}

/// The public key of a private key file, as openssl (not our code) derives it.
fn openssl_public_of(private: &Path) -> String {
    let out = openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout"]);
    assert!(
        out.status.success(),
        "openssl cannot read {}: {}",
        private.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bodies = pem_bodies(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(bodies.len(), 1);
    bodies.into_iter().next().unwrap()
}

/// The pair of `app` in `dir` is sound: the bundle holds the public key of
/// the private key, by openssl's reading. Returns the bundle's blocks.
fn assert_sound(dir: &Path, app: &str) -> Vec<String> {
    let public = openssl_public_of(&dir.join(format!("{app}_private.pem")));
    let bundle = pem_bodies(&fs::read_to_string(dir.join(format!("{app}_public.pem"))).unwrap());
    assert!(
        bundle.contains(&public),
        "{app}: the bundle ({} keys) lacks the private key's public key",
        bundle.len()
    );
    bundle
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_appauth-keygen"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run appauth-keygen")
}

fn kids(dir: &Path, app: &str) -> Vec<String> {
    let out = ok(&keygen(
        dir,
        &["inspect", &format!("{app}_public.pem"), "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["files"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Any interleaving of `new --if-missing`, `rotate` and `retire` on the same
/// apps ends with the bundle holding the current private key's public key and
/// no retired key. Without the per-app lock, a `retire` racing a `rotate`
/// put the retired key back, or left a bundle without the current key.
#[test]
fn concurrent_new_rotate_and_retire_leave_every_pair_sound() {
    const ROUNDS: usize = 12;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let apps = ["svc-a", "svc-b", "svc-c"];
    ok(&keygen(dir, &["new", "svc-a", "svc-b", "svc-c"]));
    for app in apps {
        ok(&keygen(dir, &["rotate", app]));
    }
    let (mut retired, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let mut runs = Vec::new();
        for app in apps {
            let before = kids(dir, app);
            // Half the rounds retire the oldest key; the other half the
            // newest, which is current until the racing rotate replaces it.
            let victim = if round % 2 == 0 {
                before.first().unwrap().clone()
            } else {
                before.last().unwrap().clone()
            };
            let block =
                pem_bodies(&fs::read_to_string(dir.join(format!("{app}_public.pem"))).unwrap())
                    [if round % 2 == 0 { 0 } else { before.len() - 1 }]
                .clone();
            runs.push((
                app,
                block,
                spawn(dir, &["retire", app, "--kid", &victim]),
                spawn(dir, &["rotate", app]),
                spawn(dir, &["new", app, "--if-missing"]),
            ));
        }
        for (app, block, retire, rotate, new) in runs {
            let retire = retire.wait_with_output().unwrap();
            let rotate = rotate.wait_with_output().unwrap();
            let new = new.wait_with_output().unwrap();
            assert!(rotate.status.success(), "{app} rotate: {rotate:?}");
            assert!(new.status.success(), "{app} new --if-missing: {new:?}");
            let bundle = assert_sound(dir, app);
            if retire.status.success() {
                retired += 1;
                assert!(
                    !bundle.contains(&block),
                    "{app} round {round}: a retired key is back in the bundle"
                );
            } else {
                refused += 1;
                let err = String::from_utf8_lossy(&retire.stderr);
                assert!(err.contains("current private key"), "{app}: {err}");
            }
        }
        // No temporary file is ever left where a server reads keys.
        for e in fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".tmp"), "left behind: {name}");
        }
    }
    eprintln!(
        "{ROUNDS} rounds x {} apps: {retired} retires done, {refused} refused as current; every pair sound",
        apps.len()
    );
    assert!(retired >= ROUNDS, "the oldest-key retires must all succeed");
}

/// Ten parallel `--if-missing` runs on one fresh directory: each app's key is
/// made once, and every run exits 0 (a key another run made is done).
#[test]
fn parallel_if_missing_runs_make_each_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let runs: Vec<Child> = (0..10)
        .map(|_| {
            spawn(
                tmp.path(),
                &["new", "a", "b", "c", "--if-missing", "--out-dir", "keys"],
            )
        })
        .collect();
    let mut kid_of = std::collections::HashMap::new();
    let mut created = 0;
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() > 2 && words[2].starts_with("kid=") {
                if words[0] == "created" {
                    created += 1;
                }
                let kid = kid_of
                    .entry(words[1].to_owned())
                    .or_insert(words[2].to_owned());
                assert_eq!(*kid, words[2], "two runs report different keys");
            }
        }
    }
    assert_eq!(created, 3, "each key is made exactly once");
    for app in ["a", "b", "c"] {
        assert_sound(&tmp.path().join("keys"), app);
    }
}

/// `kill -9` in the middle of a run of many apps: no temporary file is left
/// beside the keys, the next run says how to finish, and `--repair` makes
/// every pair sound without replacing any key that was made.
#[test]
fn a_killed_run_is_repaired_per_app_and_its_temp_files_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let apps: Vec<String> = (0..40).map(|i| format!("k-{i:02}")).collect();
    let mut args = vec!["new", "--bits", "4096"];
    args.extend(apps.iter().map(String::as_str));
    let run = dir.join("run");
    fs::create_dir(&run).unwrap();
    let count_pem = || {
        fs::read_dir(&run)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".pem")
            })
            .count()
    };
    // Killed as soon as the first file lands: with 40 keys of 4096 bits to
    // make on two cores, most are still to come.
    let mut child = spawn(&run, &args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count_pem() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let made = count_pem();
    assert!(
        made > 0 && made < 2 * apps.len(),
        "not killed halfway: {made} files"
    );
    let before: Vec<(String, Vec<u8>)> = apps
        .iter()
        .filter_map(|a| {
            let p = run.join(format!("{a}_private.pem"));
            fs::read(&p).ok().map(|b| (a.clone(), b))
        })
        .collect();
    for e in fs::read_dir(&run).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.ends_with(".tmp"),
            "a temp file beside the keys: {name}"
        );
    }

    // Make a half pair for certain (the kill may have fallen between pairs,
    // or inside the first pair, when this half is already missing), and a
    // leftover temp file in the work directory.
    let half = &before[0].0;
    match fs::remove_file(run.join(format!("{half}_public.pem"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
        _ => {}
    }
    let leftover = run
        .join(".appauth-keygen")
        .join(format!("{half}_private.pem.Zz9.tmp"));
    fs::write(&leftover, &before[0].1).unwrap();

    let mut rerun = vec!["new", "--if-missing"];
    rerun.extend(apps.iter().map(String::as_str));
    let err = fails(&keygen(&run, &rerun));
    assert!(err.contains("--repair"), "{err}");
    assert!(
        !err.contains("--force"),
        "never suggest replacing every app: {err}"
    );

    let mut repair = vec!["new", "--repair"];
    repair.extend(apps.iter().map(String::as_str));
    let out = ok(&keygen(&run, &repair));
    assert!(out.contains(&format!("repaired {half}")), "{out}");
    assert!(!leftover.exists(), "the leftover temp file was not removed");
    for app in &apps {
        assert_sound(&run, app);
    }
    // Keys made before the kill are the same keys.
    for (app, bytes) in before {
        assert_eq!(
            fs::read(run.join(format!("{app}_private.pem"))).unwrap(),
            bytes
        );
    }
}

/// A rotate killed after it set the old key aside, or after the bundle
/// gained the new key, can be run again; the second finishes the first.
#[test]
fn an_interrupted_rotate_can_be_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&keygen(dir, &["new", "app"]));
    let k0 = kids(dir, "app")[0].clone();

    // Killed after the old key was set aside: the aside file used to block
    // every later rotate.
    fs::copy(
        dir.join("app_private.pem"),
        dir.join(format!("app_private.{k0}.pem.old")),
    )
    .unwrap();
    ok(&keygen(dir, &["rotate", "app"]));
    assert_eq!(kids(dir, "app").len(), 2);
    assert_sound(dir, "app");

    // Killed after the bundle gained the new key, before the new private key
    // was renamed into place: the re-run finishes that rotation.
    let other = tmp.path().join("other");
    ok(&keygen(dir, &["new", "spare", "--out-dir", "other"]));
    let staged = dir.join(".appauth-keygen/app_private.pem.next");
    // A killed run leaves its work directory; a finished one does not.
    fs::create_dir_all(staged.parent().unwrap()).unwrap();
    fs::copy(other.join("spare_private.pem"), &staged).unwrap();
    let mut bundle = fs::read_to_string(dir.join("app_public.pem")).unwrap();
    bundle.push_str(&fs::read_to_string(other.join("spare_public.pem")).unwrap());
    fs::write(dir.join("app_public.pem"), bundle).unwrap();
    let out = ok(&keygen(dir, &["rotate", "app"]));
    assert!(out.contains("finished the rotation"), "{out}");
    assert_eq!(
        kids(dir, "app").len(),
        3,
        "no fourth key: the staged one was used"
    );
    assert_eq!(
        fs::read(dir.join("app_private.pem")).unwrap(),
        fs::read(other.join("spare_private.pem")).unwrap()
    );
    assert!(!staged.exists());
    assert_sound(dir, "app");
    // Nothing is left behind: no aside copy, no work directory.
    assert!(!dir.join(".appauth-keygen").exists());
    assert!(!dir.join(format!("app_private.{k0}.pem.old")).exists());
}

/// `retire` with the private key elsewhere (per-app subdirectories, or a
/// checkout of public keys only) does not skip its check: it finds the key in
/// its subdirectory, or takes the newest key of the bundle as the current one.
#[test]
fn retire_without_the_private_key_at_hand_keeps_the_current_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let split = ["--private-dir", "priv", "--public-dir", "pub"];
    let mut args = vec!["new", "app", "--private-subdirs"];
    args.extend(split);
    ok(&keygen(dir, &args));
    let mut args = vec!["rotate", "app", "--private-subdirs"];
    args.extend(split);
    ok(&keygen(dir, &args));
    let all = kids(&dir.join("pub"), "app");
    let (old, current) = (&all[0], &all[1]);

    // The private directory given without --private-subdirs: found anyway.
    let err = fails(&keygen(
        dir,
        &[
            "retire",
            "app",
            "--kid",
            current,
            "--private-dir",
            "priv",
            "--public-dir",
            "pub",
        ],
    ));
    assert!(err.contains("current private key"), "{err}");
    // No private key anywhere: the newest key is kept, and the message says why.
    let err = fails(&keygen(
        dir,
        &["retire", "app", "--kid", current, "--out-dir", "pub"],
    ));
    assert!(err.contains("newest key"), "{err}");
    assert_eq!(kids(&dir.join("pub"), "app").len(), 2);
    // The old key goes.
    ok(&keygen(
        dir,
        &["retire", "app", "--kid", old, "--out-dir", "pub"],
    ));
    assert_eq!(kids(&dir.join("pub"), "app"), vec![current.clone()]);
}

/// A pair that exists but does not work is not "skipped"; a run that made
/// some keys and failed on others says both, also in --json.
#[test]
fn broken_pairs_fail_and_partial_runs_report_what_they_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&keygen(dir, &["new", "a", "b"]));
    for garbage in [&b""[..], b"not a key\n"] {
        fs::write(dir.join("b_private.pem"), garbage).unwrap();
        let out = keygen(dir, &["new", "a", "b", "--if-missing", "--json"]);
        let err = fails(&out);
        assert!(err.contains("b_private.pem"), "{err}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["error"].as_str().unwrap().contains("b_private.pem"));
    }
    // A refusal leaves no trace: not even the directory it would have used.
    let err = fails(&keygen(
        dir,
        &[
            "new",
            "a",
            "--if-missing",
            "--private-dir",
            "fresh",
            "--public-dir",
            ".",
        ],
    ));
    assert!(err.contains("restore the private key"), "{err}");
    assert!(
        !dir.join("fresh").exists(),
        "a refused run made a directory"
    );
    // A truncated private key is called truncated, not "not a public key".
    let whole = fs::read(dir.join("a_private.pem")).unwrap();
    fs::write(dir.join("t_private.pem"), &whole[..whole.len() / 2]).unwrap();
    let err = fails(&keygen(dir, &["inspect", "t_private.pem"]));
    assert!(err.contains("truncated"), "{err}");

    // --force over c and d, where d's bundle path is a directory: c is made,
    // d fails, and --json lists both.
    fs::create_dir(dir.join("d_public.pem")).unwrap();
    fs::write(dir.join("d_private.pem"), b"old").unwrap();
    let out = keygen(dir, &["new", "c", "d", "--force", "--json"]);
    fails(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"][0]["app_id"], "c");
    assert_eq!(doc["results"][0]["status"], "created");
    assert_eq!(doc["errors"][0]["app_id"], "d");
    assert_sound(dir, "c");
}
