//! The egress proxy: a sandbox's only way out. An HTTP `CONNECT` (and plain `GET http://…`)
//! proxy that knows the sandbox by the listener a connection came in on — never by a header —
//! allows only the sandbox's `egress_allow` domains on ports 80 and 443, resolves names itself,
//! refuses every address that is not global unicast (and the host's own), and connects to
//! exactly the addresses it checked.
//!
//! The local backend gives each sandbox a listener on `127.0.0.1:`[`PROXY_PORT`] created inside
//! the sandbox's network namespace but held by this process (see [`bridge`]): a connection there
//! can only come from that sandbox. Engine backends (Docker, Kubernetes) can mount a per-sandbox
//! Unix socket instead ([`EgressProxy::serve_unix`]).

pub mod addr;
mod bridge;
mod http;
pub use http::valid_hostname;

use crate::config::SandboxKey;
use crate::error::{Error, Result};
use async_trait::async_trait;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The port the proxy listens on inside every sandbox (`HTTP_PROXY=http://127.0.0.1:3128`).
pub const PROXY_PORT: u16 = 3128;
/// Longest a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one connection attempt to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most addresses tried for one name.
const MAX_ATTEMPTS: usize = 4;
/// Longest a tunnel stays open.
const TUNNEL_LIMIT: Duration = Duration::from_secs(3600);
/// Most simultaneous connections per sandbox.
const MAX_CONNECTIONS: usize = 64;

/// What a sandbox may reach: domains, exact (`api.example.com`) or a suffix (`*.example.com`,
/// which matches names below `example.com`, not `example.com` itself). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allowed domains.
    pub allow: Vec<String>,
}

impl EgressPolicy {
    /// Whether `host` (already lowercased, without a trailing dot) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.allow.iter().any(|pattern| {
            let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
            match p.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() => {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix)
                        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                }
                _ => !p.is_empty() && p == host,
            }
        })
    }
}

/// One allowed or refused connection, for the audit log (host and port only, never content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEvent {
    /// The sandbox it came from (known by its listener).
    pub sandbox: SandboxKey,
    /// The host asked for, as the client spelled it (lowercased).
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// Whether the connection was made.
    pub allowed: bool,
    /// Why it was refused (or failed), if it was.
    pub reason: Option<String>,
}

/// Receives every [`EgressEvent`] (the server records them in the instance's audit chain).
pub type EgressReporter = Arc<dyn Fn(&EgressEvent) + Send + Sync>;

/// Resolves names. Production uses the system resolver; only test code can substitute one.
#[async_trait]
trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// Opens connections. Production connects by TCP; only test code can substitute one.
#[async_trait]
trait Connect: Send + Sync {
    async fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Stream>>;
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.map(|a| a.ip()).take(16).collect())
    }
}

struct TcpConnector;

#[async_trait]
impl Connect for TcpConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(TcpStream::connect(addr).await?))
    }
}

/// Counts of connections, across all sandboxes.
#[derive(Debug, Default)]
pub struct EgressCounters {
    allowed: AtomicU64,
    refused: AtomicU64,
}

impl EgressCounters {
    /// Connections made.
    pub fn allowed(&self) -> u64 {
        self.allowed.load(Ordering::Relaxed)
    }
    /// Connections refused (or failed).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The egress proxy; one value serves every sandbox of the process.
pub struct EgressProxy {
    resolver: Box<dyn Resolve>,
    connector: Box<dyn Connect>,
    /// Test code only: treat 127.0.0.1 as global (everything else stays refused).
    allow_loopback_for_tests: bool,
    host_addrs: Vec<IpAddr>,
    reporter: Option<EgressReporter>,
    counters: EgressCounters,
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy").field("counters", &self.counters).finish_non_exhaustive()
    }
}

/// The addresses of this host's interfaces (refused as destinations).
fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(sa) = a.address {
                if let Some(v4) = sa.as_sockaddr_in() {
                    out.push(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    out.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    out
}

impl EgressProxy {
    /// The production proxy: system resolver, TCP, global unicast only. `reporter` receives
    /// every allowed and refused connection.
    pub fn new(reporter: Option<EgressReporter>) -> Arc<Self> {
        Arc::new(EgressProxy {
            resolver: Box::new(SystemResolver),
            connector: Box::new(TcpConnector),
            allow_loopback_for_tests: false,
            host_addrs: host_addresses(),
            reporter,
            counters: EgressCounters::default(),
        })
    }

    /// Counts of allowed and refused connections.
    pub fn counters(&self) -> &EgressCounters {
        &self.counters
    }

    /// Why `ip` may not be connected to, if it may not.
    fn refuse_address(&self, ip: IpAddr) -> Option<String> {
        if self.allow_loopback_for_tests && ip == IpAddr::from([127, 0, 0, 1]) {
            return None;
        }
        if let Some(why) = addr::forbidden_reason(ip) {
            return Some(format!("{ip} is {why}"));
        }
        if self.host_addrs.contains(&ip) {
            return Some(format!("{ip} is this host's own address"));
        }
        None
    }

    fn report(&self, event: EgressEvent) {
        if event.allowed {
            self.counters.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(sandbox = %event.sandbox, host = %event.host, port = event.port, allowed = event.allowed,
            reason = event.reason.as_deref().unwrap_or(""), "egress");
        if let Some(r) = &self.reporter {
            r(&event);
        }
    }

    /// Checks a destination and connects to exactly the addresses checked.
    async fn open(&self, policy: &EgressPolicy, host: &str, port: u16) -> std::result::Result<Box<dyn Stream>, String> {
        if port != 80 && port != 443 {
            return Err(format!("port {port} is not 80 or 443"));
        }
        if !policy.allows(host) {
            // Never resolved: a refused name causes no DNS query.
            return Err("not on the egress allowlist".to_owned());
        }
        let addrs = match addr::parse_ip_literal(host) {
            Some(ip) => vec![ip],
            None => {
                if !http::valid_hostname(host) {
                    return Err("not a valid host name".to_owned());
                }
                match tokio::time::timeout(CONNECT_TIMEOUT, self.resolver.resolve(host, port)).await {
                    Ok(Ok(a)) if !a.is_empty() => a,
                    Ok(Ok(_)) => return Err("the name has no addresses".to_owned()),
                    Ok(Err(e)) => return Err(format!("resolving failed: {e}")),
                    Err(_) => return Err("resolving timed out".to_owned()),
                }
            }
        };
        // One forbidden answer refuses the name: a public name has no business pointing inside.
        if let Some(why) = addrs.iter().find_map(|ip| self.refuse_address(*ip)) {
            return Err(why);
        }
        let mut last = String::from("no address");
        for ip in addrs.into_iter().take(MAX_ATTEMPTS) {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(SocketAddr::new(ip, port))).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = format!("connecting to {ip} failed: {e}"),
                Err(_) => last = format!("connecting to {ip} timed out"),
            }
        }
        Err(last)
    }

    /// Serves one client connection of `sandbox`.
    async fn handle<S: AsyncRead + AsyncWrite + Unpin + Send>(
        self: Arc<Self>,
        sandbox: SandboxKey,
        policy: Arc<RwLock<EgressPolicy>>,
        mut client: S,
    ) {
        let head = match tokio::time::timeout(HEAD_TIMEOUT, http::read_head(&mut client)).await {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => {
                http::respond(&mut client, 400, why).await;
                return;
            }
            Err(_) => {
                http::respond(&mut client, 408, "request head timed out").await;
                return;
            }
        };
        let current = policy.read().map(|p| p.clone()).unwrap_or_default();
        let target = match http::target(&head) {
            Ok(t) => t,
            Err(why) => {
                http::respond(&mut client, 400, why).await;
                return;
            }
        };
        let mut event =
            EgressEvent { sandbox, host: target.host.clone(), port: target.port, allowed: false, reason: None };
        let upstream = self.open(&current, &target.host, target.port).await;
        let mut upstream = match upstream {
            Ok(u) => u,
            Err(why) => {
                http::respond(&mut client, 403, "refused by the egress policy").await;
                event.reason = Some(why);
                self.report(event);
                return;
            }
        };
        event.allowed = true;
        self.report(event);
        if http::start_tunnel(&mut client, &mut upstream, &head, &target).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(TUNNEL_LIMIT, tokio::io::copy_bidirectional(&mut client, &mut upstream)).await;
    }

    fn spawn_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self: &Arc<Self>,
        sandbox: SandboxKey,
        policy: &Arc<RwLock<EgressPolicy>>,
        limit: &Arc<tokio::sync::Semaphore>,
        stream: S,
    ) {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            return; // Over the connection cap: dropped.
        };
        let me = self.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            me.handle(sandbox, policy, stream).await;
            drop(permit);
        });
    }

    /// Serves `sandbox` on a TCP listener (the local backend's in-namespace listener).
    pub fn serve_tcp(
        self: &Arc<Self>,
        sandbox: SandboxKey,
        policy: Arc<RwLock<EgressPolicy>>,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => me.spawn_connection(sandbox, &policy, &limit, stream),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    }

    /// Serves `sandbox` on a Unix socket that only that sandbox can reach (engine backends
    /// mount it into the container).
    pub fn serve_unix(
        self: &Arc<Self>,
        sandbox: SandboxKey,
        policy: Arc<RwLock<EgressPolicy>>,
        listener: tokio::net::UnixListener,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => me.spawn_connection(sandbox, &policy, &limit, stream),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    }

    /// Opens the proxy's listener inside a running sandbox's network namespace and serves it.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        sandbox: SandboxKey,
        policy: Arc<RwLock<EgressPolicy>>,
        init_pid: i32,
        userns_ino: u64,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::task::spawn_blocking(move || bridge::listen_in_sandbox(init_pid, userns_ino, PROXY_PORT))
            .await
            .map_err(|e| Error::Helper(format!("egress listener task failed: {e}")))?
            .map_err(Error::io("opening the egress proxy inside the sandbox"))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(Error::io("opening the egress proxy inside the sandbox"))?;
        Ok(self.serve_tcp(sandbox, policy, listener))
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "testing")]
mod testing {
    //! Test-only construction of the proxy for other crates' tests (the `testing` feature, only
    //! enabled from `[dev-dependencies]`). Every policy check stays as in production; only the
    //! resolver (a fixed table), the connector (always a given loopback server, so that no
    //! address outside this machine ever sees a packet) and the loopback exemption differ.

    use super::*;
    use std::collections::HashMap;

    struct TableResolver(HashMap<String, Vec<IpAddr>>);

    #[async_trait]
    impl Resolve for TableResolver {
        async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
            self.0.get(host).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such test name"))
        }
    }

    struct LoopbackConnector(SocketAddr);

    #[async_trait]
    impl Connect for LoopbackConnector {
        async fn connect(&self, _addr: SocketAddr) -> io::Result<Box<dyn Stream>> {
            Ok(Box::new(TcpStream::connect(self.0).await?))
        }
    }

    impl EgressProxy {
        /// **Tests only.** A proxy whose names resolve from `names` (any other name fails to
        /// resolve), which treats `127.0.0.1` as a global address, and which connects every
        /// allowed destination to `local` instead of the checked address. Refused destinations
        /// are refused exactly as in production, before any connection.
        pub fn for_testing(
            names: HashMap<String, Vec<IpAddr>>,
            local: SocketAddr,
            reporter: Option<EgressReporter>,
        ) -> Arc<Self> {
            Arc::new(EgressProxy {
                resolver: Box::new(TableResolver(names)),
                connector: Box::new(LoopbackConnector(local)),
                allow_loopback_for_tests: true,
                host_addrs: host_addresses(),
                reporter,
                counters: EgressCounters::default(),
            })
        }
    }
}
