//! `redis://[user[:password]@]host[:port][/db]` upstream addresses, and
//! `rediss://…` for TLS.

use std::fmt;

/// A parsed upstream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `rediss://`: the connection is wrapped in TLS.
    pub tls: bool,
    /// The host alone (an IPv6 address without brackets): the name the
    /// server's certificate is checked against.
    pub host: String,
    /// `host:port`, ready for `TcpStream::connect`.
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Database selected on every upstream connection.
    pub db: i64,
}

/// Why a URL was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("scheme must be redis:// or rediss://")]
    Scheme,
    #[error("bad host or port")]
    HostPort,
    #[error("bad database number")]
    Db,
    #[error("bad percent-encoding")]
    Encoding,
}

impl UrlError {
    /// What the configuration expected, for config error messages.
    pub fn expected(&self) -> &'static str {
        "a URL like redis://[user[:password]@]host[:port][/db] (rediss:// for TLS)"
    }
}

impl UpstreamUrl {
    /// Parses a `redis://` or `rediss://` URL.
    pub fn parse(s: &str) -> Result<UpstreamUrl, UrlError> {
        let (tls, rest) = match s.split_once("://") {
            Some(("redis", rest)) => (false, rest),
            Some(("rediss", rest)) => (true, rest),
            _ => return Err(UrlError::Scheme),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (non_empty(decode(user)?), non_empty(decode(pass)?)),
                None => (non_empty(decode(u)?), None),
            },
        };
        let db = match path.trim_end_matches('/') {
            "" => 0,
            d => d.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(UrlError::Db)?,
        };
        let (host, addr) = host_port(hostport)?;
        Ok(UpstreamUrl { tls, host, addr, username, password, db })
    }

    /// `s` with any password replaced by `***`, for logs and errors.
    pub fn redact(s: &str) -> String {
        let Some((scheme, rest)) = s.split_once("://") else {
            return s.to_string();
        };
        match rest.rsplit_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
                None => format!("{scheme}://{user}@{host}"),
            },
            None => s.to_string(),
        }
    }
}

impl fmt::Display for UpstreamUrl {
    /// The URL with its password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", if self.tls { "rediss" } else { "redis" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.addr, self.db)
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `(host, "host:port")`; IPv6 hosts keep their brackets only in the second.
fn host_port(s: &str) -> Result<(String, String), UrlError> {
    let (host, bracketed, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::HostPort)?;
        (host, format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, h.to_string(), Some(p)),
            None => (s, s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::HostPort);
    }
    let port: u16 = match port {
        None => 6379,
        Some(p) => p.parse().map_err(|_| UrlError::HostPort)?,
    };
    Ok((host.to_string(), format!("{bracketed}:{port}")))
}

fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(UrlError::Encoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UrlError::Encoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = UpstreamUrl::parse("redis://alice:p%40ss@127.0.0.1:7000/2").unwrap();
        assert_eq!(u.addr, "127.0.0.1:7000");
        assert!(!u.tls);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.db, 2);
        assert_eq!(u.to_string(), "redis://alice:***@127.0.0.1:7000/2");
        let u = UpstreamUrl::parse("redis://:secret@[::1]").unwrap();
        assert_eq!((u.addr.as_str(), u.username, u.password.as_deref()), ("[::1]:6379", None, Some("secret")));
        assert_eq!(u.host, "::1");
        assert_eq!(UpstreamUrl::parse("redis://localhost").unwrap().addr, "localhost:6379");
    }

    #[test]
    fn parses_tls() {
        let u = UpstreamUrl::parse("rediss://bob:pw@cache.example.com:6380/1").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.addr.as_str(), u.db), ("cache.example.com", "cache.example.com:6380", 1));
        assert_eq!(u.to_string(), "rediss://bob:***@cache.example.com:6380/1");
        let u = UpstreamUrl::parse("rediss://[::1]:7000").unwrap();
        assert_eq!((u.host.as_str(), u.addr.as_str()), ("::1", "[::1]:7000"));
        assert_eq!(UpstreamUrl::parse("rediss://127.0.0.1").unwrap().to_string(), "rediss://127.0.0.1:6379/0");
    }

    #[test]
    fn refuses() {
        assert_eq!(UpstreamUrl::parse("http://x"), Err(UrlError::Scheme));
        assert_eq!(UpstreamUrl::parse("redis+tls://x"), Err(UrlError::Scheme));
        assert_eq!(UpstreamUrl::parse("rediss://"), Err(UrlError::HostPort));
        assert_eq!(UpstreamUrl::parse("rediss://[]:1"), Err(UrlError::HostPort));
        assert_eq!(UpstreamUrl::parse("redis://x:notaport"), Err(UrlError::HostPort));
        assert_eq!(UpstreamUrl::parse("redis://x/abc"), Err(UrlError::Db));
        assert_eq!(UpstreamUrl::parse("redis://"), Err(UrlError::HostPort));
    }

    #[test]
    fn redacts() {
        assert_eq!(UpstreamUrl::redact("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(UpstreamUrl::redact("redis://h:1"), "redis://h:1");
        assert_eq!(UpstreamUrl::redact("rediss://:secret@h:1"), "rediss://:***@h:1");
    }
}
