//! The OpenClaw side of export and import: how an instance's workspace is laid out for a stock
//! OpenClaw (2026.9) install, and how a workspace archive made by `openclaw setup` is read
//! back — safely, since the archive comes from the client.
//!
//! OpenClaw 2026.9 facts this module keeps to: agents live under `agents.entries.<id>` with
//! `name` and `workspace` (a bare top-level `workspace` key is rejected); a config holding
//! several agents also needs `agents.ownership: "explicit"`; `TOOLS.md` and `HEARTBEAT.md` are
//! no longer read, so the content of `TOOLS.md` is also carried into `AGENTS.md` under a
//! `## Tools` heading, between markers that an import removes again.

use clawden_agent::workspace::{validate_workspace, WorkspaceFileError, WorkspacePath};
use clawden_core::InstanceId;
use serde_json::{json, Value};
use std::io::Read;

/// Opens the block of `AGENTS.md` that carries `TOOLS.md` in an export.
pub const TOOLS_BEGIN: &str = "<!-- clawden:tools begin: copied from TOOLS.md, which OpenClaw 2026.9 no longer reads; \
                               clawden drops this block on import -->";
/// Closes that block.
pub const TOOLS_END: &str = "<!-- clawden:tools end -->";

/// The most entries an import archive may hold (files, folders and ignored entries alike).
pub const MAX_ENTRIES: usize = 256;
/// The most bytes one workspace file may unpack to (a file holds at most 20 000 characters,
/// so at most 80 000 bytes of UTF-8; the rest is headroom for the carried tools block).
pub const MAX_ENTRY_BYTES: u64 = 256 * 1024;
/// The most bytes every workspace file of an archive may unpack to together.
pub const MAX_TOTAL_BYTES: u64 = 1024 * 1024;
/// The most bytes a compressed tar stream may unpack to, ignored entries included.
pub const MAX_STREAM_BYTES: u64 = 8 * 1024 * 1024;
/// The longest entry name accepted.
const MAX_NAME_BYTES: usize = 512;

/// The OpenClaw agent id of an instance: its name as a slug, plus the start of its id so two
/// instances with the same name stay apart.
pub fn agent_id(instance: InstanceId, name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 32 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    // The end of the id: its start is a timestamp, shared by instances made close together.
    let id: Vec<char> = instance.to_string().chars().filter(char::is_ascii_alphanumeric).collect();
    let short: String = id[id.len().saturating_sub(8)..].iter().collect();
    if slug.is_empty() {
        format!("agent-{short}")
    } else {
        format!("{slug}-{short}")
    }
}

/// Where the exported config says the workspace lives (the export's README explains it).
pub fn workspace_location(agent_id: &str) -> String {
    format!("~/.openclaw/workspace-{agent_id}")
}

/// An `openclaw.json` holding `agents` (agent id, display name), each under
/// `agents.entries.<id>` with its `name` and `workspace`; several agents get
/// `agents.ownership: "explicit"`.
pub fn openclaw_config(agents: &[(String, String)]) -> Value {
    let mut entries = serde_json::Map::new();
    for (id, name) in agents {
        entries.insert(id.clone(), json!({ "name": name, "workspace": workspace_location(id) }));
    }
    let mut agents_obj = serde_json::Map::new();
    agents_obj.insert("entries".into(), Value::Object(entries));
    if agents.len() > 1 {
        agents_obj.insert("ownership".into(), Value::String("explicit".into()));
    }
    json!({ "agents": Value::Object(agents_obj) })
}

/// The files of an exported workspace folder: every stored file as it is, except that
/// `AGENTS.md` also carries `TOOLS.md` under `## Tools` (and is created for it if missing).
pub fn export_files(files: Vec<(String, String)>) -> Vec<(String, String)> {
    let tools = files.iter().find(|(p, _)| p == "TOOLS.md").map(|(_, t)| t.clone()).filter(|t| !t.trim().is_empty());
    let Some(tools) = tools else { return files };
    let mut out = files;
    match out.iter_mut().find(|(p, _)| p == "AGENTS.md") {
        Some((_, agents)) => *agents = with_tools_block(agents, &tools),
        None => out.push(("AGENTS.md".into(), with_tools_block("", &tools))),
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn with_tools_block(agents: &str, tools: &str) -> String {
    let tools = tools.trim_end_matches('\n');
    format!("{agents}\n\n{TOOLS_BEGIN}\n## Tools\n\n{tools}\n{TOOLS_END}\n")
}

/// `AGENTS.md` without the block an export added; anything else is left as it is.
pub fn strip_tools_block(agents: &str) -> &str {
    let suffix_end = format!("\n{TOOLS_END}\n");
    if !agents.ends_with(&suffix_end) {
        return agents;
    }
    match agents.rfind(&format!("\n\n{TOOLS_BEGIN}\n")) {
        Some(at) => &agents[..at],
        None => agents,
    }
}

/// Why an import archive was refused. Each maps to a 4xx with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Neither a zip, a tar, nor a gzipped tar.
    #[error("send a .zip, .tar or .tar.gz of an OpenClaw workspace")]
    UnsupportedArchive,
    /// The archive does not parse.
    #[error("the archive is damaged or not a valid {0}")]
    Malformed(&'static str),
    /// More entries than [`MAX_ENTRIES`].
    #[error("the archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A path that climbs out (`..`), starts at a root, or uses `\`.
    #[error("the archive holds an unsafe path: {0}")]
    UnsafePath(String),
    /// A symbolic or hard link.
    #[error("the archive holds a link ({0}); links are never followed")]
    Link(String),
    /// A device, FIFO or other special entry.
    #[error("the archive holds an entry that is not a file or folder: {0}")]
    SpecialEntry(String),
    /// One file unpacks to more than [`MAX_ENTRY_BYTES`].
    #[error("{0} unpacks to more than {MAX_ENTRY_BYTES} bytes")]
    EntryTooLarge(String),
    /// Everything unpacks to more than the archive caps.
    #[error("the archive unpacks to more than its size limit")]
    TooLarge,
    /// More than one folder looks like a workspace.
    #[error("the archive holds more than one workspace folder ({0} and {1}); import one at a time")]
    Ambiguous(String, String),
    /// No workspace file at all.
    #[error("the archive holds no workspace file (SOUL.md, AGENTS.md, … or skills/<name>/SKILL.md)")]
    Empty,
    /// A workspace file breaks the workspace rules.
    #[error("{0}")]
    InvalidFile(WorkspaceFileError),
}

impl ImportError {
    /// The error code sent to the client.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::UnsupportedArchive => "unsupported_archive",
            ImportError::Malformed(_) => "invalid_archive",
            ImportError::TooManyEntries => "too_many_entries",
            ImportError::UnsafePath(_) => "unsafe_path",
            ImportError::Link(_) => "link_in_archive",
            ImportError::SpecialEntry(_) => "special_entry",
            ImportError::EntryTooLarge(_) => "entry_too_large",
            ImportError::TooLarge => "archive_too_large",
            ImportError::Ambiguous(..) => "ambiguous_workspace",
            ImportError::Empty => "empty_workspace",
            ImportError::InvalidFile(WorkspaceFileError::WorkspaceTooLarge { .. }) => "workspace_too_large",
            ImportError::InvalidFile(_) => "invalid_file",
        }
    }
}

/// A workspace read from an archive: the files to write (checked by the workspace rules) and
/// the entries left aside.
#[derive(Debug, Default)]
pub struct ImportedWorkspace {
    /// `(path, text)` of every workspace file, in path order.
    pub files: Vec<(String, String)>,
    /// Entries that are not workspace files (shown to the user, never stored).
    pub ignored: Vec<String>,
}

/// A name shortened and cleaned for an error message or the `ignored` list.
fn shown(name: &str) -> String {
    let mut out: String = name.chars().filter(|c| !c.is_control()).take(120).collect();
    if name.chars().count() > 120 {
        out.push('\u{2026}');
    }
    out
}

/// Refuses names that could reach outside the workspace on any file system, whether or not
/// the entry is a workspace file: one hostile name is reason enough to distrust the archive.
fn check_name(name: &str) -> Result<(), ImportError> {
    let bad = || ImportError::UnsafePath(shown(name));
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || drive
        || name.split('/').any(|s| s == "..")
    {
        return Err(bad());
    }
    Ok(())
}

/// One entry as the reader met it.
struct Entry {
    name: String,
    /// `None` for a folder; the unpacked bytes for a file that may be a workspace file.
    data: Option<Vec<u8>>,
}

/// Reads `body` (zip, tar or tar.gz) into a checked workspace. Pure and synchronous: call it
/// on the blocking pool.
pub fn read_archive(body: &[u8]) -> Result<ImportedWorkspace, ImportError> {
    let entries = if body.starts_with(b"PK\x03\x04") || body.starts_with(b"PK\x05\x06") {
        read_zip(body)?
    } else if body.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::read::GzDecoder::new(body);
        read_tar(Capped { inner: gz, left: MAX_STREAM_BYTES, hit: false })?
    } else if body.len() >= 512 && &body[257..262] == b"ustar" {
        read_tar(Capped { inner: body, left: MAX_STREAM_BYTES, hit: false })?
    } else {
        return Err(ImportError::UnsupportedArchive);
    };
    assemble(entries)
}

/// Whether a name may be a workspace file once its folder is known (cheap pre-filter so that
/// unrelated entries are never unpacked).
fn may_be_workspace_file(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.ends_with(".md")
}

fn read_zip(body: &[u8]) -> Result<Vec<Entry>, ImportError> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|_| ImportError::Malformed("zip archive"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(ImportError::TooManyEntries);
    }
    // Every name is checked before anything is unpacked.
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).map_err(|_| ImportError::Malformed("zip archive"))?;
        check_name(file.name())?;
    }
    let mut out = Vec::with_capacity(archive.len());
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|_| ImportError::Malformed("zip archive"))?;
        let name = file.name().to_owned();
        if file.is_symlink() {
            return Err(ImportError::Link(shown(&name)));
        }
        if let Some(mode) = file.unix_mode() {
            let kind = mode & 0o170_000;
            if kind != 0 && kind != 0o100_000 && kind != 0o040_000 {
                return Err(ImportError::SpecialEntry(shown(&name)));
            }
        }
        if file.is_dir() {
            out.push(Entry { name, data: None });
            continue;
        }
        if !may_be_workspace_file(&name) {
            out.push(Entry { name, data: Some(Vec::new()) });
            continue;
        }
        // The header's size is the archive's claim; what counts is what actually unpacks.
        let mut data = Vec::new();
        (&mut file)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|_| ImportError::Malformed("zip archive"))?;
        if data.len() as u64 > MAX_ENTRY_BYTES {
            return Err(ImportError::EntryTooLarge(shown(&name)));
        }
        total += data.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(ImportError::TooLarge);
        }
        out.push(Entry { name, data: Some(data) });
    }
    Ok(out)
}

/// A reader that fails once more than `left` bytes came through, remembering why.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more than allowed means the stream is too large.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.hit = true;
                    Err(std::io::Error::other("archive too large"))
                }
            };
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn read_tar<R: Read>(reader: Capped<R>) -> Result<Vec<Entry>, ImportError> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    let mut total: u64 = 0;
    let result = (|| -> Result<(), ImportError> {
        let entries = archive.entries().map_err(|_| ImportError::Malformed("tar archive"))?;
        for entry in entries {
            let mut entry = entry.map_err(|_| ImportError::Malformed("tar archive"))?;
            if out.len() >= MAX_ENTRIES {
                return Err(ImportError::TooManyEntries);
            }
            let raw = entry.path_bytes();
            let name = String::from_utf8(raw.to_vec())
                .map_err(|_| ImportError::UnsafePath(shown(&String::from_utf8_lossy(&raw))))?;
            let name = name.strip_prefix("./").map(str::to_owned).unwrap_or(name);
            if name.is_empty() || name == "." {
                continue;
            }
            check_name(&name)?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                return Err(ImportError::Link(shown(&name)));
            }
            if kind.is_dir() {
                out.push(Entry { name, data: None });
                continue;
            }
            if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() {
                continue;
            }
            if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                return Err(ImportError::SpecialEntry(shown(&name)));
            }
            if !may_be_workspace_file(&name) {
                out.push(Entry { name, data: Some(Vec::new()) });
                continue;
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_ENTRY_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|_| ImportError::Malformed("tar archive"))?;
            if data.len() as u64 > MAX_ENTRY_BYTES {
                return Err(ImportError::EntryTooLarge(shown(&name)));
            }
            total += data.len() as u64;
            if total > MAX_TOTAL_BYTES {
                return Err(ImportError::TooLarge);
            }
            out.push(Entry { name, data: Some(data) });
        }
        Ok(())
    })();
    let hit = archive.into_inner().hit;
    match result {
        // A cut-off stream reads as a damaged archive; say what really happened.
        Err(_) if hit => Err(ImportError::TooLarge),
        Err(e) => Err(e),
        Ok(()) => Ok(out),
    }
}

/// Finds the workspace folder, keeps its workspace files, and checks them all together.
fn assemble(entries: Vec<Entry>) -> Result<ImportedWorkspace, ImportError> {
    // The workspace folder is the one holding a root file (SOUL.md, AGENTS.md, …); an archive
    // of only skills is read from its root or its single top-level folder.
    let mut root: Option<String> = None;
    for e in entries.iter().filter(|e| e.data.is_some()) {
        let (dir, file) = match e.name.rsplit_once('/') {
            Some((dir, file)) => (format!("{dir}/"), file),
            None => (String::new(), e.name.as_str()),
        };
        if WorkspacePath::ROOT_FILES.iter().any(|p| p.as_path() == file) {
            match &root {
                Some(r) if *r != dir => return Err(ImportError::Ambiguous(shown(r), shown(&dir))),
                _ => root = Some(dir),
            }
        }
    }
    let root = match root {
        Some(r) => r,
        None => single_top_folder(&entries).unwrap_or_default(),
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ignored = Vec::new();
    for e in entries {
        let Some(data) = e.data else { continue };
        let relative = e.name.strip_prefix(root.as_str());
        match relative.map(WorkspacePath::parse) {
            Some(Ok(path)) => files.push((path.as_path(), data)),
            _ => ignored.push(shown(&e.name)),
        }
    }
    if files.is_empty() {
        return Err(ImportError::Empty);
    }
    // The block an export added to AGENTS.md goes: TOOLS.md is its source.
    for (path, data) in &mut files {
        if path == "AGENTS.md" {
            if let Ok(text) = std::str::from_utf8(data) {
                let kept = strip_tools_block(text).len();
                data.truncate(kept);
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let checked =
        validate_workspace(files.iter().map(|(p, d)| (p.as_str(), d.as_slice()))).map_err(ImportError::InvalidFile)?;
    let files = checked.into_iter().map(|(p, t)| (p.as_path(), t.to_owned())).collect();
    Ok(ImportedWorkspace { files, ignored })
}

/// The one top-level folder every file sits in, if there is exactly one and it is not
/// `skills/` itself.
fn single_top_folder(entries: &[Entry]) -> Option<String> {
    let mut top: Option<&str> = None;
    for e in entries.iter().filter(|e| e.data.is_some()) {
        let (first, _) = e.name.split_once('/')?;
        match top {
            Some(t) if t != first => return None,
            _ => top = Some(first),
        }
    }
    top.filter(|t| *t != "skills").map(|t| format!("{t}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_block_round_trips() {
        for agents in ["", "# Rules\n", "no newline", "a\n\nb\n\n"] {
            let exported = export_files(vec![
                ("AGENTS.md".into(), agents.into()),
                ("TOOLS.md".into(), "Use the shell wisely.\n".into()),
            ]);
            let text = &exported.iter().find(|(p, _)| p == "AGENTS.md").expect("agents").1;
            assert!(text.contains("\n## Tools\n\nUse the shell wisely.\n"), "{text}");
            assert_eq!(strip_tools_block(text), agents);
        }
        let untouched = "## Tools\n\nwritten by hand\n";
        assert_eq!(strip_tools_block(untouched), untouched);
    }

    #[test]
    fn several_agents_need_explicit_ownership() {
        let one = openclaw_config(&[("a-1".into(), "A".into())]);
        assert!(one["agents"].get("ownership").is_none());
        assert_eq!(one["agents"]["entries"]["a-1"]["name"], "A");
        assert!(one.get("workspace").is_none());
        let two = openclaw_config(&[("a-1".into(), "A".into()), ("b-2".into(), "B".into())]);
        assert_eq!(two["agents"]["ownership"], "explicit");
    }

    #[test]
    fn agent_ids_are_slugs() {
        let id = InstanceId::new();
        let a = agent_id(id, "My Agent!");
        assert!(a.starts_with("my-agent-"), "{a}");
        assert!(agent_id(id, "???").starts_with("agent-"));
    }
}
