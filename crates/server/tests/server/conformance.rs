//! The conformance table (appauth-testkit) against the real server, over
//! real sockets, every request sent byte for byte.

use appauth_testkit::conformance::{self, AUDIENCE, Fixture};

use crate::util::Server;

#[test]
fn the_conformance_table_passes_end_to_end() {
    let fixture = Fixture::new();
    let server = Server::start(
        &fixture.keys_dir,
        &[
            "--policy",
            fixture.policy.to_str().unwrap(),
            "--revocations",
            fixture.revocations.to_str().unwrap(),
            "--audience",
            AUDIENCE,
        ],
    );
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    let cases = futures_util::FutureExt::now_or_never(conformance::run(
        &fixture,
        "appauth-server",
        |request| std::future::ready(conformance::http1(&addr, &request)),
    ))
    .expect("every call is ready at once");
    assert!(cases >= 50, "{cases} cases");
}
