//! appauth-agent as callers run it: the real binary between unmodified
//! clients (curl, Python, Node, Java) and the real appauth-server, or a
//! recording upstream; its token file read by a tight loop; its refusals.

mod deploy;
mod languages;
mod proxy;
mod token_file;
mod util;
