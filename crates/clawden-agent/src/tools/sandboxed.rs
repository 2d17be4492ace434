//! [`SandboxTools`]: the [`ToolExecutor`] that runs every sandbox tool *inside* the member's
//! sandbox through the [`SandboxManager`]. Nothing here touches the host file system: files
//! are read and written by small commands in the sandbox (paths and contents passed as
//! arguments and standard input, never spliced into a shell string), and web pages are fetched
//! by `curl` in the sandbox through the egress proxy.
//!
//! Every limit is a [`SandboxToolSettings`] field, and every failure — a bad argument, a
//! missing sandbox, a command that fails — becomes a [`ToolOutput::error`] the model can read.

mod args;
mod web;

use super::patch;
use super::{is_rules_path, sandbox_path, ToolContext, ToolExecutor, ToolName, ToolOutput, WORKSPACE};
use args::Args;
use async_trait::async_trait;
use clawden_core::InstanceId;
use clawden_sandbox::{EgressPolicy, ExecRequest, ExecStdio, SandboxKey, SandboxManager, StopReason};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Limits of the sandbox tools; each one is a setting so that tests can make it small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxToolSettings {
    /// Most bytes kept of each output stream of `exec`, and of `ls` (default 64 KiB).
    pub output_cap_bytes: usize,
    /// Most bytes `read` returns (default 256 KiB).
    pub read_cap_bytes: usize,
    /// Largest file `write` writes and `edit` / `apply_patch` read and write back (default 1 MiB).
    pub write_cap_bytes: usize,
    /// Largest patch `apply_patch` accepts (default 1 MiB).
    pub patch_cap_bytes: usize,
    /// Most files one patch may touch (default 64).
    pub patch_max_files: usize,
    /// `exec`'s wall-clock limit when the model gives none (default 60 s).
    pub default_exec_timeout: Duration,
    /// The longest `timeout_secs` `exec` accepts (default 600 s).
    pub max_exec_timeout: Duration,
    /// Wall-clock limit of the commands behind `read`, `write`, `edit`, `ls` and `apply_patch`
    /// (default 30 s).
    pub file_timeout: Duration,
    /// Most bytes of a fetched body that are kept (default 2 MiB); `curl` stops past it.
    pub web_fetch_body_cap_bytes: usize,
    /// Characters of text `web_fetch` returns when the model gives no `max_chars` (default 20 000).
    pub web_fetch_default_chars: usize,
    /// The largest `max_chars` honoured (default 200 000).
    pub web_fetch_max_chars: usize,
    /// Wall-clock limit of one fetch, redirects included (default 30 s).
    pub web_fetch_timeout: Duration,
}

impl Default for SandboxToolSettings {
    fn default() -> Self {
        SandboxToolSettings {
            output_cap_bytes: 64 << 10,
            read_cap_bytes: 256 << 10,
            write_cap_bytes: 1 << 20,
            patch_cap_bytes: 1 << 20,
            patch_max_files: 64,
            default_exec_timeout: Duration::from_secs(60),
            max_exec_timeout: Duration::from_secs(600),
            file_timeout: Duration::from_secs(30),
            web_fetch_body_cap_bytes: 2 << 20,
            web_fetch_default_chars: 20_000,
            web_fetch_max_chars: 200_000,
            web_fetch_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs the agent's tools in the member's sandbox (started on demand by the manager).
pub struct SandboxTools {
    manager: Arc<SandboxManager>,
    settings: SandboxToolSettings,
}

impl fmt::Debug for SandboxTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxTools").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Extra time past a command's own timeout before this side gives up waiting: the sandbox
/// enforces the real limit; this only bounds a start (unsealing a workspace) that hangs.
const WAIT_GRACE: Duration = Duration::from_secs(60);

/// What one command in the sandbox produced.
#[derive(Debug)]
struct Captured {
    code: i32,
    stdout: Vec<u8>,
    stdout_truncated: bool,
    stderr: Vec<u8>,
    stderr_truncated: bool,
}

/// Exit codes of the file scripts below (chosen above what the commands they run return).
const EXIT_IS_DIRECTORY: i32 = 90;
const EXIT_NOT_FOUND: i32 = 91;
const EXIT_THROUGH_LINK: i32 = 92;

/// Reads a file whole (at most `$2` bytes); distinct codes for a directory and a missing file.
const READ_WHOLE: &str =
    r#"if [ -d "$1" ]; then exit 90; fi; if [ ! -e "$1" ]; then exit 91; fi; exec head -c "$2" -- "$1""#;
/// Lines `$2`.. (`$3` of them, or all when `$3` is empty) of a file, at most `$4` bytes.
const READ_LINES: &str = r#"if [ -d "$1" ]; then exit 90; fi; if [ ! -e "$1" ]; then exit 91; fi
if [ -n "$3" ]; then tail -n "+$2" -- "$1" | head -n "$3" | head -c "$4"
else tail -n "+$2" -- "$1" | head -c "$4"; fi"#;
/// Writes standard input to `$1`, creating its parent directories. Refuses (92) a path that
/// goes through a symbolic link: the policy judged the path by its name (scratch folder, rules
/// files), so the file written must be the one that name says.
const WRITE: &str = r#"mkdir -p -- "$(dirname -- "$1")" || exit 1
[ "$(realpath -m -- "$1")" = "$1" ] || exit 92
exec cat > "$1""#;
/// Removes the file `$1` (92: the path goes through a symbolic link).
const REMOVE: &str = r#"[ "$(realpath -m -- "$(dirname -- "$1")")/$(basename -- "$1")" = "$1" ] || exit 92
rm -f -- "$1""#;

async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    // Ends at end-of-file: the exec's PID namespace dies with the command, closing every copy
    // of the pipe, and the command itself is under a wall-clock limit.
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                // Past the cap keep draining, so the command never blocks on a full pipe.
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

/// The text of bytes that should be UTF-8; a character cut by a size cap at the very end is
/// dropped. `None` for binary content.
fn text_of(bytes: &[u8]) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.to_owned()),
        Err(e) if e.error_len().is_none() => Some(String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()),
        Err(_) => None,
    }
}

fn sandbox_error(e: clawden_sandbox::Error) -> String {
    use clawden_sandbox::Error as E;
    match e {
        E::AtCapacity(_) | E::InUse | E::Unsupported { .. } => format!("the sandbox is unavailable: {e}"),
        other => {
            // The detail may name host paths: it goes to the log, not to the model.
            tracing::warn!(error = %other, "a sandbox tool could not run");
            "the sandbox could not run the command (the server log has the details)".to_owned()
        }
    }
}

impl SandboxTools {
    /// Tools running in `manager`'s sandboxes, with `settings` as limits.
    pub fn new(manager: Arc<SandboxManager>, settings: SandboxToolSettings) -> Self {
        SandboxTools { manager, settings }
    }

    /// The limits in force.
    pub fn settings(&self) -> &SandboxToolSettings {
        &self.settings
    }

    /// Runs `argv` in the context's sandbox with `stdin` (or `/dev/null`) and collects at most
    /// `cap` bytes of each output stream.
    async fn run_command(
        &self,
        ctx: &ToolContext,
        argv: Vec<String>,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        cap: usize,
    ) -> Result<Captured, String> {
        let key = SandboxKey { instance: ctx.instance, member: ctx.member };
        let policy = EgressPolicy { allow: ctx.egress_allow.clone() };
        let mut request = ExecRequest::new(argv).with_timeout(timeout);
        request.cwd = WORKSPACE.to_owned();
        request.stdin = if stdin.is_some() { ExecStdio::Piped } else { ExecStdio::Null };
        let work = async {
            let mut process = self.manager.exec(&key, policy, request).await.map_err(sandbox_error)?;
            let input = process.stdin.take();
            let feed = async move {
                if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
                    // The command may exit without reading everything: not an error here.
                    let _ = pipe.write_all(&bytes).await;
                    let _ = pipe.shutdown().await;
                }
            };
            let (_, (stdout, stdout_truncated), (stderr, stderr_truncated)) =
                tokio::join!(feed, read_capped(process.stdout.take(), cap), read_capped(process.stderr.take(), cap));
            let outcome = process.wait().await.map_err(sandbox_error)?;
            Ok(Captured { code: outcome.code, stdout, stdout_truncated, stderr, stderr_truncated })
        };
        let limit = timeout.saturating_add(WAIT_GRACE);
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("the sandbox did not finish within {} s", limit.as_secs())),
        }
    }

    /// Runs a fixed `sh -c SCRIPT sh ARGS…` (arguments are positional, never interpolated).
    async fn run_script(
        &self,
        ctx: &ToolContext,
        script: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
        cap: usize,
    ) -> Result<Captured, String> {
        let mut argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned(), "sh".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        self.run_command(ctx, argv, stdin, self.settings.file_timeout, cap).await
    }

    /// Reads a whole file of at most `cap` bytes: `Ok(None)` if it does not exist.
    async fn read_whole(&self, ctx: &ToolContext, path: &str, cap: usize) -> Result<Option<Vec<u8>>, String> {
        let limit = cap.saturating_add(1).to_string();
        let out = self.run_script(ctx, READ_WHOLE, &[path, &limit], None, cap.saturating_add(1)).await?;
        match out.code {
            0 if out.stdout.len() > cap => Err(format!("{path} is larger than {cap} bytes")),
            0 => Ok(Some(out.stdout)),
            EXIT_NOT_FOUND => Ok(None),
            EXIT_IS_DIRECTORY => Err(format!("{path} is a directory")),
            _ => Err(failure_text(path, &out)),
        }
    }

    /// Writes `content` to `path` (refusing the rules files), creating parent directories.
    async fn write_file(&self, ctx: &ToolContext, path: &str, content: Vec<u8>) -> Result<(), String> {
        if is_rules_path(path) {
            return Err(rules_refusal(path));
        }
        if content.len() > self.settings.write_cap_bytes {
            return Err(format!("the content is larger than {} bytes", self.settings.write_cap_bytes));
        }
        let out = self.run_script(ctx, WRITE, &[path], Some(content), self.settings.output_cap_bytes).await?;
        match out.code {
            0 => Ok(()),
            EXIT_THROUGH_LINK => Err(link_refusal(path)),
            _ => Err(failure_text(path, &out)),
        }
    }

    async fn remove_file(&self, ctx: &ToolContext, path: &str) -> Result<(), String> {
        if is_rules_path(path) {
            return Err(rules_refusal(path));
        }
        let out = self.run_script(ctx, REMOVE, &[path], None, self.settings.output_cap_bytes).await?;
        if out.code == EXIT_THROUGH_LINK {
            Err(link_refusal(path))
        } else if out.code == 0 {
            Ok(())
        } else {
            Err(failure_text(path, &out))
        }
    }

    async fn exec(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let command = args.string("command")?;
        if command.trim().is_empty() {
            return Err("command is empty".into());
        }
        let max = self.settings.max_exec_timeout.as_secs().max(1);
        let timeout = match args.opt_u64("timeout_secs")? {
            None => self.settings.default_exec_timeout,
            Some(s) if (1..=max).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(format!("timeout_secs must be between 1 and {max}")),
        };
        let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), command.to_owned()];
        let out = self.run_command(ctx, argv, None, timeout, self.settings.output_cap_bytes).await?;
        let text = exec_report(&out, timeout, self.settings.output_cap_bytes);
        if out.code == 0 {
            Ok(text)
        } else {
            Err(text)
        }
    }

    async fn read(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let path = sandbox_path(args.string("path")?)?;
        let offset = args.opt_u64("offset")?.unwrap_or(1);
        if offset == 0 {
            return Err("offset counts lines from 1".into());
        }
        let limit = args.opt_u64("limit")?;
        if limit == Some(0) {
            return Err("limit must be at least 1".into());
        }
        let cap = self.settings.read_cap_bytes;
        let (offset_arg, limit_arg, cap_arg) = (
            offset.to_string(),
            limit.map(|l| l.saturating_add(1).to_string()).unwrap_or_default(),
            cap.saturating_add(1).to_string(),
        );
        let out = self
            .run_script(ctx, READ_LINES, &[&path, &offset_arg, &limit_arg, &cap_arg], None, cap.saturating_add(1))
            .await?;
        match out.code {
            0 => {}
            EXIT_NOT_FOUND => return Err(format!("{path} does not exist")),
            EXIT_IS_DIRECTORY => return Err(format!("{path} is a directory (use ls)")),
            _ => return Err(failure_text(&path, &out)),
        }
        let cut = out.stdout.len() > cap;
        let bytes = &out.stdout[..out.stdout.len().min(cap)];
        let Some(mut text) = text_of(bytes) else {
            return Err(format!("{path} is a binary file (not UTF-8 text); it cannot be read as text"));
        };
        if cut {
            text.push_str(&format!("\n[output truncated at {cap} bytes; read further with offset and limit]"));
        } else if let Some(limit) = limit {
            // One line more than asked was read to know whether the file goes on.
            let lines = text.split_inclusive('\n').count() as u64;
            if lines > limit {
                let keep: usize =
                    text.split_inclusive('\n').take(usize::try_from(limit).unwrap_or(usize::MAX)).map(str::len).sum();
                text.truncate(keep);
                text.push_str(&format!("\n[more lines follow; continue with offset {}]", offset.saturating_add(limit)));
            }
        }
        if text.is_empty() {
            return Ok(if offset > 1 {
                format!("[{path} has no lines from {offset} on]")
            } else {
                format!("[{path} is empty]")
            });
        }
        Ok(text)
    }

    async fn write(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let path = sandbox_path(args.string("path")?)?;
        let content = args.string("content")?;
        self.write_file(ctx, &path, content.as_bytes().to_vec()).await?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
    }

    async fn edit(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let path = sandbox_path(args.string("path")?)?;
        let old = args.string("old_string")?;
        let new = args.string("new_string")?;
        let all = args.opt_bool("replace_all")?.unwrap_or(false);
        if is_rules_path(&path) {
            return Err(rules_refusal(&path));
        }
        if old.is_empty() {
            return Err("old_string is empty".into());
        }
        let bytes = self
            .read_whole(ctx, &path, self.settings.write_cap_bytes)
            .await?
            .ok_or_else(|| format!("{path} does not exist"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{path} is a binary file (not UTF-8 text)"))?;
        let count = text.matches(old).count();
        // The result's size before building it: a replacement that would grow past the cap is
        // refused without allocating it.
        let grown = text.len() as u128 + (count as u128) * (new.len() as u128);
        let shrunk = (count as u128) * (old.len() as u128);
        if count > 0 && (count == 1 || all) && grown.saturating_sub(shrunk) > self.settings.write_cap_bytes as u128 {
            return Err(format!("the edited file would be larger than {} bytes", self.settings.write_cap_bytes));
        }
        let replaced = match count {
            0 => return Err(format!("old_string was not found in {path}")),
            1 => text.replacen(old, new, 1),
            _ if all => text.replace(old, new),
            n => {
                return Err(format!(
                    "old_string occurs {n} times in {path}; give more context to make it unique, or set replace_all"
                ))
            }
        };
        self.write_file(ctx, &path, replaced.into_bytes()).await?;
        Ok(format!("replaced {count} occurrence{} in {path}", if count == 1 { "" } else { "s" }))
    }

    async fn ls(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let path = sandbox_path(args.opt_string("path")?.unwrap_or(WORKSPACE))?;
        let argv = vec!["ls".to_owned(), "-la".to_owned(), "--".to_owned(), path.clone()];
        let out = self.run_command(ctx, argv, None, self.settings.file_timeout, self.settings.output_cap_bytes).await?;
        if out.code != 0 {
            return Err(failure_text(&path, &out));
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.stdout_truncated {
            text.push_str(&format!("\n[output truncated at {} bytes]", self.settings.output_cap_bytes));
        }
        Ok(text)
    }

    async fn apply_patch(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let text = args.string("patch")?;
        if text.len() > self.settings.patch_cap_bytes {
            return Err(format!("the patch is larger than {} bytes", self.settings.patch_cap_bytes));
        }
        let files = patch::parse(text)?;
        if files.len() > self.settings.patch_max_files {
            return Err(format!("the patch touches more than {} files", self.settings.patch_max_files));
        }
        // Everything is checked and applied in memory first: a patch that fails anywhere
        // changes nothing.
        let mut planned = Vec::with_capacity(files.len());
        for file in &files {
            let target = patch::target_path(file)?;
            if is_rules_path(&target) {
                return Err(rules_refusal(&target));
            }
            let current = self.read_whole(ctx, &target, self.settings.write_cap_bytes).await?;
            let current = match current {
                Some(bytes) => {
                    Some(String::from_utf8(bytes).map_err(|_| format!("{target} is a binary file (not UTF-8 text)"))?)
                }
                None => None,
            };
            let result = patch::apply(file, current.as_deref()).map_err(|e| format!("{target}: {e}"))?;
            if let patch::Applied::Write(content) = &result {
                if content.len() > self.settings.write_cap_bytes {
                    return Err(format!("{target} would be larger than {} bytes", self.settings.write_cap_bytes));
                }
            }
            planned.push((target, file.hunks.len(), current.is_none(), result));
        }
        let mut report = Vec::with_capacity(planned.len());
        for (target, hunks, created, result) in planned {
            match result {
                patch::Applied::Write(content) => {
                    self.write_file(ctx, &target, content.into_bytes()).await?;
                    let verb = if created { "created" } else { "patched" };
                    report.push(format!("{verb} {target} ({hunks} hunk{})", if hunks == 1 { "" } else { "s" }));
                }
                patch::Applied::Delete => {
                    self.remove_file(ctx, &target).await?;
                    report.push(format!("deleted {target}"));
                }
            }
        }
        Ok(report.join("\n"))
    }

    async fn web_fetch(&self, ctx: &ToolContext, args: &Args<'_>) -> Result<String, String> {
        let raw = args.string("url")?;
        let max_chars = match args.opt_u64("max_chars")? {
            None => self.settings.web_fetch_default_chars,
            Some(0) => return Err("max_chars must be at least 1".into()),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(self.settings.web_fetch_max_chars),
        };
        let url = web::check_url(raw, &EgressPolicy { allow: ctx.egress_allow.clone() })?;
        let argv = web::curl_argv(&url, self.settings.web_fetch_timeout, self.settings.web_fetch_body_cap_bytes);
        // curl's own --max-time ends the transfer; the sandbox limit is a backstop past it.
        let timeout = self.settings.web_fetch_timeout.saturating_add(Duration::from_secs(5));
        let out = self.run_command(ctx, argv, None, timeout, self.settings.web_fetch_body_cap_bytes).await?;
        web::report(&url, &out, max_chars, self.settings.web_fetch_body_cap_bytes)
    }
}

fn link_refusal(path: &str) -> String {
    format!("{path} goes through a symbolic link; write to the real path instead")
}

fn rules_refusal(path: &str) -> String {
    format!(
        "{path} holds the agent's rules; it can only be changed by an owner or admin through the dashboard, \
         never by a tool"
    )
}

/// What a failed file command said, for the model.
fn failure_text(path: &str, out: &Captured) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    match out.code {
        clawden_sandbox::EXIT_TIMEOUT => format!("{path}: the command timed out"),
        _ if stderr.is_empty() => format!("{path}: failed with exit code {}", out.code),
        _ => format!("{path}: {stderr}"),
    }
}

/// The text the model sees for an `exec`.
fn exec_report(out: &Captured, timeout: Duration, cap: usize) -> String {
    let mut text = String::new();
    let mut section = |name: &str, bytes: &[u8], truncated: bool| {
        if bytes.is_empty() && !truncated {
            return;
        }
        text.push_str(&format!("[{name}]\n"));
        text.push_str(&String::from_utf8_lossy(bytes));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if truncated {
            text.push_str(&format!("[output truncated at {cap} bytes]\n"));
        }
    };
    section("stdout", &out.stdout, out.stdout_truncated);
    section("stderr", &out.stderr, out.stderr_truncated);
    let status = match out.code {
        clawden_sandbox::EXIT_TIMEOUT => format!(
            "[exit code 124: timed out after {} s; the command and everything it started were killed]",
            timeout.as_secs()
        ),
        clawden_sandbox::EXIT_KILLED => "[exit code 137: killed (SIGKILL), usually because the sandbox reached its \
                                         memory limit; the sandbox restarts on the next call]"
            .to_owned(),
        clawden_sandbox::EXIT_SANDBOX_FAILURE => "[exit code 125: the sandbox could not run the command]".to_owned(),
        127 => "[exit code 127: command not found]".to_owned(),
        code => format!("[exit code {code}]"),
    };
    text.push_str(&status);
    text
}

#[async_trait]
impl ToolExecutor for SandboxTools {
    #[tracing::instrument(skip_all, fields(instance.id = %ctx.instance, tool = %tool))]
    async fn run(&self, ctx: &ToolContext, tool: ToolName, arguments: &serde_json::Value) -> ToolOutput {
        let args = match Args::new(tool, arguments) {
            Ok(a) => a,
            Err(e) => return ToolOutput::error(e),
        };
        let result = match tool {
            ToolName::Exec => self.exec(ctx, &args).await,
            ToolName::Read => self.read(ctx, &args).await,
            ToolName::Write => self.write(ctx, &args).await,
            ToolName::Edit => self.edit(ctx, &args).await,
            ToolName::Ls => self.ls(ctx, &args).await,
            ToolName::ApplyPatch => self.apply_patch(ctx, &args).await,
            ToolName::WebFetch => self.web_fetch(ctx, &args).await,
            ToolName::MemoryWrite => Err("memory_write is not a sandbox tool".to_owned()),
        };
        match result {
            Ok(text) => ToolOutput::ok(text),
            Err(text) => ToolOutput::error(text),
        }
    }

    async fn stop_instance(&self, instance: InstanceId) {
        for key in self.manager.running().into_iter().filter(|k| k.instance == instance) {
            if let Err(e) = self.manager.stop(&key, StopReason::Requested).await {
                tracing::error!(sandbox = %key, error = %e, "stopping a sandbox on request failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(code: i32, stdout: &str, stderr: &str) -> Captured {
        Captured {
            code,
            stdout: stdout.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr: stderr.as_bytes().to_vec(),
            stderr_truncated: false,
        }
    }

    #[test]
    fn exec_report_explains_timeouts_and_memory_kills() {
        let t = Duration::from_secs(3);
        assert!(exec_report(&captured(124, "", ""), t, 10).contains("timed out after 3 s"));
        assert!(exec_report(&captured(137, "", ""), t, 10).contains("memory limit"));
        let r = exec_report(&captured(2, "out", "err"), t, 10);
        assert_eq!(r, "[stdout]\nout\n[stderr]\nerr\n[exit code 2]");
    }

    #[test]
    fn text_of_drops_a_character_cut_at_the_end_and_refuses_binary() {
        assert_eq!(text_of("héllo".as_bytes()).as_deref(), Some("héllo"));
        assert_eq!(text_of(&"hé".as_bytes()[..2]).as_deref(), Some("h"));
        assert_eq!(text_of(&[0xff, 0xfe, b'a']), None);
        assert_eq!(text_of(b"a\0b"), None);
    }
}
