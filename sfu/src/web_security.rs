//! What the SFU tells browsers about the page and whom it lets open `/ws` from a page (issue 21,
//! finding 12). Pure functions over header values, unit-tested here.
//!
//! - **Origin allow-list.** A browser always sends `Origin` with a WebSocket handshake and a page
//!   cannot forge it, so `/ws` refuses (403) a handshake whose `Origin` is neither the SFU's own
//!   (the authority the request was sent to: `Host`, or `X-Forwarded-Host` from a reverse proxy —
//!   a page cannot set either on a WebSocket), nor `http.public_url`'s, nor one of
//!   `http.allowed_origins`. Clients that are not browsers send no `Origin` and are unaffected:
//!   they authenticate with their join token like everyone else.
//! - **Page headers.** The page is served with a Content-Security-Policy that allows only its own
//!   inline script (by hash) and style, WebSocket connections, and
//!   `frame-ancestors 'none'` (plus `X-Frame-Options: DENY` for older browsers), so another site
//!   can neither frame it nor inject script into it.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The origin of an `http(s)://` URL (or of an origin), normalised: scheme and host lower-cased,
/// the scheme's default port left out, path and query dropped. `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_authority(authority)?;
    let port = port.unwrap_or(default_port);
    Some(if port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    })
}

/// `host[:port]` or `[v6][:port]` → (lower-cased host, port). `None` when malformed.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (format!("[{}]", host.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok().filter(|port| *port != 0)?),
    };
    Some((host, port))
}

/// What `/ws` knows about a handshake for the Origin check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Handshake<'a> {
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The first `X-Forwarded-Host` value, if a proxy set one.
    pub forwarded_host: Option<&'a str>,
}

/// Whether a WebSocket handshake may proceed: no `Origin` (not a browser), or an allowed one.
pub fn origin_allowed(
    handshake: &Handshake<'_>,
    public_origin: Option<&str>,
    allowed: &[String],
) -> bool {
    let Some(origin) = handshake.origin else {
        return true;
    };
    if allowed.iter().any(|allowed| allowed == "*") {
        return true;
    }
    let Some(origin) = origin_of(origin) else {
        // `null` (a sandboxed frame, a file) or garbage: not a page we serve.
        return false;
    };
    if public_origin == Some(origin.as_str()) || allowed.contains(&origin) {
        return true;
    }
    // Same origin: the page was loaded from the authority this request was sent to.
    let scheme = origin
        .split_once("://")
        .map_or("http", |(scheme, _)| scheme);
    [handshake.host, handshake.forwarded_host]
        .into_iter()
        .flatten()
        .filter_map(|authority| origin_of(&format!("{scheme}://{}", authority.trim())))
        .any(|own| own == origin)
}

/// The `Content-Security-Policy` for `page`: its inline scripts allowed by their SHA-256 hashes
/// (so an injected script is not), inline styles, and no framing, plugins, forms or base URL.
/// `connect-src` allows WebSockets to any server: the page's "SFU URL" field may name another
/// SFU, which the page only connects to after the person confirmed it (`sfu=` in a link).
pub fn content_security_policy(page: &str) -> String {
    let mut scripts = String::new();
    for script in inline_scripts(page) {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
        scripts.push_str(&format!(" 'sha256-{hash}'"));
    }
    format!(
        "default-src 'none'; script-src{scripts}; style-src 'unsafe-inline'; img-src 'self' data:; \
         media-src 'self' blob:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The bodies of the page's inline `<script>` elements, exactly as the browser hashes them.
fn inline_scripts(page: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !after[..open_end].contains("src=") {
            scripts.push(&body[..close]);
        }
        rest = &body[close..];
    }
    scripts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            origin_of("https://Calls.Example.com:443/path?x#y").as_deref(),
            Some("https://calls.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8045").as_deref(),
            Some("http://127.0.0.1:8045")
        );
        assert_eq!(
            origin_of("http://[::1]:8045/").as_deref(),
            Some("http://[::1]:8045")
        );
        for bad in [
            "null",
            "ftp://x",
            "https://",
            "https://user@host",
            "http://h:0",
            "http://h:99999",
            "http://a b",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    fn handshake<'a>(origin: Option<&'a str>, host: &'a str) -> Handshake<'a> {
        Handshake {
            origin,
            host: Some(host),
            forwarded_host: None,
        }
    }

    #[test]
    fn same_origin_public_url_and_list_are_allowed() {
        let none: &[String] = &[];
        assert!(origin_allowed(&handshake(None, "sfu:8045"), None, none));
        assert!(origin_allowed(
            &handshake(Some("http://calls.test:8045"), "calls.test:8045"),
            None,
            none
        ));
        assert!(origin_allowed(
            &handshake(Some("https://calls.test"), "calls.test"),
            None,
            none
        ));
        assert!(!origin_allowed(
            &handshake(Some("https://evil.test"), "calls.test"),
            None,
            none
        ));
        assert!(!origin_allowed(
            &handshake(Some("http://calls.test:9999"), "calls.test:8045"),
            None,
            none
        ));
        assert!(!origin_allowed(
            &handshake(Some("null"), "calls.test"),
            None,
            none
        ));
        let proxied = Handshake {
            origin: Some("https://calls.example.com"),
            host: Some("127.0.0.1:8045"),
            forwarded_host: Some("calls.example.com"),
        };
        assert!(origin_allowed(&proxied, None, none));
        let behind = handshake(Some("https://calls.example.com"), "10.0.0.5:8045");
        assert!(!origin_allowed(&behind, None, none));
        assert!(origin_allowed(
            &behind,
            Some("https://calls.example.com"),
            none
        ));
        assert!(origin_allowed(
            &behind,
            None,
            &["https://calls.example.com".to_owned()]
        ));
        assert!(origin_allowed(&behind, None, &["*".to_owned()]));
    }

    #[test]
    fn csp_hashes_each_inline_script() {
        let page = "<html><script>one()</script><p><script type=\"module\">two()</script>\
                    <script src=\"x.js\"></script></html>";
        assert_eq!(inline_scripts(page), vec!["one()", "two()"]);
        let policy = content_security_policy(page);
        let one = base64::engine::general_purpose::STANDARD.encode(Sha256::digest("one()"));
        assert!(policy.contains(&format!("'sha256-{one}'")), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-eval"), "{policy}");
        // The built-in page has exactly one inline script.
        assert_eq!(inline_scripts(crate::http::DEMO_PAGE).len(), 1);
    }
}
