//! `redis://[user[:password]@]host[:port][/db]` upstream addresses.

use std::fmt;

/// A parsed upstream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
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
    #[error("scheme must be redis://")]
    Scheme,
    #[error("rediss:// (TLS) is not supported yet")]
    Tls,
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
        match self {
            UrlError::Tls => "a redis:// URL (rediss:// TLS upstreams are not supported yet)",
            _ => "a URL like redis://[user[:password]@]host[:port][/db]",
        }
    }
}

impl UpstreamUrl {
    /// Parses a `redis://` URL.
    pub fn parse(s: &str) -> Result<UpstreamUrl, UrlError> {
        let rest = match s.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => return Err(UrlError::Tls),
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
        Ok(UpstreamUrl { addr: host_port(hostport)?, username, password, db })
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
        write!(f, "redis://")?;
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

fn host_port(s: &str) -> Result<String, UrlError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UrlError::HostPort)?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(UrlError::HostPort);
    }
    let port: u16 = match port {
        None => 6379,
        Some(p) => p.parse().map_err(|_| UrlError::HostPort)?,
    };
    Ok(format!("{host}:{port}"))
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
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.db, 2);
        assert_eq!(u.to_string(), "redis://alice:***@127.0.0.1:7000/2");
        let u = UpstreamUrl::parse("redis://:secret@[::1]").unwrap();
        assert_eq!((u.addr.as_str(), u.username, u.password.as_deref()), ("[::1]:6379", None, Some("secret")));
        assert_eq!(UpstreamUrl::parse("redis://localhost").unwrap().addr, "localhost:6379");
    }

    #[test]
    fn refuses() {
        assert_eq!(UpstreamUrl::parse("http://x"), Err(UrlError::Scheme));
        assert_eq!(UpstreamUrl::parse("rediss://x"), Err(UrlError::Tls));
        assert_eq!(UpstreamUrl::parse("redis://x:notaport"), Err(UrlError::HostPort));
        assert_eq!(UpstreamUrl::parse("redis://x/abc"), Err(UrlError::Db));
        assert_eq!(UpstreamUrl::parse("redis://"), Err(UrlError::HostPort));
    }

    #[test]
    fn redacts() {
        assert_eq!(UpstreamUrl::redact("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(UpstreamUrl::redact("redis://h:1"), "redis://h:1");
    }
}
