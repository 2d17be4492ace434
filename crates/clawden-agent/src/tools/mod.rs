//! The agent's tools: their names and groups, the JSON-schema definitions a provider
//! receives, the path rules every file tool shares, and the [`ToolExecutor`] trait that runs
//! them inside the instance's sandbox.
//!
//! Nothing here runs on the host: an executor runs each call in the sandbox of one
//! (instance, member) pair. [`policy`] decides which tools an instance offers, which calls
//! wait for a human approval and which are refused outright.

pub(crate) mod patch;
pub mod policy;
pub mod sandboxed;

use async_trait::async_trait;
use clawden_core::{InstanceId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::provider::ToolDefinition;

/// Every tool clawden offers, by its OpenClaw name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    /// Runs a shell command (`sh -c`) in the sandbox.
    Exec,
    /// Reads a text file.
    Read,
    /// Creates or replaces a file.
    Write,
    /// Replaces an exact string in a file.
    Edit,
    /// Lists a directory.
    Ls,
    /// Applies a unified diff under `/workspace`.
    ApplyPatch,
    /// Fetches a URL through the egress proxy and returns its text.
    WebFetch,
    /// Updates the agent's `MEMORY.md` (stored with the workspace files, not in the sandbox).
    MemoryWrite,
}

impl ToolName {
    /// All tools, in the order they are offered.
    pub const ALL: [ToolName; 8] = [
        ToolName::Exec,
        ToolName::Read,
        ToolName::Write,
        ToolName::Edit,
        ToolName::Ls,
        ToolName::ApplyPatch,
        ToolName::WebFetch,
        ToolName::MemoryWrite,
    ];

    /// The name the model calls it by.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::Exec => "exec",
            ToolName::Read => "read",
            ToolName::Write => "write",
            ToolName::Edit => "edit",
            ToolName::Ls => "ls",
            ToolName::ApplyPatch => "apply_patch",
            ToolName::WebFetch => "web_fetch",
            ToolName::MemoryWrite => "memory_write",
        }
    }

    /// The tool called `name`, if there is one.
    pub fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether the tool runs in the sandbox (every tool but `memory_write`).
    pub fn needs_sandbox(self) -> bool {
        self != ToolName::MemoryWrite
    }

    /// The definition given to the provider.
    pub fn definition(self) -> ToolDefinition {
        use serde_json::json;
        let (description, schema) = match self {
            ToolName::Exec => (
                "Run a shell command (sh -c) in your sandbox. The working directory is /workspace. \
                 Output (stdout and stderr) is cut at a size limit; the exit code is reported.",
                json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "The shell command line."},
                        "timeout_secs": {"type": "integer", "minimum": 1, "maximum": 600,
                            "description": "Wall-clock limit in seconds (default 60)."}
                    },
                    "required": ["command"],
                    "additionalProperties": false
                }),
            ),
            ToolName::Read => (
                "Read a UTF-8 text file in your sandbox. Relative paths are under /workspace.",
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "offset": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."},
                        "limit": {"type": "integer", "minimum": 1, "description": "How many lines to return."}
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }),
            ),
            ToolName::Write => (
                "Create or replace a file in your sandbox (parent folders are created). Relative paths \
                 are under /workspace.",
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "content": {"type": "string"}
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false
                }),
            ),
            ToolName::Edit => (
                "Replace an exact string in a file in your sandbox. old_string must occur exactly once \
                 unless replace_all is true.",
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "old_string": {"type": "string"},
                        "new_string": {"type": "string"},
                        "replace_all": {"type": "boolean"}
                    },
                    "required": ["path", "old_string", "new_string"],
                    "additionalProperties": false
                }),
            ),
            ToolName::Ls => (
                "List a directory in your sandbox (default /workspace).",
                json!({
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "additionalProperties": false
                }),
            ),
            ToolName::ApplyPatch => (
                "Apply a unified diff (as made by `diff -u` or `git diff`) to files under /workspace. \
                 Paths in the diff are relative to /workspace; a/ and b/ prefixes are accepted.",
                json!({
                    "type": "object",
                    "properties": {"patch": {"type": "string"}},
                    "required": ["patch"],
                    "additionalProperties": false
                }),
            ),
            ToolName::WebFetch => (
                "Fetch an http(s) URL through the egress proxy and return its text (HTML is reduced to \
                 text). Only domains on the instance's egress allowlist can be reached.",
                json!({
                    "type": "object",
                    "properties": {
                        "url": {"type": "string"},
                        "max_chars": {"type": "integer", "minimum": 1, "description": "Cut the text here."}
                    },
                    "required": ["url"],
                    "additionalProperties": false
                }),
            ),
            ToolName::MemoryWrite => (
                "Update your MEMORY.md: append a note, or replace the whole file.",
                json!({
                    "type": "object",
                    "properties": {
                        "content": {"type": "string"},
                        "mode": {"type": "string", "enum": ["append", "replace"]}
                    },
                    "required": ["content"],
                    "additionalProperties": false
                }),
            ),
        };
        ToolDefinition { name: self.as_str().to_owned(), description: description.to_owned(), input_schema: schema }
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sandbox's writable workspace.
pub const WORKSPACE: &str = "/workspace";

/// The longest path a tool accepts, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Resolves a path a model gave to an absolute, lexically normal path inside the sandbox:
/// relative paths are taken under `/workspace`, `.` and `..` are folded (never above `/`),
/// repeated slashes collapse. Refuses empty paths, NUL bytes and over-long paths.
///
/// This is a name check only; the sandbox itself (read-only root, Landlock) decides what a
/// process may touch, and file tools never follow links out of the workspace.
pub fn sandbox_path(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("the path is empty".into());
    }
    if raw.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(format!("the path is longer than {MAX_PATH_BYTES} bytes"));
    }
    let joined = if raw.starts_with('/') { raw.to_owned() } else { format!("{WORKSPACE}/{raw}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The files that hold the agent's rules (`SOUL.md`, `AGENTS.md`, `USER.md`, `IDENTITY.md`,
/// `TOOLS.md`) at the workspace root, compared without case. No tool may write them.
pub fn is_rules_path(path: &str) -> bool {
    const RULES: [&str; 5] = ["soul.md", "agents.md", "user.md", "identity.md", "tools.md"];
    path.strip_prefix("/workspace/").is_some_and(|name| RULES.iter().any(|r| r.eq_ignore_ascii_case(name)))
}

/// Which sandbox a tool call runs in, and what it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolContext {
    /// The instance whose agent made the call.
    pub instance: InstanceId,
    /// The member whose conversation it is (each member has a sandbox of their own).
    pub member: UserId,
    /// Domains the egress proxy lets this instance reach (`example.com`, `*.example.com`).
    pub egress_allow: Vec<String>,
}

/// What a tool produced, for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The text the model sees.
    pub content: String,
    /// Whether this reports a failure (the model sees it as an error).
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(content: impl Into<String>) -> Self {
        ToolOutput { content: content.into(), is_error: false }
    }

    /// A failure reported to the model.
    pub fn error(content: impl Into<String>) -> Self {
        ToolOutput { content: content.into(), is_error: true }
    }
}

/// Runs sandbox tools. The agent loop has already checked the policy, the approval and the
/// rules files; an executor only runs the call and reports what happened. It never panics on
/// bad arguments: every problem becomes a [`ToolOutput::error`] the model can read.
#[async_trait]
pub trait ToolExecutor: Send + Sync + fmt::Debug {
    /// Runs one call of `tool` (never [`ToolName::MemoryWrite`]) with the model's `arguments`.
    async fn run(&self, ctx: &ToolContext, tool: ToolName, arguments: &serde_json::Value) -> ToolOutput;

    /// Kills every process running in the instance's sandboxes (the owner's "stop").
    async fn stop_instance(&self, instance: InstanceId);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_workspace() {
        assert_eq!(sandbox_path("notes/a.txt").unwrap(), "/workspace/notes/a.txt");
        assert_eq!(sandbox_path("./a/../b").unwrap(), "/workspace/b");
        assert_eq!(sandbox_path("/tmp//x").unwrap(), "/tmp/x");
        assert_eq!(sandbox_path("../../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(sandbox_path("/..").unwrap(), "/");
        assert!(sandbox_path("").is_err());
        assert!(sandbox_path("a\0b").is_err());
        assert!(sandbox_path(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn rules_files_are_recognised_in_any_case() {
        assert!(is_rules_path("/workspace/SOUL.md"));
        assert!(is_rules_path("/workspace/soul.MD"));
        assert!(is_rules_path(&sandbox_path("x/../AGENTS.md").unwrap()));
        assert!(!is_rules_path("/workspace/MEMORY.md"));
        assert!(!is_rules_path("/workspace/sub/SOUL.md"));
        assert!(!is_rules_path("/tmp/SOUL.md"));
    }

    #[test]
    fn every_tool_has_an_object_schema_and_round_trips_its_name() {
        for tool in ToolName::ALL {
            let def = tool.definition();
            assert_eq!(ToolName::parse(&def.name), Some(tool));
            assert_eq!(def.input_schema["type"], "object");
        }
        assert_eq!(ToolName::parse("rm_rf"), None);
    }
}
