//! The client's address: the socket peer, or — only when the peer is a configured trusted
//! proxy — the nearest untrusted address in `X-Forwarded-For`.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The address rate limits and the audit log use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// Resolves the client address of a request.
pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, proxies: &[IpNet]) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    // Walk from the right: each trusted hop appended the address it saw.
    let mut client = peer;
    for part in header.rsplit(',') {
        let Ok(ip) = part.trim().parse::<IpAddr>() else { break };
        client = ip;
        if !trusted(ip, proxies) {
            break;
        }
    }
    client
}

/// Middleware inserting [`ClientIp`] into the request.
pub async fn layer(State(proxies): State<std::sync::Arc<Vec<IpNet>>>, mut req: Request, next: Next) -> Response {
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let xff = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = resolve(peer, xff, &proxies);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve(peer, Some("198.51.100.7"), &proxies), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(resolve(outsider, Some("198.51.100.7"), &proxies), outsider);
        // A client cannot spoof by prepending: the rightmost untrusted hop wins.
        assert_eq!(
            resolve(peer, Some("1.1.1.1, 198.51.100.7, 10.9.9.9"), &proxies),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, Some("garbage"), &proxies), peer);
    }
}
