//! The shipped deployments of the agent say what the binary accepts: the
//! Kubernetes sidecar and the Compose caller.

use yaml_rust2::{Yaml, YamlLoader};

use crate::util::AGENT;

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(appauth_testkit::fixture_path(&format!("../../{rel}"))).unwrap()
}

/// The `--flags` of `appauth-agent proxy --help`.
fn proxy_flags() -> String {
    let out = std::process::Command::new(AGENT)
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks an agent command line (`proxy --flag=value ...`) against the
/// binary's own flags; returns the value of each flag.
fn checked_flags(args: &[&str]) -> std::collections::BTreeMap<String, String> {
    assert_eq!(args.first(), Some(&"proxy"), "{args:?}");
    let help = proxy_flags();
    let mut flags = std::collections::BTreeMap::new();
    for arg in &args[1..] {
        let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
        assert!(flag.starts_with("--"), "{arg}");
        assert!(
            help.contains(&format!("{flag} ")),
            "{flag} is not a flag of appauth-agent proxy"
        );
        flags.insert(flag.to_owned(), value.to_owned());
    }
    for required in ["--app-id", "--key", "--listen", "--upstream"] {
        assert!(
            flags.contains_key(required),
            "{required} missing from {args:?}"
        );
    }
    flags
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_kubernetes_sidecar_mounts_the_key_into_the_agent_only() {
    let docs =
        YamlLoader::load_from_str(&repo_file("deploy/kubernetes/caller-with-agent.yaml")).unwrap();
    let pod = &docs[0]["spec"]["template"]["spec"];
    let containers = pod["containers"].as_vec().unwrap();
    let by_name = |n: &str| {
        containers
            .iter()
            .find(|c| c["name"].as_str() == Some(n))
            .unwrap_or_else(|| panic!("no container {n}"))
    };
    let agent = by_name("appauth-agent");
    let app = by_name("app");
    assert_eq!(strs(&agent["command"]), ["appauth-agent"]);
    let flags = checked_flags(&strs(&agent["args"]));
    // The application calls the agent on loopback, at the address it listens on.
    let listen = &flags["--listen"];
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    let api_url = app["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("API_URL"))
        .and_then(|e| e["value"].as_str())
        .unwrap();
    assert_eq!(api_url, format!("http://{listen}"));
    // The key: a Secret, mounted whole (followed through a rotation) into
    // the agent, and into nothing else.
    let key_volume = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| !v["secret"].is_badvalue())
        .expect("a Secret volume");
    let key_name = key_volume["name"].as_str().unwrap();
    let mount = agent["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some(key_name))
        .expect("the agent mounts the key");
    assert!(
        mount["subPath"].is_badvalue(),
        "a subPath mount is never updated"
    );
    assert!(flags["--key"].starts_with(mount["mountPath"].as_str().unwrap()));
    assert!(
        app["volumeMounts"].is_badvalue(),
        "the application mounts something"
    );
    // Probes on the admin port the agent serves.
    assert!(flags.contains_key("--admin-listen"));
    assert_eq!(
        agent["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
}

#[test]
fn the_compose_caller_reaches_the_api_only_through_the_agent() {
    let docs = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).unwrap();
    let services = &docs[0]["services"];
    let agent = &services["agent-python"];
    let caller = &services["caller-python"];
    let command = strs(&agent["command"]);
    assert_eq!(command.first(), Some(&"appauth-agent"));
    let flags = checked_flags(&command[1..]);
    assert!(flags["--listen"].starts_with("127.0.0.1:"));
    assert_eq!(
        caller["network_mode"].as_str(),
        Some("service:agent-python")
    );
    assert!(caller["volumes"].is_badvalue(), "the caller mounts a key");
    let mounts = strs(&agent["volumes"]);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let (volume, rest) = mounts[0].split_once(':').unwrap();
    let app = &flags["--app-id"];
    assert_eq!(
        volume,
        format!("{app}-key"),
        "the agent mounts another app's key"
    );
    assert!(flags["--key"].starts_with(rest.trim_end_matches(":ro")));
    // The caller's script calls the agent's address.
    let script = strs(&caller["command"]).join("\n");
    assert!(
        script.contains(&format!("http://{}/", flags["--listen"])),
        "{script}"
    );
    // Its upstream is the load balancer the file defines.
    let upstream = &flags["--upstream"];
    let host = upstream
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap();
    assert!(!services[host].is_badvalue(), "no service {host}");
}
