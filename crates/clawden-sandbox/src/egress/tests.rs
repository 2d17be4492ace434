//! End-to-end tests of the proxy on loopback only. The resolver, connector and the loopback
//! exemption can only be substituted here (`#[cfg(test)]`): no setting reaches them.

use super::*;
use clawden_core::{InstanceId, UserId};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};

impl EgressProxy {
    fn for_tests(
        resolver: Box<dyn Resolve>,
        connector: Box<dyn Connect>,
        allow_loopback: bool,
        reporter: Option<EgressReporter>,
    ) -> Arc<Self> {
        Arc::new(EgressProxy {
            resolver,
            connector,
            allow_loopback_for_tests: allow_loopback,
            host_addrs: host_addresses(),
            reporter,
            counters: EgressCounters::default(),
        })
    }
}

/// Answers from a fixed list per call (the last answer repeats), counting calls.
struct ScriptedResolver {
    answers: Vec<Vec<IpAddr>>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl Resolve for ScriptedResolver {
    async fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.answers.get(n).or(self.answers.last()).cloned().unwrap_or_default())
    }
}

/// Records every address it is asked to connect to and connects to a local test server
/// instead, so that a "public" address never sees a packet.
struct RecordingConnector {
    asked: Arc<Mutex<Vec<SocketAddr>>>,
    local: SocketAddr,
}

#[async_trait]
impl Connect for RecordingConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Stream>> {
        self.asked.lock().map_err(|_| io::Error::other("poisoned"))?.push(addr);
        Ok(Box::new(TcpStream::connect(self.local).await?))
    }
}

fn key() -> SandboxKey {
    SandboxKey { instance: InstanceId::new(), member: UserId::new() }
}

/// A local server that answers `pong:<first bytes it got>` and closes.
async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return Vec::new() };
        let mut buf = vec![0u8; 4096];
        let n =
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok().and_then(|r| r.ok()).unwrap_or(0);
        buf.truncate(n);
        let _ = s.write_all(b"pong:").await;
        let _ = s.write_all(&buf).await;
        buf
    });
    (addr, task)
}

struct Setup {
    socket: std::path::PathBuf,
    events: Arc<Mutex<Vec<EgressEvent>>>,
    resolves: Arc<AtomicUsize>,
    asked: Arc<Mutex<Vec<SocketAddr>>>,
    proxy: Arc<EgressProxy>,
    sandbox: SandboxKey,
    _dir: tempfile::TempDir,
}

async fn setup(answers: Vec<Vec<IpAddr>>, allow_loopback: bool, allow: &[&str], local: SocketAddr) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let reporter: EgressReporter = Arc::new(move |e: &EgressEvent| {
        if let Ok(mut v) = sink.lock() {
            v.push(e.clone());
        }
    });
    let resolves = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let proxy = EgressProxy::for_tests(
        Box::new(ScriptedResolver { answers, calls: resolves.clone() }),
        Box::new(RecordingConnector { asked: asked.clone(), local }),
        allow_loopback,
        Some(reporter),
    );
    let sandbox = key();
    let socket = dir.path().join("egress.sock");
    let listener = UnixListener::bind(&socket).expect("bind unix");
    let policy = Arc::new(RwLock::new(EgressPolicy { allow: allow.iter().map(|s| s.to_string()).collect() }));
    proxy.serve_unix(sandbox, policy, listener);
    Setup { socket, events, resolves, asked, proxy, sandbox, _dir: dir }
}

/// Sends `request` through the proxy and returns everything it answered.
async fn through(socket: &std::path::Path, request: &str, then: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sent_then = false;
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => break,
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if !sent_then && out.windows(4).any(|w| w == b"\r\n\r\n") && out.starts_with(b"HTTP/1.1 200") {
            sent_then = true;
            s.write_all(then).await.expect("write tunnel");
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn an_allowlisted_name_is_reached_through_connect() {
    let (server, got) = echo_server().await;
    let s = setup(vec![vec![LOOPBACK]], true, &["api.allowed.test"], server).await;
    let answer = through(&s.socket, "CONNECT api.allowed.test:443 HTTP/1.1\r\nHost: x\r\n\r\n", b"ping").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("pong:ping"), "{answer}");
    assert_eq!(got.await.expect("server"), b"ping");
    assert_eq!(*s.asked.lock().expect("lock"), vec![SocketAddr::new(LOOPBACK, 443)]);
    let events = s.events.lock().expect("lock").clone();
    assert_eq!(events.len(), 1);
    assert!(events[0].allowed && events[0].host == "api.allowed.test" && events[0].port == 443);
    assert_eq!(events[0].sandbox, s.sandbox);
    assert_eq!((s.proxy.counters().allowed(), s.proxy.counters().refused()), (1, 0));
}

#[tokio::test]
async fn a_plain_http_request_is_forwarded_in_origin_form_without_proxy_headers() {
    let (server, got) = echo_server().await;
    let s = setup(vec![vec![LOOPBACK]], true, &["*.allowed.test"], server).await;
    let answer = through(
        &s.socket,
        "GET http://www.allowed.test/hello?x=1 HTTP/1.1\r\nHost: www.allowed.test\r\nProxy-Authorization: secret\r\n\r\n",
        b"",
    )
    .await;
    assert!(answer.starts_with("pong:GET /hello?x=1 HTTP/1.1\r\n"), "{answer}");
    let sent = String::from_utf8(got.await.expect("server")).expect("utf8");
    assert!(!sent.to_ascii_lowercase().contains("proxy-authorization"), "{sent}");
    assert!(sent.contains("Connection: close"));
}

#[tokio::test]
async fn names_ports_and_addresses_outside_the_policy_are_refused() {
    let (server, _got) = echo_server().await;
    // Allowed by name but not by port; not on the list; the bare suffix of a wildcard.
    let s = setup(vec![vec![LOOPBACK]], true, &["*.allowed.test", "exact.test"], server).await;
    for request in [
        "CONNECT exact.test:22 HTTP/1.1\r\n\r\n",
        "CONNECT exact.test:8080 HTTP/1.1\r\n\r\n",
        "CONNECT other.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT allowed.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT evilallowed.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT sub.exact.test:443 HTTP/1.1\r\n\r\n",
        "GET http://other.test/ HTTP/1.1\r\n\r\n",
        "GET http://exact.test:8080/ HTTP/1.1\r\n\r\n",
    ] {
        let answer = through(&s.socket, request, b"").await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{request}: {answer}");
    }
    // None of those names was even resolved, and nothing was connected.
    assert_eq!(s.resolves.load(Ordering::SeqCst), 0);
    assert!(s.asked.lock().expect("lock").is_empty());
    for request in ["GARBAGE\r\n\r\n", "CONNECT nohost HTTP/1.1\r\n\r\n", "GET https://exact.test/ HTTP/1.1\r\n\r\n"] {
        let answer = through(&s.socket, request, b"").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request}: {answer}");
    }
    assert_eq!(s.proxy.counters().refused(), 8);
}

#[tokio::test]
async fn an_allowlisted_name_that_resolves_inside_is_refused() {
    let (server, _got) = echo_server().await;
    for answers in [
        vec!["10.0.0.5".parse().expect("ip")],
        vec!["169.254.169.254".parse().expect("ip")],
        vec!["100.64.1.1".parse().expect("ip")],
        vec!["fd00:ec2::254".parse().expect("ip")],
        vec!["::ffff:127.0.0.1".parse().expect("ip")],
        vec!["93.184.216.34".parse().expect("ip"), "127.0.0.2".parse().expect("ip")],
        vec!["127.0.0.1".parse().expect("ip")],
    ] {
        // Strict checking here: loopback is refused like everything else.
        let s = setup(vec![answers.clone()], false, &["api.allowed.test"], server).await;
        let answer = through(&s.socket, "CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\n", b"").await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answers:?}: {answer}");
        assert!(s.asked.lock().expect("lock").is_empty(), "{answers:?}");
        let events = s.events.lock().expect("lock").clone();
        assert!(!events[0].allowed && events[0].reason.is_some());
    }
}

#[tokio::test]
async fn address_literals_in_any_spelling_are_refused_even_when_listed() {
    let (server, _got) = echo_server().await;
    let literals = [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "0xa9fea9fe",
    ];
    let s = setup(vec![vec![LOOPBACK]], false, &literals, server).await;
    for lit in literals {
        let answer = through(&s.socket, &format!("CONNECT {lit}:443 HTTP/1.1\r\n\r\n"), b"").await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{lit}: {answer}");
    }
    assert_eq!(s.resolves.load(Ordering::SeqCst), 0);
    assert!(s.asked.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn dns_rebinding_cannot_reach_loopback_because_the_checked_address_is_the_one_connected() {
    // The name is public when checked and loopback on any later lookup. The connector records
    // where the proxy connects and reaches a local server instead, so no packet leaves.
    let (server, _got) = echo_server().await;
    let public: IpAddr = "93.184.216.34".parse().expect("ip");
    let s = setup(vec![vec![public], vec![LOOPBACK]], false, &["rebind.allowed.test"], server).await;
    let answer = through(&s.socket, "CONNECT rebind.allowed.test:443 HTTP/1.1\r\n\r\n", b"x").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.resolves.load(Ordering::SeqCst), 1, "resolved once, at check time");
    assert_eq!(*s.asked.lock().expect("lock"), vec![SocketAddr::new(public, 443)]);
    // The same name answering loopback at check time is refused outright.
    let s = setup(vec![vec![LOOPBACK], vec![public]], false, &["rebind.allowed.test"], server).await;
    let answer = through(&s.socket, "CONNECT rebind.allowed.test:443 HTTP/1.1\r\n\r\n", b"").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(s.asked.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn the_sandbox_is_known_by_its_socket_not_by_a_header() {
    let (server, _got) = echo_server().await;
    let a = setup(vec![vec![LOOPBACK]], true, &[], server).await;
    let b = setup(vec![vec![LOOPBACK]], true, &["b-only.test"], server).await;
    let spoof = format!(
        "CONNECT b-only.test:443 HTTP/1.1\r\nX-Clawden-Sandbox: {}\r\nX-Clawden-Instance: {}\r\n\r\n",
        b.sandbox, b.sandbox.instance
    );
    let answer = through(&a.socket, &spoof, b"").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let events = a.events.lock().expect("lock").clone();
    assert_eq!(events[0].sandbox, a.sandbox);
    assert!(b.events.lock().expect("lock").is_empty());
}

#[test]
fn wildcards_match_only_below_their_suffix() {
    let p = EgressPolicy { allow: vec!["*.example.com".into(), "api.other.org.".into(), "*.".into(), "".into()] };
    assert!(p.allows("a.example.com"));
    assert!(p.allows("a.b.example.com"));
    assert!(!p.allows("example.com"));
    assert!(!p.allows("badexample.com"));
    assert!(p.allows("api.other.org"));
    assert!(!p.allows("x.api.other.org"));
    assert!(!p.allows(""));
    assert!(!EgressPolicy::default().allows("example.com"));
}
