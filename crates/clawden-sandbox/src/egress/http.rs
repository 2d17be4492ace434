//! The small part of HTTP/1.1 the proxy speaks: a request head, `CONNECT host:port`, and
//! absolute-form `http://` requests forwarded in origin form.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// A request head and whatever the client sent after it.
#[derive(Debug)]
pub(super) struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

/// Where a request goes.
#[derive(Debug)]
pub(super) struct Target {
    pub host: String,
    pub port: u16,
    /// `None` for `CONNECT`; the origin-form path for a forwarded request.
    path: Option<String>,
    authority: String,
}

pub(super) async fn read_head<S: AsyncRead + Unpin>(client: &mut S) -> Result<Head, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large");
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err("connection closed before the request head ended"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let rest = buf.split_off(end + 4);
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or("empty request")?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("unsupported HTTP version");
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("malformed header")?;
        if name.is_empty() || name.contains(' ') {
            return Err("malformed header");
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head { method: method.to_owned(), target: target.to_owned(), version: version.to_owned(), headers, rest })
}

fn split_host_port(authority: &str, default: Option<u16>) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, after) = stripped.split_once(']').ok_or("malformed IPv6 host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("malformed authority"),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| "malformed port")?,
        None => default.ok_or("a port is required")?,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.contains('@') {
        return Err("malformed host");
    }
    Ok((host, port))
}

pub(super) fn target(head: &Head) -> Result<Target, &'static str> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(&head.target, None)?;
        return Ok(Target { host, port, path: None, authority: head.target.clone() });
    }
    let lower = head.target.to_ascii_lowercase();
    let Some(after) = lower.strip_prefix("http://").map(|_| &head.target[7..]) else {
        return Err("only CONNECT and absolute http:// requests are proxied");
    };
    let cut = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, path) = after.split_at(cut);
    if authority.contains('@') {
        return Err("credentials in the URL are not allowed");
    }
    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    if !path.starts_with('/') {
        return Err("malformed path");
    }
    let (host, port) = split_host_port(authority, Some(80))?;
    Ok(Target { host, port, path: Some(path), authority: authority.to_owned() })
}

/// A DNS name: letters, digits, `-` and `_`, labels of 1 to 63 bytes, at most 253 bytes.
pub fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub(super) async fn respond<S: AsyncWrite + Unpin>(client: &mut S, code: u16, text: &str) {
    let reason = match code {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        _ => "Error",
    };
    let body = format!("{text}\n");
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(msg.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Answers a `CONNECT` or forwards the request head upstream, then hands over the leftovers.
pub(super) async fn start_tunnel<C, U>(
    client: &mut C,
    upstream: &mut U,
    head: &Head,
    target: &Target,
) -> std::io::Result<()>
where
    C: AsyncWrite + Unpin,
    U: AsyncWrite + Unpin,
{
    match &target.path {
        None => {
            client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
        }
        Some(path) => {
            let mut out = format!("{} {} {}\r\n", head.method, path, head.version);
            let mut has_host = false;
            for (name, value) in &head.headers {
                let n = name.to_ascii_lowercase();
                if matches!(n.as_str(), "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive") {
                    continue;
                }
                has_host |= n == "host";
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            if !has_host {
                out.push_str(&format!("Host: {}\r\n", target.authority));
            }
            out.push_str("Connection: close\r\n\r\n");
            upstream.write_all(out.as_bytes()).await?;
        }
    }
    upstream.write_all(&head.rest).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str) -> Head {
        Head { method: method.into(), target: target.into(), version: "HTTP/1.1".into(), headers: vec![], rest: vec![] }
    }

    #[test]
    fn targets_are_parsed_strictly() {
        let t = target(&head("CONNECT", "Example.COM.:443")).expect("connect");
        assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
        let t = target(&head("CONNECT", "[2001:db8::1]:443")).expect("v6");
        assert_eq!(t.host, "2001:db8::1");
        assert!(target(&head("CONNECT", "example.com")).is_err());
        let t = target(&head("GET", "http://example.com/a?b")).expect("get");
        assert_eq!((t.host.as_str(), t.port, t.path.as_deref()), ("example.com", 80, Some("/a?b")));
        assert!(target(&head("GET", "http://user@127.0.0.1/")).is_err());
        assert!(target(&head("GET", "https://example.com/")).is_err());
        assert!(target(&head("GET", "/relative")).is_err());
        assert!(!valid_hostname("a..b"));
        assert!(!valid_hostname("a b"));
        assert!(valid_hostname("api.example.com"));
    }
}
