//! The agent's sandbox tools (`SandboxTools`) against real sandboxes: files land in the
//! member's `/workspace`, rules files stay out of reach, exec reports exit codes, truncation and
//! timeouts, patches stay under `/workspace`, and `web_fetch` reaches only allowlisted names
//! through the egress proxy (a test resolver pointing at a loopback server: nothing here
//! contacts an address off this machine).

#![allow(clippy::unwrap_used)]

#[path = "support/sandbox.rs"]
mod sandbox;

use clawden_agent::tools::sandboxed::{SandboxToolSettings, SandboxTools};
use clawden_agent::tools::{ToolContext, ToolExecutor, ToolName, ToolOutput};
use clawden_core::{InstanceId, UserId};
use clawden_sandbox::{
    BackendConfig, EgressEvent, EgressProxy, EgressReporter, Limits, LocalSandboxes, ManagerSettings, SandboxKey,
    SandboxManager, WorkspaceKey, WorkspaceKeyFuture, WorkspaceKeys, WorkspaceStorage,
};
use sandbox::sandbox_available;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct FixedKey;

impl WorkspaceKeys for FixedKey {
    fn workspace_key<'a>(&'a self, _key: &'a SandboxKey) -> WorkspaceKeyFuture<'a> {
        Box::pin(async { Ok(WorkspaceKey::new([7u8; 32])) })
    }
}

struct Setup {
    tools: SandboxTools,
    manager: Arc<SandboxManager>,
    ctx: ToolContext,
    _dir: tempfile::TempDir,
}

fn settings() -> SandboxToolSettings {
    SandboxToolSettings {
        output_cap_bytes: 4096,
        file_timeout: Duration::from_secs(20),
        web_fetch_timeout: Duration::from_secs(10),
        ..SandboxToolSettings::default()
    }
}

fn setup(settings: SandboxToolSettings, egress: Option<Arc<EgressProxy>>, allow: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BackendConfig::new(env!("CARGO_BIN_EXE_clawden"), dir.path().join("state"));
    config.cgroup_parent = "clawden-test".to_owned();
    let backend = LocalSandboxes::new(config).unwrap();
    let mut manager_settings = ManagerSettings::new(dir.path().join("volumes"));
    manager_settings.storage = WorkspaceStorage::QuotaImage;
    manager_settings.limits = Limits {
        memory_bytes: 256 << 20,
        swap_bytes: 0,
        pids: 64,
        cpu_millicores: 1000,
        exec_timeout: Duration::from_secs(30),
        workspace_quota_bytes: 32 << 20,
        tmp_bytes: 8 << 20,
        open_files: 256,
    };
    // Short, so that a sandbox left idle between calls is stopped, sealed and restarted.
    manager_settings.idle_timeout = Duration::from_secs(10);
    manager_settings.reap_interval = Duration::from_secs(1);
    let manager = SandboxManager::new(Arc::new(backend), Arc::new(FixedKey), egress, manager_settings);
    manager.spawn_reaper();
    let ctx = ToolContext {
        instance: InstanceId::new(),
        member: UserId::new(),
        egress_allow: allow.iter().map(|s| s.to_string()).collect(),
    };
    Setup { tools: SandboxTools::new(manager.clone(), settings), manager, ctx, _dir: dir }
}

impl Setup {
    async fn call(&self, tool: ToolName, args: serde_json::Value) -> ToolOutput {
        self.tools.run(&self.ctx, tool, &args).await
    }

    async fn ok(&self, tool: ToolName, args: serde_json::Value) -> String {
        let out = self.call(tool, args.clone()).await;
        assert!(!out.is_error, "{tool} {args} failed: {}", out.content);
        out.content
    }

    async fn err(&self, tool: ToolName, args: serde_json::Value) -> String {
        let out = self.call(tool, args.clone()).await;
        assert!(out.is_error, "{tool} {args} should have failed: {}", out.content);
        out.content
    }

    async fn sh(&self, command: &str) -> String {
        self.ok(ToolName::Exec, json!({ "command": command })).await
    }
}

/// Runs a test body with a bound, then stops (and seals) every sandbox.
async fn bounded(setup: &Setup, body: impl Future<Output = ()>) {
    let result = tokio::time::timeout(Duration::from_secs(100), body).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), setup.manager.stop_all()).await;
    result.expect("the test did not finish within 100 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_land_in_the_workspace_and_read_back() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    bounded(&s, async {
        let wrote = s.ok(ToolName::Write, json!({"path": "notes/a.txt", "content": "héllo\nline 2\nline 3\n"})).await;
        assert_eq!(wrote, "wrote 21 bytes to /workspace/notes/a.txt");
        assert_eq!(s.ok(ToolName::Read, json!({"path": "/workspace/notes/a.txt"})).await, "héllo\nline 2\nline 3\n");
        // It is a real file of the sandbox's workspace, seen by any command there.
        let cat = s.sh("cat /workspace/notes/a.txt && pwd").await;
        assert!(cat.contains("héllo\nline 2\nline 3\n/workspace\n"), "{cat}");

        let part = s.ok(ToolName::Read, json!({"path": "notes/a.txt", "offset": 2, "limit": 1})).await;
        assert_eq!(part, "line 2\n\n[more lines follow; continue with offset 3]");
        assert_eq!(s.ok(ToolName::Read, json!({"path": "notes/a.txt", "offset": 3})).await, "line 3\n");

        assert!(s.err(ToolName::Read, json!({"path": "nope.txt"})).await.contains("does not exist"));
        assert!(s.err(ToolName::Read, json!({"path": "notes"})).await.contains("is a directory"));
        s.sh("printf '\\377\\376\\000x' > bin").await;
        assert!(s.err(ToolName::Read, json!({"path": "bin"})).await.contains("binary"));

        // A read is cut at its cap, with a note.
        s.sh("head -c 300000 /dev/zero | tr '\\0' a > big").await;
        let big = s.ok(ToolName::Read, json!({"path": "big"})).await;
        assert!(big.ends_with("[output truncated at 262144 bytes; read further with offset and limit]"));

        // Writes go through stdin and a positional argument: names with shell syntax are names.
        s.ok(ToolName::Write, json!({"path": "odd $(touch pwned) `x`;.txt", "content": "$(reboot)"})).await;
        let check = s.sh("test ! -e pwned && cat 'odd $(touch pwned) `x`;.txt'").await;
        assert_eq!(check, "[stdout]\n$(reboot)\n[exit code 0]");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_files_cannot_be_written_edited_or_patched() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    bounded(&s, async {
        for path in ["/workspace/SOUL.md", "SOUL.md", "agents.MD", "x/../TOOLS.md"] {
            let e = s.err(ToolName::Write, json!({"path": path, "content": "obey me"})).await;
            assert!(e.contains("holds the agent's rules"), "{path}: {e}");
        }
        let e = s.err(ToolName::Edit, json!({"path": "USER.md", "old_string": "a", "new_string": "b"})).await;
        assert!(e.contains("holds the agent's rules"), "{e}");
        let patch = "--- /dev/null\n+++ b/IDENTITY.md\n@@ -0,0 +1 @@\n+I am root\n";
        let e = s.err(ToolName::ApplyPatch, json!({ "patch": patch })).await;
        assert!(e.contains("holds the agent's rules"), "{e}");
        assert_eq!(s.sh("ls -A /workspace | grep -ci '\\.md$' || true").await, "[stdout]\n0\n[exit code 0]");
        // MEMORY.md and rules-named files elsewhere are ordinary files.
        s.ok(ToolName::Write, json!({"path": "MEMORY.md", "content": "m"})).await;
        s.ok(ToolName::Write, json!({"path": "sub/SOUL.md", "content": "s"})).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_replaces_an_exact_string_once_or_everywhere() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    bounded(&s, async {
        s.ok(ToolName::Write, json!({"path": "e.txt", "content": "alpha beta\nbeta gamma\n"})).await;
        let e = s.err(ToolName::Edit, json!({"path": "e.txt", "old_string": "delta", "new_string": "x"})).await;
        assert!(e.contains("not found"), "{e}");
        let e = s.err(ToolName::Edit, json!({"path": "e.txt", "old_string": "beta", "new_string": "x"})).await;
        assert!(e.contains("occurs 2 times"), "{e}");
        let e = s.err(ToolName::Edit, json!({"path": "missing.txt", "old_string": "a", "new_string": "b"})).await;
        assert!(e.contains("does not exist"), "{e}");
        // Nothing changed so far.
        assert_eq!(s.ok(ToolName::Read, json!({"path": "e.txt"})).await, "alpha beta\nbeta gamma\n");

        let one = json!({"path": "e.txt", "old_string": "alpha beta", "new_string": "ALPHA"});
        assert_eq!(s.ok(ToolName::Edit, one).await, "replaced 1 occurrence in /workspace/e.txt");
        let all = json!({"path": "e.txt", "old_string": "a", "new_string": "4", "replace_all": true});
        assert_eq!(s.ok(ToolName::Edit, all).await, "replaced 3 occurrences in /workspace/e.txt");
        assert_eq!(s.ok(ToolName::Read, json!({"path": "e.txt"})).await, "ALPHA\nbet4 g4mm4\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_lists_the_workspace_and_subdirectories() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    bounded(&s, async {
        s.ok(ToolName::Write, json!({"path": "dir/one.txt", "content": "1"})).await;
        let root = s.ok(ToolName::Ls, json!({})).await;
        assert!(root.contains(" dir\n") || root.ends_with(" dir"), "{root}");
        let sub = s.ok(ToolName::Ls, json!({"path": "dir"})).await;
        assert!(sub.contains("one.txt"), "{sub}");
        assert!(s.err(ToolName::Ls, json!({"path": "nothing-here"})).await.contains("No such file"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_patch_changes_files_under_the_workspace_only() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    bounded(&s, async {
        s.ok(ToolName::Write, json!({"path": "src/main.txt", "content": "one\ntwo\nthree\n"})).await;
        let patch = "diff --git a/src/main.txt b/src/main.txt\n--- a/src/main.txt\n+++ b/src/main.txt\n\
                     @@ -1,3 +1,4 @@\n one\n-two\n+TWO\n+two and a half\n three\n\
                     diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n\
                     @@ -0,0 +1 @@\n+fresh\n";
        let report = s.ok(ToolName::ApplyPatch, json!({ "patch": patch })).await;
        assert_eq!(report, "patched /workspace/src/main.txt (1 hunk)\ncreated /workspace/new.txt (1 hunk)");
        assert!(s.sh("cat src/main.txt new.txt").await.contains("one\nTWO\ntwo and a half\nthree\nfresh\n"));

        for (patch, why) in [
            ("--- ../escape.txt\n+++ ../escape.txt\n@@ -0,0 +1 @@\n+x\n", "outside /workspace"),
            ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+evil\n", "outside /workspace"),
            ("--- /tmp/x\n+++ /tmp/x\n@@ -1 +1 @@\n-a\n+b\n", "outside /workspace"),
            ("--- a/SOUL.md\n+++ b/SOUL.md\n@@ -1 +1 @@\n-a\n+b\n", "holds the agent's rules"),
            ("just words", "no file changes"),
        ] {
            let e = s.err(ToolName::ApplyPatch, json!({ "patch": patch })).await;
            assert!(e.contains(why), "{patch}: {e}");
        }
        // A patch that fails on its second file changes nothing, not even its first.
        let half = "--- a/new.txt\n+++ b/new.txt\n@@ -1 +1 @@\n-fresh\n+changed\n\
                    --- a/src/main.txt\n+++ b/src/main.txt\n@@ -1 +1 @@\n-not there\n+x\n";
        let e = s.err(ToolName::ApplyPatch, json!({ "patch": half })).await;
        assert!(e.contains("/workspace/src/main.txt: hunk 1"), "{e}");
        assert_eq!(s.ok(ToolName::Read, json!({"path": "new.txt"})).await, "fresh\n");
        assert!(s
            .sh("test ! -e /workspace/../escape.txt && test ! -e /escape.txt && echo clean")
            .await
            .contains("clean"));

        let delete = "--- a/new.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-fresh\n";
        assert_eq!(s.ok(ToolName::ApplyPatch, json!({ "patch": delete })).await, "deleted /workspace/new.txt");
        assert!(s.err(ToolName::Read, json!({"path": "new.txt"})).await.contains("does not exist"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_exit_codes_truncates_output_and_times_out() {
    if !sandbox_available() {
        return;
    }
    let s = setup(SandboxToolSettings { output_cap_bytes: 1000, ..settings() }, None, &[]);
    bounded(&s, async {
        let out = s.sh("echo out; echo err >&2").await;
        assert_eq!(out, "[stdout]\nout\n[stderr]\nerr\n[exit code 0]");
        let failed = s.err(ToolName::Exec, json!({"command": "echo partial; exit 3"})).await;
        assert_eq!(failed, "[stdout]\npartial\n[exit code 3]");
        let missing = s.err(ToolName::Exec, json!({"command": "no-such-program"})).await;
        assert!(missing.contains("exit code 127: command not found"), "{missing}");

        // Each stream is cut at the cap; the command still runs to its end.
        let long =
            s.sh("head -c 5000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero | tr '\\0' b >&2; echo done > f").await;
        assert!(long.contains(&format!("[stdout]\n{}\n[output truncated at 1000 bytes]", "a".repeat(1000))), "{long}");
        assert!(long.contains(&format!("[stderr]\n{}\n[output truncated at 1000 bytes]", "b".repeat(1000))), "{long}");
        assert!(s.sh("cat f").await.contains("done"));

        // The wall clock kills the command and everything it started.
        let started = std::time::Instant::now();
        let slow = s.err(ToolName::Exec, json!({"command": "sleep 60 & sleep 60", "timeout_secs": 1})).await;
        assert!(slow.contains("exit code 124: timed out after 1 s"), "{slow}");
        assert!(started.elapsed() < Duration::from_secs(20));

        for (args, why) in [
            (json!({"command": "true", "timeout_secs": 0}), "timeout_secs must be between 1 and 600"),
            (json!({"command": "true", "timeout_secs": 601}), "timeout_secs must be between 1 and 600"),
            (json!({"command": "   "}), "command is empty"),
            (json!({}), "\"command\" is missing"),
            (json!({"command": ["ls"]}), "must be a string"),
            (json!({"command": "ls", "cwd": "/"}), "has no argument \"cwd\""),
            (json!("ls"), "must be a JSON object"),
        ] {
            let e = s.err(ToolName::Exec, args.clone()).await;
            assert!(e.contains(why), "{args}: {e}");
        }
        let e = s.err(ToolName::MemoryWrite, json!({"content": "x"})).await;
        assert!(e.contains("not a sandbox tool"), "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_instance_kills_that_instances_commands_only() {
    if !sandbox_available() {
        return;
    }
    let s = setup(settings(), None, &[]);
    let tools = Arc::new(s.tools);
    let other = ToolContext { instance: InstanceId::new(), member: UserId::new(), egress_allow: Vec::new() };
    let body = async {
        let out = tools.run(&other, ToolName::Exec, &json!({"command": "echo warm"})).await;
        assert!(!out.is_error, "{}", out.content);
        let (t, ctx) = (tools.clone(), s.ctx.clone());
        let long = tokio::spawn(async move {
            t.run(&ctx, ToolName::Exec, &json!({"command": "sleep 60", "timeout_secs": 90})).await
        });
        let key = SandboxKey { instance: s.ctx.instance, member: s.ctx.member };
        for _ in 0..200 {
            if s.manager.running().contains(&key) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(s.manager.running().contains(&key), "the sandbox did not start");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tools.stop_instance(s.ctx.instance).await;
        let out = tokio::time::timeout(Duration::from_secs(20), long).await.expect("exec ended").unwrap();
        assert!(out.is_error, "{}", out.content);
        assert!(!s.manager.running().contains(&key));
        let other_key = SandboxKey { instance: other.instance, member: other.member };
        assert!(s.manager.running().contains(&other_key), "another instance's sandbox was stopped");
    };
    let result = tokio::time::timeout(Duration::from_secs(100), body).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), s.manager.stop_all()).await;
    result.expect("the test did not finish within 100 s");
}

/// A loopback HTTP server answering every request with `page`; counts connections.
async fn page_server(page: &'static str) -> (std::net::SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        // Ends when the test aborts it.
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let response = if head.starts_with(b"GET /redirect ") {
                    "HTTP/1.1 302 Found\r\nLocation: http://other.test/\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                        .to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{page}",
                        page.len()
                    )
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, connections, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_fetch_reaches_only_allowlisted_names_through_the_egress_proxy() {
    if !sandbox_available() {
        return;
    }
    let page = "<html><head><title>Test page</title><script>document.write('hidden')</script></head>\
                <body><h1>Hello from the test page</h1><p>Fish &amp; chips</p></body></html>";
    let (server, connections, server_task) = page_server(page).await;
    let events: Arc<Mutex<Vec<EgressEvent>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let reporter: EgressReporter = Arc::new(move |e: &EgressEvent| sink.lock().unwrap().push(e.clone()));
    let names = HashMap::from([
        ("allowed.test".to_owned(), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        ("metadata.test".to_owned(), vec![IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))]),
    ]);
    let proxy = EgressProxy::for_testing(names, server, Some(reporter));
    let s = setup(settings(), Some(proxy), &["allowed.test", "metadata.test"]);
    bounded(&s, async {
        let text = s.ok(ToolName::WebFetch, json!({"url": "http://allowed.test/page"})).await;
        assert_eq!(
            text,
            "URL: http://allowed.test/page\nStatus: 200\nContent-Type: text/html; charset=utf-8\n\n\
             Test page\nHello from the test page\nFish & chips"
        );
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        let cut = s.ok(ToolName::WebFetch, json!({"url": "http://allowed.test/", "max_chars": 9})).await;
        assert!(cut.ends_with("\n\nTest page\n[cut at 9 characters]"), "{cut}");
        let seen_events = events.lock().unwrap().len();
        assert_eq!(seen_events, 2);

        // Refused before anything runs: an address literal, a name not on the list.
        let e = s.err(ToolName::WebFetch, json!({"url": format!("http://127.0.0.1:{}/", server.port())})).await;
        assert!(e.contains("IP addresses cannot be fetched"), "{e}");
        let e = s.err(ToolName::WebFetch, json!({"url": "http://other.test/"})).await;
        assert!(e.contains("other.test is not on this instance's egress allowlist"), "{e}");
        assert_eq!(events.lock().unwrap().len(), seen_events, "the proxy saw a refused URL");

        // Allowlisted, but its name resolves to the metadata address: the proxy refuses it
        // before connecting anywhere.
        let e = s.err(ToolName::WebFetch, json!({"url": "http://metadata.test/latest/meta-data/"})).await;
        assert!(e.contains("the egress proxy refused the connection to metadata.test"), "{e}");
        let refused = events.lock().unwrap().last().cloned().unwrap();
        assert_eq!((refused.host.as_str(), refused.port, refused.allowed), ("metadata.test", 80, false));
        assert!(refused.reason.as_deref().unwrap_or("").contains("169.254.169.254"), "{refused:?}");
        assert_eq!(connections.load(Ordering::SeqCst), 2, "a refused destination was connected to");

        // A redirect to a name off the list is refused by the proxy, not followed.
        let e = s.err(ToolName::WebFetch, json!({"url": "http://allowed.test/redirect"})).await;
        assert!(e.contains("the egress proxy refused"), "{e}");
        let refused = events.lock().unwrap().last().cloned().unwrap();
        assert_eq!((refused.host.as_str(), refused.allowed), ("other.test", false));
        assert_eq!(connections.load(Ordering::SeqCst), 3);

        // A command in the sandbox going around the tool meets the same proxy.
        let raw = s.err(ToolName::Exec, json!({"command": "curl -sS -p -o /dev/null http://other.test/"})).await;
        assert!(raw.contains("403"), "{raw}");
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    })
    .await;
    server_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_refuses_a_result_past_the_cap_before_building_it() {
    if !sandbox_available() {
        return;
    }
    let s = setup(SandboxToolSettings { write_cap_bytes: 10_000, ..settings() }, None, &[]);
    s.ok(ToolName::Write, json!({"path": "scratch/a.txt", "content": "a".repeat(5000)})).await;
    let err = s
        .err(
            ToolName::Edit,
            json!({"path": "scratch/a.txt", "old_string": "a", "new_string": "aaa", "replace_all": true}),
        )
        .await;
    assert!(err.contains("would be larger than 10000 bytes"), "{err}");
    // Unchanged.
    let text = s.ok(ToolName::Read, json!({"path": "scratch/a.txt"})).await;
    assert_eq!(text.len(), 5000, "{}", &text[..text.len().min(80)]);
}
