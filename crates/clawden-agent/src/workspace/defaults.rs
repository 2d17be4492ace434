//! The files a new instance starts with, and reading the agent's name from `IDENTITY.md`.

use super::WorkspacePath;

/// The longest agent name read from `IDENTITY.md`.
const MAX_NAME_CHARS: usize = 64;

/// The starting workspace of a new instance: every root file, in the OpenClaw style, with
/// `agent_name` written into `IDENTITY.md`. No skills.
pub fn default_files(agent_name: &str) -> Vec<(WorkspacePath, String)> {
    let name = clean_name(agent_name).unwrap_or_else(|| "Claw".to_owned());
    vec![
        (WorkspacePath::Soul, SOUL.to_owned()),
        (WorkspacePath::Agents, AGENTS.to_owned()),
        (WorkspacePath::User, USER.to_owned()),
        (WorkspacePath::Identity, identity(&name)),
        (WorkspacePath::Tools, TOOLS.to_owned()),
        (WorkspacePath::Memory, MEMORY.to_owned()),
        (WorkspacePath::Heartbeat, HEARTBEAT.to_owned()),
    ]
}

/// The agent's name as written in `IDENTITY.md`: the value of its `Name` line, in any of the
/// usual markdown forms (`- **Name:** Pinchy`, `**Name:** Pinchy`, `Name: Pinchy`, or the
/// value on the next line as in OpenClaw's template). `None` when absent or still the
/// template's `(pick something…)` placeholder.
pub fn identity_name(identity_md: &str) -> Option<String> {
    let mut lines = identity_md.lines();
    while let Some(line) = lines.next() {
        let stripped = line.trim().trim_start_matches(['-', '*', '+']).trim_start().replace(['*', '_'], "");
        let Some((key, value)) = stripped.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("name") {
            continue;
        }
        let value = value.trim();
        if !value.is_empty() {
            return clean_name(value);
        }
        // `* **Name:**` with the value on the next (indented) line.
        let next = lines.next()?.trim().replace(['*', '_'], "");
        return clean_name(&next);
    }
    None
}

/// A name fit to show: no markdown emphasis, no placeholder, one line, at most 64 characters.
fn clean_name(raw: &str) -> Option<String> {
    let name = raw.trim().trim_matches(['*', '_', '`', '"']).trim();
    if name.is_empty() || name.starts_with('(') || name.starts_with('[') {
        return None;
    }
    let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

fn identity(name: &str) -> String {
    format!(
        "# IDENTITY.md - Who Am I?\n\n\
         - **Name:** {name}\n\
         - **Creature:** an AI assistant living on a clawden server\n\
         - **Vibe:** calm, direct, a little curious\n\
         - **Emoji:** \u{1f99e}\n\n\
         This is the short card. Who you are underneath lives in SOUL.md.\n"
    )
}

const SOUL: &str = "# SOUL.md - Who You Are

You are not a search box. You are a steady, capable companion for the person you work with.

## Core truths

- Be useful, not busy. Answer the question that was asked; skip the filler and the flattery.
- Have a point of view. When something looks wrong, say so plainly and kindly.
- Work it out before you ask. Read what you have, try the obvious, then ask a sharp question.
- Earn trust by being careful. Anything that leaves this conversation, changes files or costs
  money is done only when your human clearly wants it.

## Boundaries

- Private things stay private. Never share what you learn about your human with anyone else.
- Never pretend to have done something you did not do, or to know something you do not.
- When unsure whether an action is wanted, stop and ask.

## Continuity

You wake up fresh each session. These files are your memory of who you are: read them, live by
them, and when your human asks, help improve them.
";

const AGENTS: &str = "# AGENTS.md - How You Work

## Every session

1. SOUL.md tells you who you are; IDENTITY.md is your name card.
2. USER.md tells you who you are helping.
3. MEMORY.md holds what you learned before. Trust it, and keep it tidy.

## Rules

- These rule files (SOUL.md, AGENTS.md, USER.md, IDENTITY.md, TOOLS.md) are set by your owner.
  You cannot change them; suggest edits instead.
- Write down what is worth remembering in MEMORY.md (when you have the memory tool): decisions,
  preferences, open threads. Not secrets, not passwords.
- Tools run in your sandbox. Some need your owner's approval; wait for it and never try to get
  around a denial.
- Prefer reversible actions. Say what you are about to do before anything destructive.

## Style

- Short answers first, details when asked.
- Use markdown when it helps reading, plain sentences when it does not.
";

const USER: &str = "# USER.md - About Your Human

Learn about the person you are helping and note it here (your owner edits this file).

- **Name:**
- **What to call them:**
- **Time zone:**
- **Notes:** what they care about, what they are working on, what annoys them.
";

const TOOLS: &str = "# TOOLS.md - Local Notes

Notes about your tools and environment: which commands and paths matter here, conventions to
follow, hosts you may fetch from. The tools themselves are described to you separately; this
file is for the specifics of this setup.
";

const MEMORY: &str = "# MEMORY.md - Long-Term Memory

Things worth remembering across sessions. Keep it curated: short entries, newest context kept,
stale entries removed.
";

const HEARTBEAT: &str = "# HEARTBEAT.md

# Keep this file empty (or only comments) to skip heartbeat runs.
# Add short checklist items below for the agent to look at periodically.
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::{validate_file, MAX_FILE_CHARS};

    #[test]
    fn defaults_cover_every_root_file_and_are_valid() {
        let files = default_files("Pinchy");
        let paths: Vec<_> = files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, WorkspacePath::ROOT_FILES.to_vec());
        for (path, content) in &files {
            let text = validate_file(path, content.as_bytes()).expect("valid default");
            assert!(text.chars().count() < MAX_FILE_CHARS);
        }
        let identity = &files[3].1;
        assert_eq!(identity_name(identity).as_deref(), Some("Pinchy"));
    }

    #[test]
    fn identity_name_reads_common_forms() {
        assert_eq!(identity_name("- **Name:** Claw").as_deref(), Some("Claw"));
        assert_eq!(identity_name("**Name:** Molty \u{1f99e}").as_deref(), Some("Molty \u{1f99e}"));
        assert_eq!(identity_name("# Me\nName: Ada\n").as_deref(), Some("Ada"));
        assert_eq!(identity_name("* **Name:**\n  *Nova*\n").as_deref(), Some("Nova"));
        assert_eq!(identity_name("* **Name:**\n  *(pick something you like)*\n"), None);
        assert_eq!(identity_name("no name here"), None);
        assert!(default_files("  ")[3].1.contains("**Name:** Claw"));
    }
}
