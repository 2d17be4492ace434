//! Which paths exist in an agent workspace.

use std::fmt;
use std::str::FromStr;

use super::WorkspaceFileError;

/// The longest skill name.
pub const MAX_SKILL_NAME_CHARS: usize = 64;

/// A skill's name: the `<name>` of `skills/<name>/SKILL.md`.
///
/// 1 to 64 characters of lowercase ASCII letters, digits, `-` and `_`, starting with a letter
/// or digit. Lowercase only, so two skills never collide on a case-insensitive file system
/// when the workspace is exported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkillName(String);

impl SkillName {
    /// Checks a skill name.
    pub fn parse(name: &str) -> Result<Self, WorkspaceFileError> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if first_ok && rest_ok && name.len() <= MAX_SKILL_NAME_CHARS {
            Ok(Self(name.to_owned()))
        } else {
            Err(WorkspaceFileError::BadSkillName)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SkillName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid path in an agent workspace (the OpenClaw layout).
///
/// Only these exist: `SOUL.md`, `AGENTS.md`, `USER.md`, `IDENTITY.md`, `TOOLS.md`,
/// `MEMORY.md`, `HEARTBEAT.md` and `skills/<name>/SKILL.md`. Names are case-sensitive, as in
/// OpenClaw.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkspacePath {
    /// `SOUL.md`: personality, values, boundaries.
    Soul,
    /// `AGENTS.md`: operating rules.
    Agents,
    /// `USER.md`: who the agent works for.
    User,
    /// `IDENTITY.md`: the agent's name, creature, vibe, emoji.
    Identity,
    /// `TOOLS.md`: notes on the tools and environment.
    Tools,
    /// `MEMORY.md`: what the agent has learned; the one file it may update itself.
    Memory,
    /// `HEARTBEAT.md`: the checklist for periodic heartbeat runs.
    Heartbeat,
    /// `skills/<name>/SKILL.md`: one skill.
    Skill(SkillName),
}

impl WorkspacePath {
    /// The files at the workspace root, in the order the system prompt uses (HEARTBEAT.md last:
    /// it is read by heartbeat runs, not put in the chat prompt).
    pub const ROOT_FILES: [WorkspacePath; 7] = [
        WorkspacePath::Soul,
        WorkspacePath::Agents,
        WorkspacePath::User,
        WorkspacePath::Identity,
        WorkspacePath::Tools,
        WorkspacePath::Memory,
        WorkspacePath::Heartbeat,
    ];

    /// Parses and checks a path as a client sends it (`SOUL.md`, `skills/git/SKILL.md`).
    ///
    /// Refused: empty paths, absolute paths (`/…`, `C:…`), backslashes, `.` and `..`
    /// segments, empty segments (`//`, trailing `/`), and every name not listed above.
    pub fn parse(raw: &str) -> Result<Self, WorkspaceFileError> {
        if raw.is_empty() {
            return Err(WorkspaceFileError::EmptyPath);
        }
        let bytes = raw.as_bytes();
        let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
        if raw.starts_with('/') || raw.starts_with('\\') || drive {
            return Err(WorkspaceFileError::AbsolutePath);
        }
        if raw.contains('\\') {
            return Err(WorkspaceFileError::Backslash);
        }
        let segments: Vec<&str> = raw.split('/').collect();
        if segments.iter().any(|s| *s == ".." || *s == ".") {
            return Err(WorkspaceFileError::DotSegment);
        }
        let unknown = || WorkspaceFileError::UnknownFile { path: shorten(raw) };
        match segments.as_slice() {
            [name] => Self::ROOT_FILES.iter().find(|p| p.root_name() == Some(*name)).cloned().ok_or_else(unknown),
            ["skills", name, "SKILL.md"] => Ok(WorkspacePath::Skill(SkillName::parse(name)?)),
            _ => Err(unknown()),
        }
    }

    fn root_name(&self) -> Option<&'static str> {
        Some(match self {
            WorkspacePath::Soul => "SOUL.md",
            WorkspacePath::Agents => "AGENTS.md",
            WorkspacePath::User => "USER.md",
            WorkspacePath::Identity => "IDENTITY.md",
            WorkspacePath::Tools => "TOOLS.md",
            WorkspacePath::Memory => "MEMORY.md",
            WorkspacePath::Heartbeat => "HEARTBEAT.md",
            WorkspacePath::Skill(_) => return None,
        })
    }

    /// The path as stored and shown (`SOUL.md`, `skills/git/SKILL.md`).
    pub fn as_path(&self) -> String {
        match self {
            WorkspacePath::Skill(name) => format!("skills/{name}/SKILL.md"),
            other => other.root_name().unwrap_or_default().to_owned(),
        }
    }

    /// Whether this file is one of the agent's rules (`SOUL.md`, `AGENTS.md`, `USER.md`,
    /// `IDENTITY.md`, `TOOLS.md`): changed only through the API by an owner or admin, never by
    /// the agent or any tool.
    pub fn is_rules(&self) -> bool {
        matches!(
            self,
            WorkspacePath::Soul
                | WorkspacePath::Agents
                | WorkspacePath::User
                | WorkspacePath::Identity
                | WorkspacePath::Tools
        )
    }

    /// Whether the agent itself may rewrite this file (through the policy-controlled memory
    /// tool). Only `MEMORY.md`. `HEARTBEAT.md` and skills are instructions too, so they are
    /// also left to owners and admins.
    pub fn agent_may_write(&self) -> bool {
        matches!(self, WorkspacePath::Memory)
    }

    /// The skill name, for a `SKILL.md`.
    pub fn skill_name(&self) -> Option<&SkillName> {
        match self {
            WorkspacePath::Skill(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_path())
    }
}

impl FromStr for WorkspacePath {
    type Err = WorkspaceFileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A refused path as echoed in an error: at most 80 characters, no control characters.
fn shorten(raw: &str) -> String {
    let mut out: String = raw.chars().filter(|c| !c.is_control()).take(80).collect();
    if raw.chars().count() > 80 {
        out.push('\u{2026}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_path_parses_and_round_trips() {
        for raw in [
            "SOUL.md",
            "AGENTS.md",
            "USER.md",
            "IDENTITY.md",
            "TOOLS.md",
            "MEMORY.md",
            "HEARTBEAT.md",
            "skills/git-helper/SKILL.md",
            "skills/a/SKILL.md",
            "skills/web_search2/SKILL.md",
        ] {
            let path = WorkspacePath::parse(raw).expect(raw);
            assert_eq!(path.as_path(), raw);
        }
    }

    #[test]
    fn dot_dot_is_refused() {
        for raw in ["../SOUL.md", "skills/../SOUL.md", "skills/x/../../etc/passwd", "./SOUL.md"] {
            assert_eq!(WorkspacePath::parse(raw), Err(WorkspaceFileError::DotSegment), "{raw}");
        }
        assert!(WorkspacePath::parse("skills/../SKILL.md").is_err());
    }

    #[test]
    fn absolute_paths_are_refused() {
        for raw in ["/SOUL.md", "/etc/passwd", "\\SOUL.md", "C:SOUL.md", "c:/x"] {
            assert_eq!(WorkspacePath::parse(raw), Err(WorkspaceFileError::AbsolutePath), "{raw}");
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        for raw in [
            "soul.md",
            "SOUL.MD",
            "README.md",
            "BOOTSTRAP.md",
            "SOUL.md/",
            "skills/x/other.md",
            "skills/x/SKILL.md/x",
            "skills//SKILL.md",
            "memory/2026-01-01.md",
            "SOUL.md\0",
        ] {
            assert!(
                matches!(
                    WorkspacePath::parse(raw),
                    Err(WorkspaceFileError::UnknownFile { .. } | WorkspaceFileError::BadSkillName)
                ),
                "{raw:?}"
            );
        }
        assert_eq!(WorkspacePath::parse("skills\\x\\SKILL.md"), Err(WorkspaceFileError::Backslash));
        assert_eq!(WorkspacePath::parse(""), Err(WorkspaceFileError::EmptyPath));
    }

    #[test]
    fn skill_names_use_a_safe_charset() {
        for bad in ["", "-x", "_x", "Git", "a b", "a.b", "ä", "x/y", &"a".repeat(65)] {
            assert!(SkillName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SkillName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rules_files_are_never_agent_writable() {
        for path in WorkspacePath::ROOT_FILES {
            if path.is_rules() {
                assert!(!path.agent_may_write(), "{path}");
            }
        }
        assert!(WorkspacePath::Memory.agent_may_write());
        assert!(!WorkspacePath::Memory.is_rules());
        let skill = WorkspacePath::parse("skills/x/SKILL.md").expect("valid");
        assert!(!skill.agent_may_write());
    }
}
