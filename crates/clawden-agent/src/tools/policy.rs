//! Tool policy: which tools an instance's agent is offered, which calls wait for a human
//! approval, and which are refused.
//!
//! The shape follows OpenClaw's: a `profile` gives a base set of tools, `allow` adds tools or
//! groups, `deny` removes them (deny always wins), and `elevated` names the tools whose calls
//! need an owner's or admin's approval. Names may be tool names, OpenClaw groups
//! (`group:runtime`, `group:fs`, `group:web`, `group:memory`) or patterns with `*`.
//!
//! Defaults (documented in `docs/tools.md`): profile `coding` (every tool but `web_fetch`);
//! `exec`, `apply_patch`, `write` and `edit` elevated, except that `write` and `edit` inside
//! `/workspace/scratch` run without asking; no egress domains. The base tier gets no tools
//! whatever the policy says. No tool may write the rules files (`SOUL.md`, `AGENTS.md`,
//! `USER.md`, `IDENTITY.md`, `TOOLS.md`).

use super::{is_rules_path, sandbox_path, ToolName, WORKSPACE};
use clawden_core::Tier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// A base set of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Look, don't touch: `read`, `ls`, `memory_write`.
    Minimal,
    /// Files and commands: everything but `web_fetch`.
    #[default]
    Coding,
    /// Every tool.
    Full,
}

impl Profile {
    /// The profile's tools.
    pub fn tools(self) -> &'static [ToolName] {
        use ToolName::*;
        match self {
            Profile::Minimal => &[Read, Ls, MemoryWrite],
            Profile::Coding => &[Exec, Read, Write, Edit, Ls, ApplyPatch, MemoryWrite],
            Profile::Full => &ToolName::ALL,
        }
    }
}

/// An instance's tool policy, as stored and as `GET/PUT /api/v1/instances/{id}/policy` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolPolicy {
    /// The base set of tools.
    pub profile: Profile,
    /// Tools or groups added to the profile's.
    pub allow: Vec<String>,
    /// Tools or groups never offered (wins over `profile` and `allow`).
    pub deny: Vec<String>,
    /// Tools or groups whose calls wait for an approval.
    pub elevated: Vec<String>,
    /// Folders where `write` and `edit` run without an approval even when elevated.
    pub scratch: Vec<String>,
    /// Domains `web_fetch` (and anything in the sandbox) may reach through the egress proxy:
    /// `example.com` or `*.example.com`.
    pub egress_allow: Vec<String>,
    /// Exact `exec` commands (as argument vectors) an owner or admin allowed for good.
    pub always_allow: Vec<Vec<String>>,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        ToolPolicy {
            profile: Profile::Coding,
            allow: Vec::new(),
            deny: Vec::new(),
            elevated: ["exec", "apply_patch", "write", "edit"].map(String::from).to_vec(),
            scratch: vec![format!("{WORKSPACE}/scratch")],
            egress_allow: Vec::new(),
            always_allow: Vec::new(),
        }
    }
}

/// What the policy says about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Allowed,
    /// Run it once an owner or admin allows this exact call.
    NeedsApproval,
    /// Do not run it; the text tells the model why.
    Refused(String),
}

/// The OpenClaw groups.
pub const GROUPS: [(&str, &[ToolName]); 5] = [
    ("group:runtime", &[ToolName::Exec]),
    ("group:fs", &[ToolName::Read, ToolName::Write, ToolName::Edit, ToolName::ApplyPatch, ToolName::Ls]),
    ("group:web", &[ToolName::WebFetch]),
    ("group:memory", &[ToolName::MemoryWrite]),
    ("group:all", &ToolName::ALL),
];

const MAX_ENTRIES: usize = 64;
const MAX_EGRESS: usize = 256;
const MAX_ALWAYS: usize = 200;
const MAX_ARGV_WORDS: usize = 64;
const MAX_WORD_BYTES: usize = 4096;

/// Whether a `*` pattern matches `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The tools an entry names: a tool, a group, or a `*` pattern over tool names.
pub fn expand(entry: &str) -> Vec<ToolName> {
    let entry = entry.trim().to_ascii_lowercase();
    if let Some((_, tools)) = GROUPS.iter().find(|(name, _)| *name == entry) {
        return tools.to_vec();
    }
    if entry.contains('*') {
        return ToolName::ALL.into_iter().filter(|t| glob(&entry, t.as_str())).collect();
    }
    ToolName::parse(&entry).into_iter().collect()
}

fn expand_all(entries: &[String]) -> BTreeSet<ToolName> {
    entries.iter().flat_map(|e| expand(e)).collect()
}

/// Checks a domain of `egress_allow` and returns it normalised (lowercase, no trailing dot).
fn egress_domain(raw: &str) -> Result<String, String> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = d.strip_prefix("*.").unwrap_or(&d);
    // The egress proxy's own rule for a name, so the policy accepts exactly what it can match.
    if !name.contains('.') || !clawden_sandbox::egress::valid_hostname(name) {
        return Err(format!("{raw:?} is not a domain name (like example.com or *.example.com)"));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{raw:?} is an address; egress_allow takes domain names only"));
    }
    Ok(d)
}

impl ToolPolicy {
    /// A policy that offers no tool at all: what a stored policy this version cannot read
    /// counts as, so an unreadable policy never turns into the (wider) defaults.
    pub fn closed() -> Self {
        ToolPolicy { deny: vec!["group:all".into()], ..ToolPolicy::default() }
    }

    /// The policy as stored (`None`: nothing stored, the defaults), or the parse error.
    pub fn from_stored(body: Option<&str>) -> Result<Self, serde_json::Error> {
        body.map_or_else(|| Ok(ToolPolicy::default()), serde_json::from_str)
    }

    /// Checks every field and normalises names (lowercase, scratch paths resolved, domains
    /// without trailing dots). The error says what is wrong, for a 422.
    pub fn validated(mut self) -> Result<ToolPolicy, String> {
        for (field, entries) in [("allow", &mut self.allow), ("deny", &mut self.deny), ("elevated", &mut self.elevated)]
        {
            if entries.len() > MAX_ENTRIES {
                return Err(format!("{field} has more than {MAX_ENTRIES} entries"));
            }
            for entry in entries.iter_mut() {
                *entry = entry.trim().to_ascii_lowercase();
                if entry.len() > 64 || expand(entry).is_empty() {
                    return Err(format!(
                        "{field}: {entry:?} names no tool (tools: {}; groups: {})",
                        ToolName::ALL.map(|t| t.as_str()).join(", "),
                        GROUPS.map(|(g, _)| g).join(", ")
                    ));
                }
            }
        }
        if self.scratch.len() > 16 {
            return Err("scratch has more than 16 entries".into());
        }
        for path in &mut self.scratch {
            let resolved = sandbox_path(path).map_err(|e| format!("scratch: {e}"))?;
            if !resolved.starts_with(&format!("{WORKSPACE}/")) {
                return Err(format!("scratch: {path:?} is not a folder under {WORKSPACE}"));
            }
            *path = resolved;
        }
        if self.egress_allow.len() > MAX_EGRESS {
            return Err(format!("egress_allow has more than {MAX_EGRESS} entries"));
        }
        self.egress_allow = self.egress_allow.iter().map(|d| egress_domain(d)).collect::<Result<_, _>>()?;
        self.egress_allow.dedup();
        if self.always_allow.len() > MAX_ALWAYS {
            return Err(format!("always_allow has more than {MAX_ALWAYS} commands"));
        }
        for argv in &self.always_allow {
            if let Some(why) = always_allow_refusal(argv) {
                return Err(format!("always_allow: {why}"));
            }
        }
        Ok(self)
    }

    /// The tools offered to the model on `tier`: none on the base tier; otherwise the
    /// profile's plus `allow`, minus `deny`.
    pub fn offered(&self, tier: Tier) -> Vec<ToolName> {
        if tier == Tier::Base {
            return Vec::new();
        }
        let mut tools: BTreeSet<ToolName> = self.profile.tools().iter().copied().collect();
        tools.extend(expand_all(&self.allow));
        for denied in expand_all(&self.deny) {
            tools.remove(&denied);
        }
        ToolName::ALL.into_iter().filter(|t| tools.contains(t)).collect()
    }

    /// Decides one call of the tool the model named `name` with `arguments`.
    pub fn check(&self, tier: Tier, name: &str, arguments: &serde_json::Value) -> Verdict {
        if tier == Tier::Base {
            return Verdict::Refused(
                "tools are not available on the base tier (an invite code upgrades the account)".into(),
            );
        }
        let Some(tool) = ToolName::parse(name) else {
            return Verdict::Refused(format!("there is no tool named {:?}", name.chars().take(64).collect::<String>()));
        };
        if !self.offered(tier).contains(&tool) {
            return Verdict::Refused(format!("the tool {tool} is not allowed by this agent's tool policy"));
        }
        let targets = match written_paths(tool, arguments) {
            Ok(targets) => targets,
            Err(why) => return Verdict::Refused(why),
        };
        if let Some(rules) = targets.iter().find(|p| is_rules_path(p)) {
            return Verdict::Refused(format!(
                "{rules} holds the agent's rules: no tool may change it (owners and admins edit it in the dashboard)"
            ));
        }
        if !expand_all(&self.elevated).contains(&tool) {
            return Verdict::Allowed;
        }
        let in_scratch =
            |p: &String| self.scratch.iter().any(|s| p.starts_with(&format!("{}/", s.trim_end_matches('/'))));
        if matches!(tool, ToolName::Write | ToolName::Edit) && !targets.is_empty() && targets.iter().all(in_scratch) {
            return Verdict::Allowed;
        }
        if tool == ToolName::Exec {
            if let Some(argv) = arguments.get("command").and_then(|c| c.as_str()).and_then(simple_argv) {
                if self.always_allow.contains(&argv) {
                    return Verdict::Allowed;
                }
            }
        }
        Verdict::NeedsApproval
    }

    /// Whether this policy lets the agent do anything `before` did not: a tool offered that was
    /// not, a tool no longer elevated, a new scratch folder, egress domain or command allowed
    /// always. Such a change needs a browser session; a bearer credential (which the agent
    /// might reach) may only tighten.
    pub fn widens(&self, before: &ToolPolicy) -> bool {
        let offered_before: BTreeSet<ToolName> = before.offered(Tier::Invite).into_iter().collect();
        let offered_now: BTreeSet<ToolName> = self.offered(Tier::Invite).into_iter().collect();
        let elevated_before = expand_all(&before.elevated);
        let elevated_now = expand_all(&self.elevated);
        !offered_now.is_subset(&offered_before)
            || elevated_before.iter().any(|t| offered_now.contains(t) && !elevated_now.contains(t))
            || self.scratch.iter().any(|s| !before.scratch.contains(s))
            || self.egress_allow.iter().any(|d| !before.egress_allow.contains(d))
            || self.always_allow.iter().any(|a| !before.always_allow.contains(a))
    }

    /// Adds an `exec` call's exact command to `always_allow`, or says why it may not be.
    pub fn allow_always(&mut self, tool: &str, arguments: &serde_json::Value) -> Result<(), String> {
        if tool != ToolName::Exec.as_str() {
            return Err("\"allow always\" is only for exec commands; allow this call once instead".into());
        }
        let command = arguments.get("command").and_then(|c| c.as_str()).unwrap_or_default();
        let argv = simple_argv(command).ok_or_else(|| {
            "this command uses shell syntax (pipes, redirections, variables, globs, several commands); \
             only a plain command can be allowed always"
                .to_owned()
        })?;
        if let Some(why) = always_allow_refusal(&argv) {
            return Err(why);
        }
        if self.always_allow.len() >= MAX_ALWAYS {
            return Err(format!("the policy already holds {MAX_ALWAYS} commands allowed always"));
        }
        if !self.always_allow.contains(&argv) {
            self.always_allow.push(argv);
        }
        Ok(())
    }
}

/// The sandbox paths a call writes, resolved; an error for unusable path arguments.
fn written_paths(tool: ToolName, arguments: &serde_json::Value) -> Result<Vec<String>, String> {
    match tool {
        ToolName::Write | ToolName::Edit => {
            let raw = arguments.get("path").and_then(|p| p.as_str()).ok_or("the path argument is missing")?;
            Ok(vec![sandbox_path(raw)?])
        }
        ToolName::ApplyPatch => {
            let patch = arguments.get("patch").and_then(|p| p.as_str()).ok_or("the patch argument is missing")?;
            patch_targets(patch)
        }
        _ => Ok(Vec::new()),
    }
}

/// The files a unified diff touches, resolved under `/workspace`, read by the same parser that
/// `apply_patch` applies with (so the policy and the executor can never disagree about them).
/// Both names of a file part count, so a part that merely names a rules file is refused too.
pub fn patch_targets(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for file in super::patch::parse(text)? {
        for name in super::patch::named_paths(&file)? {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// Splits a plain command line into its words, or `None` when it uses any shell syntax
/// beyond words and quotes: pipes, redirections, `;`, `&`, variables, command substitution,
/// globs, `~`, comments, several lines, or an environment assignment first.
pub fn simple_argv(command: &str) -> Option<Vec<String>> {
    const META: &[char] =
        &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', ']', '{', '}', '~', '#', '!', '\n', '\r'];
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' | '!' => return None,
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => return None,
                    other => word.push(other),
                }
            }
            c if META.contains(&c) => return None,
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let first = words.first()?;
    if first.contains('=') || words.len() > MAX_ARGV_WORDS || words.iter().any(|w| w.len() > MAX_WORD_BYTES) {
        return None;
    }
    Some(words)
}

/// The programs an exact command may be allowed always with: they read files and print
/// things, and none of them runs other programs, loads plugins, or reads a configuration file
/// that could (the sandbox's `HOME` and working directory are the agent-writable workspace).
/// Everything else — shells and their builtins, interpreters, build tools, wrappers that run
/// another program, anything with a `--compress-program`-style hook — can only be allowed one
/// call at a time.
const ALWAYS_ALLOWABLE: &[&str] = &[
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "stat",
    "du",
    "df",
    "pwd",
    "echo",
    "printf",
    "true",
    "false",
    "date",
    "uname",
    "id",
    "whoami",
    "hostname",
    "uptime",
    "free",
    "nproc",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "grep",
    "egrep",
    "fgrep",
    "diff",
    "cmp",
    "comm",
    "cut",
    "tr",
    "nl",
    "od",
    "hexdump",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "base64",
    "seq",
    "sleep",
    "test",
    "tree",
    "file",
    "which",
    "ps",
];

/// Where a sandboxed process can write (or reach what it wrote): a file there may change after
/// an approval. `/proc` and `/dev/fd` name the working directory and open files by other names.
const WRITABLE: &[&str] =
    &["/workspace", "/tmp", "/var/tmp", "/dev/shm", "/dev/fd", "/run", "/home", "/root", "/proc", "/sys"];

/// Why an exact command may not be allowed for good, or `None` when it may.
pub fn always_allow_refusal(argv: &[String]) -> Option<String> {
    let Some(program) = argv.first() else { return Some("the command is empty".into()) };
    if argv.len() > MAX_ARGV_WORDS || argv.iter().any(|w| w.len() > MAX_WORD_BYTES || w.contains('\0')) {
        return Some("the command is too long".into());
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    let system_path = ["/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"]
        .iter()
        .any(|p| program.strip_prefix(p).is_some_and(|rest| !rest.contains('/')));
    if program.contains('/') && !system_path {
        return Some(format!(
            "{program} is not a system program: a file elsewhere could change after the approval, so it \
             cannot be allowed always"
        ));
    }
    if !ALWAYS_ALLOWABLE.contains(&base) {
        return Some(format!(
            "{base} is not on the list of programs that can be allowed always (programs that only read and \
             print, and never run other code); allow each call once instead"
        ));
    }
    let writable = |word: &str| -> bool {
        let path_like = word.contains('/') || word.starts_with('.');
        if !path_like {
            return false;
        }
        // Options carry paths after `=` (`--file=/workspace/x`).
        let word = word.split_once('=').map_or(word, |(_, value)| value);
        if !(word.contains('/') || word.starts_with('.')) {
            return false;
        }
        let resolved = sandbox_path(word).unwrap_or_default();
        resolved.is_empty() || WRITABLE.iter().any(|w| resolved == *w || resolved.starts_with(&format!("{w}/")))
    };
    if let Some(word) = argv[1..].iter().find(|w| writable(w)) {
        return Some(format!(
            "the command names {word}, in a writable place whose content could change after the approval, so \
             it cannot be allowed always"
        ));
    }
    None
}

/// The digest an approval binds to: SHA-256 over the tool name and the arguments in a
/// canonical JSON form (object keys sorted), so a changed argument needs a new approval.
pub fn call_digest(tool: &str, arguments: &serde_json::Value) -> String {
    fn canonical(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(arguments, &mut text);
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update([0]);
    hasher.update(text.as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_tool_names() {
        assert!(glob("*", "exec"));
        assert!(glob("web_*", "web_fetch"));
        assert!(glob("*_patch", "apply_patch"));
        assert!(glob("a*p*h", "apply_patch"));
        assert!(!glob("web_*", "exec"));
        assert!(!glob("exe", "exec"));
        assert_eq!(expand("group:fs").len(), 5);
        assert_eq!(expand("*"), ToolName::ALL.to_vec());
        assert!(expand("group:nope").is_empty());
    }

    #[test]
    fn base_tier_gets_nothing_whatever_the_policy() {
        let policy = ToolPolicy { profile: Profile::Full, allow: vec!["*".into()], ..ToolPolicy::default() };
        assert!(policy.offered(Tier::Base).is_empty());
        assert!(matches!(policy.check(Tier::Base, "read", &json!({"path": "a"})), Verdict::Refused(_)));
    }

    #[test]
    fn deny_wins_over_allow_and_profile() {
        let policy = ToolPolicy {
            profile: Profile::Full,
            allow: vec!["exec".into()],
            deny: vec!["group:runtime".into()],
            ..ToolPolicy::default()
        };
        assert!(!policy.offered(Tier::Invite).contains(&ToolName::Exec));
        assert!(matches!(policy.check(Tier::Invite, "exec", &json!({"command": "ls"})), Verdict::Refused(_)));
        let default = ToolPolicy::default();
        assert!(!default.offered(Tier::Invite).contains(&ToolName::WebFetch));
        let with_web = ToolPolicy { allow: vec!["group:web".into()], ..ToolPolicy::default() };
        assert!(with_web.offered(Tier::Invite).contains(&ToolName::WebFetch));
    }

    #[test]
    fn elevated_defaults_and_scratch() {
        let p = ToolPolicy::default();
        assert_eq!(p.check(Tier::Invite, "exec", &json!({"command": "ls"})), Verdict::NeedsApproval);
        assert_eq!(p.check(Tier::Invite, "read", &json!({"path": "a"})), Verdict::Allowed);
        assert_eq!(p.check(Tier::Invite, "write", &json!({"path": "scratch/a", "content": ""})), Verdict::Allowed);
        assert_eq!(
            p.check(Tier::Invite, "write", &json!({"path": "scratch/../a", "content": ""})),
            Verdict::NeedsApproval
        );
        assert_eq!(p.check(Tier::Invite, "write", &json!({"path": "notes.md", "content": ""})), Verdict::NeedsApproval);
        assert_eq!(p.check(Tier::Invite, "memory_write", &json!({"content": "x"})), Verdict::Allowed);
    }

    #[test]
    fn rules_files_are_never_written() {
        let p = ToolPolicy { elevated: vec![], ..ToolPolicy::default() };
        for args in [
            json!({"path": "SOUL.md", "content": "x"}),
            json!({"path": "/workspace/agents.md", "content": "x"}),
            json!({"path": "scratch/../../workspace/TOOLS.md", "content": "x"}),
        ] {
            assert!(matches!(p.check(Tier::Invite, "write", &args), Verdict::Refused(_)), "{args}");
        }
        let patch = "--- a/SOUL.md\n+++ b/SOUL.md\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(matches!(p.check(Tier::Invite, "apply_patch", &json!({"patch": patch})), Verdict::Refused(_)));
        let outside = "--- a/../etc/passwd\n+++ b/../etc/passwd\n";
        assert!(matches!(p.check(Tier::Invite, "apply_patch", &json!({"patch": outside})), Verdict::Refused(_)));
    }

    #[test]
    fn plain_commands_split_and_shell_syntax_does_not() {
        assert_eq!(simple_argv("ls -la /usr"), Some(vec!["ls".into(), "-la".into(), "/usr".into()]));
        assert_eq!(simple_argv("echo 'a b' \"c d\""), Some(vec!["echo".into(), "a b".into(), "c d".into()]));
        for bad in
            ["ls | sh", "a; b", "echo $HOME", "echo `id`", "rm *", "X=1 ls", "ls > f", "echo \"$x\"", "ls\nid", "'open"]
        {
            assert_eq!(simple_argv(bad), None, "{bad}");
        }
    }

    #[test]
    fn allow_always_refuses_writable_scripts_and_interpreters() {
        let mut p = ToolPolicy::default();
        for command in [
            "/workspace/run.sh",
            "./run.sh",
            "/tmp/x",
            "bash run.sh",
            "python3 -c 'print(1)'",
            "cat /workspace/a",
            "ls | sh",
        ] {
            assert!(p.allow_always("exec", &json!({"command": command})).is_err(), "{command}");
        }
        p.allow_always("exec", &json!({"command": "ls -la"})).unwrap();
        p.allow_always("exec", &json!({"command": "/usr/bin/uname -a"})).unwrap();
        assert_eq!(p.check(Tier::Invite, "exec", &json!({"command": "ls -la"})), Verdict::Allowed);
        assert_eq!(p.check(Tier::Invite, "exec", &json!({"command": "ls  -la"})), Verdict::Allowed);
        assert_eq!(p.check(Tier::Invite, "exec", &json!({"command": "ls -la; id"})), Verdict::NeedsApproval);
        assert_eq!(p.check(Tier::Invite, "exec", &json!({"command": "ls -l"})), Verdict::NeedsApproval);
        assert!(p.allow_always("write", &json!({"path": "a"})).is_err());
    }

    #[test]
    fn widening_is_told_from_tightening() {
        let base = ToolPolicy::default();
        let tighter = ToolPolicy { deny: vec!["exec".into()], egress_allow: vec![], ..ToolPolicy::default() };
        assert!(!tighter.widens(&base));
        assert!(!base.widens(&base));
        for wider in [
            ToolPolicy { elevated: vec![], ..ToolPolicy::default() },
            ToolPolicy { profile: Profile::Full, ..ToolPolicy::default() },
            ToolPolicy { egress_allow: vec!["example.com".into()], ..ToolPolicy::default() },
            ToolPolicy { scratch: vec!["/workspace/other".into()], ..ToolPolicy::default() },
            ToolPolicy { always_allow: vec![vec!["ls".into()]], ..ToolPolicy::default() },
        ] {
            assert!(wider.widens(&base), "{wider:?}");
        }
        // Re-enabling a denied tool widens too.
        assert!(base.widens(&tighter));
    }

    #[test]
    fn digests_bind_the_exact_call() {
        let a = call_digest("exec", &json!({"command": "echo A", "timeout_secs": 5}));
        let a2 = call_digest("exec", &json!({"timeout_secs": 5, "command": "echo A"}));
        let b = call_digest("exec", &json!({"command": "echo B", "timeout_secs": 5}));
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, call_digest("write", &json!({"command": "echo A", "timeout_secs": 5})));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn validation_names_the_problem() {
        let ok = ToolPolicy { egress_allow: vec!["Example.COM.".into(), "*.docs.rs".into()], ..ToolPolicy::default() };
        assert_eq!(ok.validated().unwrap().egress_allow, ["example.com", "*.docs.rs"]);
        for bad in [
            ToolPolicy { allow: vec!["rm_everything".into()], ..ToolPolicy::default() },
            ToolPolicy { egress_allow: vec!["127.0.0.1".into()], ..ToolPolicy::default() },
            ToolPolicy { egress_allow: vec!["localhost".into()], ..ToolPolicy::default() },
            ToolPolicy { scratch: vec!["/tmp".into()], ..ToolPolicy::default() },
            ToolPolicy { always_allow: vec![vec!["/workspace/x.sh".into()]], ..ToolPolicy::default() },
        ] {
            assert!(bad.validated().is_err());
        }
        let unknown: Result<ToolPolicy, _> = serde_json::from_str(r#"{"profile":"full","surprise":1}"#);
        assert!(unknown.is_err());
    }
}
