//! The rules of an agent workspace (pure functions, no I/O).
//!
//! A workspace is a handful of markdown files in the OpenClaw layout ([`WorkspacePath`]).
//! Before a file is stored, [`validate_file`] checks it is UTF-8 text within
//! [`MAX_FILE_CHARS`] (and, for a `SKILL.md`, that its frontmatter has a `name` equal to its
//! directory and a `description`), and [`check_workspace_total`] that the whole workspace
//! stays within [`MAX_TOTAL_CHARS`]. "Characters" are Unicode scalar values (Rust `char`s).
//!
//! [`WorkspacePath::is_rules`] names the files the agent may never rewrite;
//! [`WorkspacePath::agent_may_write`] is true only for `MEMORY.md`.

mod defaults;
mod frontmatter;
mod path;

pub use defaults::{default_files, identity_name};
pub use frontmatter::{parse_skill, FrontmatterError, SkillDocument, MAX_DESCRIPTION_CHARS};
pub use path::{SkillName, WorkspacePath, MAX_SKILL_NAME_CHARS};

/// The most characters in one workspace file (OpenClaw's own per-file limit).
pub const MAX_FILE_CHARS: usize = 20_000;

/// The most characters in all workspace files together (OpenClaw's own total limit).
pub const MAX_TOTAL_CHARS: usize = 60_000;

/// Why a workspace path or file was refused. Every message is safe to show the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceFileError {
    /// The path is empty.
    #[error("the file path is empty")]
    EmptyPath,
    /// The path starts at a root (`/…`, `\…`, `C:…`).
    #[error("absolute paths are not allowed in the workspace")]
    AbsolutePath,
    /// The path has a `.` or `..` segment.
    #[error("`.` and `..` are not allowed in workspace paths")]
    DotSegment,
    /// The path uses `\` separators.
    #[error("workspace paths use `/`, not `\\`")]
    Backslash,
    /// Not one of the workspace files.
    #[error(
        "`{path}` is not a workspace file; the files are SOUL.md, AGENTS.md, USER.md, \
         IDENTITY.md, TOOLS.md, MEMORY.md, HEARTBEAT.md and skills/<name>/SKILL.md"
    )]
    UnknownFile {
        /// The refused path, shortened and cleaned for display.
        path: String,
    },
    /// A skill name outside the allowed charset.
    #[error(
        "a skill name is 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter \
         or digit"
    )]
    BadSkillName,
    /// The content is not UTF-8.
    #[error("{path} is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: String,
    },
    /// The content has a NUL character (a binary file).
    #[error("{path} contains a NUL character; workspace files are text")]
    Binary {
        /// The file.
        path: String,
    },
    /// One file over [`MAX_FILE_CHARS`].
    #[error("{path} has {chars} characters; the limit is {MAX_FILE_CHARS} per file")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its length in characters.
        chars: usize,
    },
    /// The workspace would exceed [`MAX_TOTAL_CHARS`].
    #[error("the workspace would hold {total} characters; the limit is {MAX_TOTAL_CHARS} in all")]
    WorkspaceTooLarge {
        /// The total after the change.
        total: usize,
    },
    /// The same path twice in one set of files (an import).
    #[error("{path} appears twice")]
    DuplicateFile {
        /// The file.
        path: String,
    },
    /// A `SKILL.md` frontmatter problem.
    #[error("{path}: {error}")]
    Frontmatter {
        /// The file.
        path: String,
        /// What is wrong.
        error: FrontmatterError,
    },
    /// A `SKILL.md` whose frontmatter `name` differs from its directory.
    #[error("{path}: frontmatter name `{name}` must equal the skill's directory name")]
    SkillNameMismatch {
        /// The file.
        path: String,
        /// The frontmatter name (shortened).
        name: String,
    },
}

/// The number of characters in `text`, the unit of every workspace limit.
pub fn char_count(text: &str) -> usize {
    text.chars().count()
}

/// Checks one file's content before it is stored; returns it as text.
///
/// UTF-8 only (no lossy conversion, so nothing is silently changed), no NUL, at most
/// [`MAX_FILE_CHARS`] characters; a `SKILL.md` must have valid frontmatter whose `name` is its
/// directory name.
pub fn validate_file<'a>(path: &WorkspacePath, content: &'a [u8]) -> Result<&'a str, WorkspaceFileError> {
    let shown = path.as_path();
    let text = std::str::from_utf8(content).map_err(|_| WorkspaceFileError::NotUtf8 { path: shown.clone() })?;
    if text.contains('\0') {
        return Err(WorkspaceFileError::Binary { path: shown });
    }
    let chars = char_count(text);
    if chars > MAX_FILE_CHARS {
        return Err(WorkspaceFileError::FileTooLarge { path: shown, chars });
    }
    if let WorkspacePath::Skill(dir) = path {
        let doc = parse_skill(text).map_err(|error| WorkspaceFileError::Frontmatter { path: shown.clone(), error })?;
        if doc.name != dir.as_str() {
            return Err(WorkspaceFileError::SkillNameMismatch {
                path: shown,
                name: doc.name.chars().take(64).collect(),
            });
        }
    }
    Ok(text)
}

/// Checks that writing `new_chars` characters to `path` keeps the workspace within
/// [`MAX_TOTAL_CHARS`]. `existing` lists the files stored now with their sizes in characters;
/// the old version of `path`, if listed, is replaced rather than added. Returns the new total.
pub fn check_workspace_total<'a>(
    existing: impl IntoIterator<Item = (&'a WorkspacePath, usize)>,
    path: &WorkspacePath,
    new_chars: usize,
) -> Result<usize, WorkspaceFileError> {
    let others: usize = existing.into_iter().filter(|(p, _)| *p != path).map(|(_, chars)| chars).sum();
    let total = others.saturating_add(new_chars);
    if total > MAX_TOTAL_CHARS {
        Err(WorkspaceFileError::WorkspaceTooLarge { total })
    } else {
        Ok(total)
    }
}

/// Checks a whole set of files at once (an import, or a workspace folder): every path, every
/// file's content, no path twice, and the total. Returns the files as text, in the given order.
pub fn validate_workspace<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<(WorkspacePath, &'a str)>, WorkspaceFileError> {
    let mut out: Vec<(WorkspacePath, &'a str)> = Vec::new();
    let mut total: usize = 0;
    for (raw, content) in files {
        let path = WorkspacePath::parse(raw)?;
        let text = validate_file(&path, content)?;
        if out.iter().any(|(p, _)| *p == path) {
            return Err(WorkspaceFileError::DuplicateFile { path: path.as_path() });
        }
        total = total.saturating_add(char_count(text));
        if total > MAX_TOTAL_CHARS {
            return Err(WorkspaceFileError::WorkspaceTooLarge { total });
        }
        out.push((path, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str) -> WorkspacePath {
        WorkspacePath::parse(&format!("skills/{name}/SKILL.md")).expect("valid")
    }

    #[test]
    fn a_whole_workspace_is_checked_at_once() {
        let files = default_files("Pinchy");
        let owned: Vec<(String, Vec<u8>)> = files.iter().map(|(p, c)| (p.as_path(), c.clone().into_bytes())).collect();
        let borrowed = owned.iter().map(|(p, c)| (p.as_str(), c.as_slice()));
        assert_eq!(validate_workspace(borrowed).map(|v| v.len()), Ok(7));

        let twice = [("SOUL.md", &b"a"[..]), ("SOUL.md", &b"b"[..])];
        assert_eq!(validate_workspace(twice), Err(WorkspaceFileError::DuplicateFile { path: "SOUL.md".into() }));
        let big = "a".repeat(MAX_FILE_CHARS);
        let too_much = [
            ("SOUL.md", big.as_bytes()),
            ("AGENTS.md", big.as_bytes()),
            ("USER.md", big.as_bytes()),
            ("TOOLS.md", &b"x"[..]),
        ];
        assert_eq!(
            validate_workspace(too_much),
            Err(WorkspaceFileError::WorkspaceTooLarge { total: MAX_TOTAL_CHARS + 1 })
        );
        assert_eq!(validate_workspace([("../SOUL.md", &b"x"[..])]), Err(WorkspaceFileError::DotSegment));
    }

    #[test]
    fn oversize_file_is_refused() {
        let ok = "a".repeat(MAX_FILE_CHARS);
        assert!(validate_file(&WorkspacePath::Soul, ok.as_bytes()).is_ok());
        let big = "a".repeat(MAX_FILE_CHARS + 1);
        assert_eq!(
            validate_file(&WorkspacePath::Soul, big.as_bytes()),
            Err(WorkspaceFileError::FileTooLarge { path: "SOUL.md".into(), chars: MAX_FILE_CHARS + 1 })
        );
        // Characters, not bytes: 20 000 lobsters are 80 000 bytes and still fit.
        let wide = "\u{1f99e}".repeat(MAX_FILE_CHARS);
        assert!(validate_file(&WorkspacePath::Memory, wide.as_bytes()).is_ok());
    }

    #[test]
    fn non_utf8_and_binary_content_is_refused() {
        assert_eq!(
            validate_file(&WorkspacePath::User, b"caf\xe9"),
            Err(WorkspaceFileError::NotUtf8 { path: "USER.md".into() })
        );
        assert_eq!(
            validate_file(&WorkspacePath::User, b"a\0b"),
            Err(WorkspaceFileError::Binary { path: "USER.md".into() })
        );
    }

    #[test]
    fn workspace_total_is_capped_counting_replacements_once() {
        let soul = WorkspacePath::Soul;
        let agents = WorkspacePath::Agents;
        let memory = WorkspacePath::Memory;
        let existing = [(&soul, 20_000), (&agents, 20_000), (&memory, 15_000)];
        assert_eq!(check_workspace_total(existing, &memory, 20_000), Ok(60_000));
        assert_eq!(
            check_workspace_total(existing, &WorkspacePath::Tools, 5_001),
            Err(WorkspaceFileError::WorkspaceTooLarge { total: 60_001 })
        );
    }

    #[test]
    fn skill_files_need_valid_frontmatter_matching_the_directory() {
        let good = "---\nname: git\ndescription: Git helper.\n---\nUse git.\n";
        assert!(validate_file(&skill("git"), good.as_bytes()).is_ok());
        assert!(matches!(
            validate_file(&skill("other"), good.as_bytes()),
            Err(WorkspaceFileError::SkillNameMismatch { .. })
        ));
        let bad = "---\nname: git\n---\n";
        assert_eq!(
            validate_file(&skill("git"), bad.as_bytes()),
            Err(WorkspaceFileError::Frontmatter {
                path: "skills/git/SKILL.md".into(),
                error: FrontmatterError::MissingKey { key: "description" }
            })
        );
        assert!(matches!(validate_file(&skill("git"), b"no frontmatter"), Err(WorkspaceFileError::Frontmatter { .. })));
        // Root files have no frontmatter rules.
        assert!(validate_file(&WorkspacePath::Soul, b"no frontmatter").is_ok());
    }
}
