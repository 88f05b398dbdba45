//! Docker image references, checked against the grammar of the distribution reference format
//! before a name reaches the Docker API (which takes it as part of a URL path: an unchecked
//! `../containers/x/json?` would address another endpoint).
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component { "/" path-component }
//! domain     := host [ ":" port ]     host := label { "." label } | "[" IPv6 "]"
//! label      := [A-Za-z0-9] | [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]
//! path-component := [a-z0-9]+ { separator [a-z0-9]+ }   separator := "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex    algorithm := [A-Za-z][A-Za-z0-9]* { [+._-] [A-Za-z][A-Za-z0-9]* }
//! hex        := [0-9a-fA-F]{32,}
//! ```
//! The first component is a domain only when it contains `.` or `:` or is `localhost`
//! (Docker's rule); the whole name is at most 255 characters.

/// The longest name (domain and path, without tag or digest) Docker accepts.
pub const MAX_NAME_LEN: usize = 255;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty()
        || !is_alnum_lower(bytes[0] as char)
        || !is_alnum_lower(bytes[bytes.len() - 1] as char)
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if is_alnum_lower(c) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of "-", followed by an alphanumeric.
        let start = i;
        match c {
            '.' => i += 1,
            '_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            '-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= bytes.len() || !is_alnum_lower(bytes[i] as char) {
            return false;
        }
    }
    true
}

fn valid_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.is_empty() && domain.starts_with('[') || host.split('.').all(valid_domain_label)
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True when `reference` is a valid Docker image reference (see the module grammar).
pub fn is_valid_reference(reference: &str) -> bool {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if digest.is_some_and(|d| !valid_digest(d)) {
        return false;
    }
    // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !valid_tag(t)) {
        return false;
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let mut components = name.split('/').peekable();
    let Some(first) = components.peek().copied() else {
        return false;
    };
    let has_more = name.contains('/');
    if has_more && (first.contains('.') || first.contains(':') || first == "localhost") {
        if !valid_domain(first) {
            return false;
        }
        components.next();
    }
    let mut any = false;
    for component in components {
        if !valid_path_component(component) {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references_are_accepted() {
        for ok in [
            "calls-recorder:latest",
            "calls-recorder",
            "debian:bookworm-slim",
            "library/debian",
            "registry.example.com/team/recorder:1.2.3",
            "localhost:5000/recorder:dev",
            "localhost/recorder",
            "[::1]:5000/recorder:dev",
            "my_image__x.y-z---w:Tag_1.0-rc",
            "recorder@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "recorder:1@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_valid_reference(ok), "{ok}");
        }
    }

    #[test]
    fn paths_queries_and_malformed_names_are_refused() {
        for bad in [
            "",
            "../containers/x/json?",
            "../volumes/v",
            "../containers/x/archive?path=/etc/passwd",
            "a/../b",
            "Recorder",
            "recorder:",
            ":tag",
            "recorder:-tag",
            "recorder:a/b",
            "re corder",
            "recorder?x=1",
            "recorder#x",
            "recorder%2F..",
            "/recorder",
            "recorder/",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "host:port/x:y:z",
            "recorder@sha256:short",
            "recorder@:0123456789abcdef0123456789abcdef",
            "example.com:99999999/x",
            "exa_mple.com/x",
            "[::1/x",
            &"a".repeat(256),
        ] {
            assert!(!is_valid_reference(bad), "{bad}");
        }
    }
}
