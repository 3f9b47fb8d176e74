//! The URL of a notification target, parsed once when the configuration is
//! validated: `http(s)://host[:port][/path][?query]`.
//!
//! Invariants:
//! - Such URLs usually carry a token (a healthchecks.io check UUID, a chat
//!   webhook secret) in the path or the query, so neither is ever shown:
//!   [`NotifyUrl`]'s `Display` and `Debug` print `scheme://host[:port]` only,
//!   and no parse error echoes any of the text.
//! - A parsed URL is usable as is: a host, a port (the scheme's default when
//!   none is written), a request target starting with `/`. User info
//!   (`user:password@`) and fragments are refused: rehost would not send the
//!   first as a header, and the second never reaches a server.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl {
    tls: bool,
    /// Without the brackets of an IPv6 address: what DNS or the socket takes.
    host: String,
    port: u16,
    /// `host[:port]` as written (brackets kept): the `Host` header, and what
    /// messages show.
    authority: String,
    /// Starts with `/`.
    path: String,
    /// After the `?`, if there is one.
    query: Option<String>,
}

impl NotifyUrl {
    /// Parses `text`; the error never contains any of it.
    pub fn parse(text: &str) -> Result<NotifyUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(match text.split_once("://") {
                // A scheme is never a secret, and naming it helps.
                Some((scheme, _)) if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    format!("expected an http:// or https:// URL, got a {scheme}:// one")
                }
                _ => "expected an http:// or https:// URL (the value is not shown: it may hold a token)".to_string(),
            });
        };
        if text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(
                "a URL cannot contain spaces or control characters (percent-encode them)"
                    .to_string(),
            );
        }
        if text.contains('#') {
            return Err("a URL fragment (`#…`) is never sent to the server; remove it".to_string());
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(
                "credentials in the URL (`user:password@`) are not supported: put the token in the path or query, as the service documents"
                    .to_string(),
            );
        }
        let (host, port) = split_authority(authority)?;
        let port = match port {
            Some(port) => port,
            None if tls => 443,
            None => 80,
        };
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (tail, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(NotifyUrl {
            tls,
            host,
            port,
            authority: authority.to_string(),
            path: path.to_string(),
            query,
        })
    }

    /// `https://host[:port]`: all that may be shown of the URL.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }

    /// The same URL with `/suffix` appended to its path (before the query):
    /// a healthchecks.io-style `/start` or `/fail`.
    pub fn with_path_suffix(&self, suffix: &str) -> NotifyUrl {
        let mut url = self.clone();
        url.path = format!("{}/{suffix}", self.path.trim_end_matches('/'));
        url
    }

    pub(crate) fn tls(&self) -> bool {
        self.tls
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// What follows the method in the request line: path and query.
    pub(crate) fn request_target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_authority(authority: &str) -> Result<(String, Option<u16>), String> {
    const EXPECTED: &str = "expected a URL like https://host[:port]/path";
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{EXPECTED}: unclosed `[` in the host"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{EXPECTED}: not an IPv6 address between `[` and `]`"
            ));
        }
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("{EXPECTED}: expected `:port` after the IPv6 address")
                })?),
            };
        (v6, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let name_ok = !host.is_empty()
        && (authority.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !name_ok {
        return Err(format!("{EXPECTED}: missing or invalid host name"));
    }
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!(
                "{EXPECTED}: the port must be a number from 1 to 65535"
            )),
        })
        .transpose()?;
    Ok((host.to_string(), port))
}

impl fmt::Display for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The configuration's `Debug` output is logged; the path and query are not.
impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotifyUrl({:?})", format!("{}/…", self.redacted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_url() {
        let url = NotifyUrl::parse("https://hc-ping.com/0b6a-uuid?create=1").unwrap();
        assert!(url.tls());
        assert_eq!((url.host(), url.port()), ("hc-ping.com", 443));
        assert_eq!(url.authority(), "hc-ping.com");
        assert_eq!(url.request_target(), "/0b6a-uuid?create=1");
        assert_eq!(url.redacted(), "https://hc-ping.com");

        let url = NotifyUrl::parse("http://127.0.0.1:8080").unwrap();
        assert!(!url.tls());
        assert_eq!((url.host(), url.port()), ("127.0.0.1", 8080));
        assert_eq!(url.request_target(), "/");
        assert_eq!(url.redacted(), "http://127.0.0.1:8080");

        let url = NotifyUrl::parse("http://[::1]:9/hook").unwrap();
        assert_eq!((url.host(), url.port()), ("::1", 9));
        assert_eq!(url.authority(), "[::1]:9");
        assert_eq!(url.redacted(), "http://[::1]:9");
        let url = NotifyUrl::parse("https://[2001:db8::1]?x=1").unwrap();
        assert_eq!((url.host(), url.port()), ("2001:db8::1", 443));
        assert_eq!(url.request_target(), "/?x=1");
    }

    #[test]
    fn healthchecks_suffixes_go_before_the_query() {
        let url = NotifyUrl::parse("https://hc-ping.com/uuid?create=1").unwrap();
        assert_eq!(
            url.with_path_suffix("start").request_target(),
            "/uuid/start?create=1"
        );
        let url = NotifyUrl::parse("https://hc-ping.com/key/slug/").unwrap();
        assert_eq!(
            url.with_path_suffix("fail").request_target(),
            "/key/slug/fail"
        );
        let url = NotifyUrl::parse("http://h").unwrap();
        assert_eq!(url.with_path_suffix("start").request_target(), "/start");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "hc-ping.com/SECRET",
            "ftp://h/SECRET",
            "https:/SECRET",
            "https://",
            "https:///SECRET",
            "https://u:SECRET@h/x",
            "https://h/SECRET path",
            "https://h/SECRET#frag",
            "https://h:0/SECRET",
            "https://h:99999/SECRET",
            "https://h:x/SECRET",
            "https://h!/SECRET",
            "https://[::1/SECRET",
            "https://[SECRET]/x",
            "https://[::1]x/SECRET",
            "",
        ] {
            let err = NotifyUrl::parse(bad).unwrap_err();
            assert!(!err.contains("SECRET"), "{bad:?}: {err}");
        }
        assert!(NotifyUrl::parse("ftp://h/x")
            .unwrap_err()
            .contains("got a ftp:// one"));
    }

    #[test]
    fn display_and_debug_hide_path_and_query() {
        let url = NotifyUrl::parse("https://hooks.example.com/T0/B1/SECRET?token=SECRET").unwrap();
        assert_eq!(url.to_string(), "https://hooks.example.com");
        let debug = format!("{url:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("https://hooks.example.com"), "{debug}");
    }
}
