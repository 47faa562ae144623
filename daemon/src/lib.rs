//! What the two fleetcheck services (exporter and remediator) share at their
//! edge, so that both take the same flags and report the same build: the
//! `--log.*` flags, `--web.listen-address` parsing, query strings and the
//! build revision. Nothing here knows about entities, hosts or repairs.

pub mod logging;

use std::net::SocketAddr;

/// The crate version shared by the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binaries were built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("FLEETCHECK_REVISION");

/// Parses `--web.listen-address` as the Prometheus exporters take it:
/// `:8397` (all interfaces), `127.0.0.1:8397`, `[::1]:8397`.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .map_err(|_| format!("invalid --web.listen-address {text:?}: expected HOST:PORT or :PORT"))
}

/// The value of `key` in a URL query string, percent-decoded (the first one wins).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(":8397").unwrap().to_string(), "0.0.0.0:8397");
        assert_eq!(
            listen_address("127.0.0.1:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(listen_address("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(listen_address("localhost").is_err());
        assert!(listen_address("8397").is_err());
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("entity=a%20b+c&host=h", "entity").as_deref(),
            Some("a b c")
        );
        assert_eq!(
            query_param("entity=x&entity=y", "entity").as_deref(),
            Some("x")
        );
        assert_eq!(query_param("host=%zz", "host").as_deref(), Some("%zz"));
        assert_eq!(query_param("", "host"), None);
    }
}
