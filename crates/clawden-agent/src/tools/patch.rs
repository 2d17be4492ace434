//! Unified diffs for `apply_patch`: parsed and applied here, in memory, rather than by `patch`
//! in the sandbox, so that the parser that decides which files a patch touches is the one that
//! writes them — a header `patch` would read differently cannot slip past the path checks.
//!
//! Hunks must match exactly (no fuzz); a hunk whose stated line moved is found at the nearest
//! place it matches.

use crate::tools::{sandbox_path, WORKSPACE};

/// One file's part of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePatch {
    /// The `---` name; `None` for `/dev/null` (a new file).
    pub(crate) old: Option<String>,
    /// The `+++` name; `None` for `/dev/null` (a deleted file).
    pub(crate) new: Option<String>,
    /// The hunks, in order.
    pub(crate) hunks: Vec<Hunk>,
}

/// One `@@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hunk {
    old_start: usize,
    lines: Vec<Line>,
    /// `\ No newline at end of file` after a line of the old side.
    old_no_eol: bool,
    /// The same after a line of the new side.
    new_no_eol: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Context(String),
    Remove(String),
    Add(String),
}

/// What applying one file's part gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The file's new content.
    Write(String),
    /// The file is to be removed.
    Delete,
}

fn header_name(raw: &str) -> Result<Option<String>, String> {
    // `diff -u` puts a tab and a timestamp after the name.
    let name = raw.split('\t').next().unwrap_or("").trim_end_matches(['\r', ' ']);
    if name == "/dev/null" {
        return Ok(None);
    }
    if name.is_empty() {
        return Err("a ---/+++ header has no file name".into());
    }
    if name.starts_with('"') {
        return Err(format!("quoted file names are not supported: {name}"));
    }
    Ok(Some(name.to_owned()))
}

/// `@@ -a[,b] +c[,d] @@` → (a, b, d).
fn hunk_header(line: &str) -> Result<(usize, usize, usize), String> {
    let bad = || format!("malformed hunk header: {line}");
    let rest = line.strip_prefix("@@ -").ok_or_else(bad)?;
    let (ranges, _) = rest.split_once(" @@").ok_or_else(bad)?;
    let (old, new) = ranges.split_once(" +").ok_or_else(bad)?;
    let range = |r: &str| -> Result<(usize, usize), String> {
        match r.split_once(',') {
            Some((start, count)) => Ok((start.parse().map_err(|_| bad())?, count.parse().map_err(|_| bad())?)),
            None => Ok((r.parse().map_err(|_| bad())?, 1)),
        }
    };
    let (old_start, old_count) = range(old)?;
    let (_, new_count) = range(new)?;
    Ok((old_start, old_count, new_count))
}

/// Parses a unified diff of one or more files. Lines outside file parts (`diff --git`,
/// `index`, prose) are skipped; renames, copies and binary patches are refused.
pub(crate) fn parse(text: &str) -> Result<Vec<FilePatch>, String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("GIT binary patch") || (line.starts_with("Binary files ") && line.ends_with(" differ")) {
            return Err("binary patches are not supported".into());
        }
        if line.starts_with("rename from ") || line.starts_with("copy from ") {
            return Err("renames and copies are not supported (use exec with mv or cp)".into());
        }
        let (Some(old), Some(new)) = (line.strip_prefix("--- "), lines.get(i + 1).and_then(|l| l.strip_prefix("+++ ")))
        else {
            i += 1;
            continue;
        };
        let mut file = FilePatch { old: header_name(old)?, new: header_name(new)?, hunks: Vec::new() };
        if file.old.is_none() && file.new.is_none() {
            return Err("a file part goes from /dev/null to /dev/null".into());
        }
        i += 2;
        while i < lines.len() && lines[i].starts_with("@@") {
            let header = lines[i];
            let (old_start, old_count, new_count) = hunk_header(header)?;
            i += 1;
            let mut hunk = Hunk { old_start, lines: Vec::new(), old_no_eol: false, new_no_eol: false };
            let (mut old_seen, mut new_seen) = (0, 0);
            // Each round consumes one line of the bounded `lines`.
            loop {
                let complete = old_seen == old_count && new_seen == new_count;
                let Some(&l) = lines.get(i) else {
                    if complete {
                        break;
                    }
                    return Err(format!("the hunk {header} ends before its stated length"));
                };
                if let Some(marker) = l.strip_prefix('\\') {
                    if !marker.trim_start().to_ascii_lowercase().starts_with("no newline") {
                        return Err(format!("unexpected line in a hunk: {l}"));
                    }
                    match hunk.lines.last() {
                        Some(Line::Remove(_)) => hunk.old_no_eol = true,
                        Some(Line::Add(_)) => hunk.new_no_eol = true,
                        Some(Line::Context(_)) => (hunk.old_no_eol, hunk.new_no_eol) = (true, true),
                        None => return Err(format!("a no-newline marker opens the hunk {header}")),
                    }
                    i += 1;
                    continue;
                }
                if complete {
                    break;
                }
                let (kind, body) = match l.chars().next() {
                    Some(' ') => (' ', &l[1..]),
                    Some('-') => ('-', &l[1..]),
                    Some('+') => ('+', &l[1..]),
                    // Some tools strip the space of an empty context line.
                    None => (' ', ""),
                    Some(_) => return Err(format!("the hunk {header} ends before its stated length at: {l}")),
                };
                match kind {
                    ' ' => {
                        old_seen += 1;
                        new_seen += 1;
                        hunk.lines.push(Line::Context(body.to_owned()));
                    }
                    '-' => {
                        old_seen += 1;
                        hunk.lines.push(Line::Remove(body.to_owned()));
                    }
                    _ => {
                        new_seen += 1;
                        hunk.lines.push(Line::Add(body.to_owned()));
                    }
                }
                if old_seen > old_count || new_seen > new_count {
                    return Err(format!("the hunk {header} is longer than its stated length"));
                }
                i += 1;
            }
            file.hunks.push(hunk);
        }
        if file.hunks.is_empty() {
            return Err(format!(
                "the part for {} has no hunks",
                file.new.as_deref().or(file.old.as_deref()).unwrap_or("a file")
            ));
        }
        files.push(file);
    }
    if files.is_empty() {
        return Err("no file changes found: expected a unified diff with ---/+++ headers and @@ hunks".into());
    }
    Ok(files)
}

/// Whether a part names its files git's way (`a/…` and `b/…`), whose prefixes are removed.
fn git_style(file: &FilePatch) -> bool {
    file.old.as_deref().is_none_or(|o| o.starts_with("a/")) && file.new.as_deref().is_none_or(|n| n.starts_with("b/"))
}

/// A name of a part as an absolute path, which must lie under `/workspace`.
fn resolve(name: &str, prefix: &str, git: bool) -> Result<String, String> {
    let name = if git { name.strip_prefix(prefix).unwrap_or(name) } else { name };
    let path = sandbox_path(name)?;
    if !path.starts_with(&format!("{WORKSPACE}/")) {
        return Err(format!("{name} is outside {WORKSPACE}; apply_patch only changes files under {WORKSPACE}"));
    }
    Ok(path)
}

/// The absolute path a file part writes, which must lie under `/workspace`. `a/` and `b/`
/// prefixes (git's) are removed.
pub(crate) fn target_path(file: &FilePatch) -> Result<String, String> {
    let git = git_style(file);
    match (&file.new, &file.old) {
        (Some(new), _) => resolve(new, "b/", git),
        (None, Some(old)) => resolve(old, "a/", git),
        (None, None) => Err("a file part has no name".into()),
    }
}

/// Every path a file part names (the one it writes, and its old name), resolved the way
/// [`target_path`] resolves them: what the policy checks before a patch runs.
pub(crate) fn named_paths(file: &FilePatch) -> Result<Vec<String>, String> {
    let git = git_style(file);
    let mut paths = vec![target_path(file)?];
    if let Some(old) = &file.old {
        let old = resolve(old, "a/", git)?;
        if !paths.contains(&old) {
            paths.push(old);
        }
    }
    Ok(paths)
}

/// Applies one file's part to its current content (`None`: the file does not exist).
pub(crate) fn apply(file: &FilePatch, current: Option<&str>) -> Result<Applied, String> {
    let creating = file.old.is_none();
    match current {
        Some(c) if creating && !c.is_empty() => return Err("the patch creates the file but it already exists".into()),
        None if !creating => return Err("the file does not exist".into()),
        _ => {}
    }
    let base = current.unwrap_or("");
    let had_eol = base.is_empty() || base.ends_with('\n');
    let lines: Vec<&str> =
        if base.is_empty() { Vec::new() } else { base.strip_suffix('\n').unwrap_or(base).split('\n').collect() };
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    let mut pos = 0;
    let (mut old_no_eol, mut new_no_eol) = (false, false);
    for (n, hunk) in file.hunks.iter().enumerate() {
        let old: Vec<&str> = hunk
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Context(s) | Line::Remove(s) => Some(s.as_str()),
                Line::Add(_) => None,
            })
            .collect();
        // An insertion-only hunk's start names the line it goes after.
        let expected = if old.is_empty() { hunk.old_start } else { hunk.old_start.saturating_sub(1) };
        let at = find(&lines, &old, pos, expected).ok_or_else(|| {
            format!(
                "hunk {} (at line {}) does not match the file; read the file and make a new patch",
                n + 1,
                hunk.old_start
            )
        })?;
        out.extend_from_slice(&lines[pos..at]);
        out.extend(hunk.lines.iter().filter_map(|l| match l {
            Line::Context(s) | Line::Add(s) => Some(s.as_str()),
            Line::Remove(_) => None,
        }));
        pos = at + old.len();
        old_no_eol |= hunk.old_no_eol;
        new_no_eol |= hunk.new_no_eol;
    }
    out.extend_from_slice(&lines[pos..]);
    let eol = if new_no_eol {
        false
    } else if old_no_eol {
        true
    } else {
        had_eol
    };
    if file.new.is_none() {
        return if out.is_empty() {
            Ok(Applied::Delete)
        } else {
            Err("the patch deletes the file but it has lines the patch does not remove".into())
        };
    }
    let mut text = out.join("\n");
    if eol && !out.is_empty() {
        text.push('\n');
    }
    Ok(Applied::Write(text))
}

/// Where `old` occurs in `lines` at or after `from`, nearest to `expected`.
fn find(lines: &[&str], old: &[&str], from: usize, expected: usize) -> Option<usize> {
    let last = lines.len().checked_sub(old.len())?;
    if from > last {
        return None;
    }
    let expected = expected.clamp(from, last);
    let matches = |at: usize| lines[at..at + old.len()] == *old;
    // Bounded by the file's length: each distance is tried once on either side.
    for distance in 0..=last {
        if let Some(at) = expected.checked_add(distance).filter(|a| *a <= last) {
            if matches(at) {
                return Some(at);
            }
        }
        if let Some(at) = expected.checked_sub(distance).filter(|a| *a >= from) {
            if matches(at) {
                return Some(at);
            }
        }
        if expected + distance > last && expected.saturating_sub(distance) <= from {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(patch: &str, base: Option<&str>) -> Result<Applied, String> {
        let files = parse(patch)?;
        assert_eq!(files.len(), 1);
        apply(&files[0], base)
    }

    #[test]
    fn a_git_diff_applies_with_prefixes_removed() {
        let patch = "diff --git a/src/x.txt b/src/x.txt\nindex 1..2 100644\n--- a/src/x.txt\n+++ b/src/x.txt\n\
                     @@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n";
        let files = parse(patch).unwrap();
        assert_eq!(target_path(&files[0]).unwrap(), "/workspace/src/x.txt");
        assert_eq!(apply(&files[0], Some("one\ntwo\nthree\n")).unwrap(), Applied::Write("one\nTWO\nthree\n".into()));
    }

    #[test]
    fn a_moved_hunk_is_found_and_a_mismatch_is_refused() {
        let patch = "--- f\n+++ f\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n";
        assert_eq!(one(patch, Some("x\ny\na\nb\n")).unwrap(), Applied::Write("x\ny\na\nB\n".into()));
        assert!(one(patch, Some("a\nc\n")).unwrap_err().contains("does not match"));
        assert!(one(patch, None).unwrap_err().contains("does not exist"));
    }

    #[test]
    fn new_and_deleted_files_and_missing_final_newlines() {
        let create = "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n\\ No newline at end of file\n";
        assert_eq!(one(create, None).unwrap(), Applied::Write("hello\nworld".into()));
        assert!(one(create, Some("x")).unwrap_err().contains("already exists"));
        let delete = "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";
        assert_eq!(one(delete, Some("bye\n")).unwrap(), Applied::Delete);
        let add_eol = "--- f\n+++ f\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+x\n";
        assert_eq!(one(add_eol, Some("x")).unwrap(), Applied::Write("x\n".into()));
    }

    #[test]
    fn paths_outside_the_workspace_are_refused() {
        for name in ["../etc/passwd", "/etc/passwd", "a/../../x", "/tmp/x"] {
            let files = parse(&format!("--- {name}\n+++ {name}\n@@ -1 +1 @@\n-a\n+b\n")).unwrap();
            assert!(target_path(&files[0]).is_err(), "{name}");
        }
        let files = parse("--- a/../../etc/x\n+++ b/../../etc/x\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
        assert!(target_path(&files[0]).is_err());
    }

    #[test]
    fn malformed_patches_are_explained() {
        assert!(parse("hello").unwrap_err().contains("no file changes"));
        assert!(parse("--- a\n+++ a\n@@ -1,3 +1,3 @@\n x\n").unwrap_err().contains("ends before"));
        assert!(parse("--- a\n+++ a\n@@ nonsense\n").unwrap_err().contains("malformed"));
        assert!(parse("rename from a\nrename to b\n").unwrap_err().contains("renames"));
        assert!(parse("--- a\n+++ a\n").unwrap_err().contains("no hunks"));
    }
}
