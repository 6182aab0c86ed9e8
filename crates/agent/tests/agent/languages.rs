//! Callers in other languages: unmodified clients through the agent, and
//! the README's snippets that sign without it, each against the real server.

use std::process::Command;

use crate::util::{Agent, Server, keypair};

fn interop(rel: &str) -> std::path::PathBuf {
    appauth_testkit::fixture_path(&format!("../interop/{rel}"))
}

/// Runs `cmd`, expecting one line on stdout; says what to install when the
/// program is missing.
fn line_of(mut cmd: Command, needs: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): the test needs {needs}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn curl_python_node_and_java_call_the_server_through_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "polyglot");
    let server = Server::start(&dir.path().join("keys"), &[]);
    let agent = Agent::proxy("polyglot", &key, &server.url, &[]);

    let mut curl = Command::new("curl");
    curl.args(["-sS", "-w", " %{http_code}"])
        .arg(format!("{}/whoami", agent.url));
    let out = line_of(curl, "curl");
    assert!(
        out.ends_with(" 200") && out.contains(r#""appId":"polyglot""#),
        "curl: {out}"
    );

    let mut python = Command::new("python3");
    python.arg(interop("agent/caller.py")).arg(&agent.url);
    assert_eq!(line_of(python, "python3"), "200 polyglot");

    let mut node = Command::new("node");
    node.arg(interop("agent/caller.mjs")).arg(&agent.url);
    assert_eq!(
        line_of(node, "node (20 or later: built-in fetch)"),
        "200 polyglot"
    );

    // Java's client asks for an h2c upgrade on http://: the agent answers
    // in HTTP/1.1 and does not forward the upgrade headers.
    let mut java = Command::new("java");
    java.arg(interop("agent/Caller.java")).arg(&agent.url);
    assert_eq!(
        line_of(
            java,
            "a JDK (apt-get install default-jdk-headless; .ci/run installs it)"
        ),
        "200 polyglot"
    );
}

/// The snippets are shown in the README exactly as they are run here.
fn shown_in_readme(rel: &str) {
    let readme = std::fs::read_to_string(appauth_testkit::fixture_path("../../README.md")).unwrap();
    let snippet = std::fs::read_to_string(interop(rel)).unwrap();
    assert!(
        readme.contains(snippet.trim()),
        "README.md does not show tests/interop/{rel} as it is"
    );
}

#[test]
fn the_readmes_python_and_node_snippets_sign_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair(dir.path(), "snippets");
    let kid = appauth_core::PrivateKey::from_pem(&std::fs::read(&key).unwrap())
        .unwrap()
        .kid()
        .to_string();
    let server = Server::start(&dir.path().join("keys"), &[]);
    let expected = format!("200 snippets {kid}");

    shown_in_readme("sign_pyjwt.py");
    let mut python = Command::new("python3");
    python
        .arg(interop("sign_pyjwt.py"))
        .args(["snippets"])
        .arg(&key)
        .arg(&server.url);
    assert_eq!(
        line_of(python, "PyJWT (pip install pyjwt cryptography)"),
        expected
    );

    shown_in_readme("node/sign_jsonwebtoken.js");
    let mut node = Command::new("node");
    node.arg(interop("node/sign_jsonwebtoken.js"))
        .args(["snippets"])
        .arg(&key)
        .arg(&server.url);
    assert_eq!(
        line_of(
            node,
            "jsonwebtoken (npm ci --prefix tests/interop/node; scripts/test.sh runs it)"
        ),
        expected
    );
}
