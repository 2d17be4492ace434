//! The YAML frontmatter of a `SKILL.md`, read by a deliberately small parser.
//!
//! A skill file starts with a `---` line, then `key: value` lines, then a closing `---` line,
//! then the markdown body. Only `name` and `description` matter to clawden, and both must be
//! plain strings; other keys (`metadata`, `license`, `allowed-tools`, …) are kept out of the
//! way, including their indented or list continuation lines. Supported value forms: plain,
//! `"double quoted"` (with `\"`, `\\`, `\n`, `\t` escapes), `'single quoted'` (with `''`), and
//! the block forms `|` and `>` (with optional `-`/`+`) on the following indented lines. That
//! covers the skill files of OpenClaw and the Agent Skills format without a full YAML library,
//! whose extra features (anchors, tags, documents) a workspace file has no use for.

/// Longest `description`, as in the Agent Skills format.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A parsed `SKILL.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillDocument {
    /// The frontmatter `name`.
    pub name: String,
    /// The frontmatter `description`.
    pub description: String,
    /// The markdown after the frontmatter.
    pub body: String,
}

/// Why a `SKILL.md` frontmatter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontmatterError {
    /// The file does not start with a `---` line.
    #[error("SKILL.md must start with a `---` line opening the frontmatter")]
    Missing,
    /// No closing `---` line.
    #[error("the frontmatter has no closing `---` line")]
    Unclosed,
    /// A line that is not `key: value`.
    #[error("frontmatter line {line} is not `key: value`")]
    BadLine {
        /// 1-based line number in the file.
        line: usize,
    },
    /// A key appears twice.
    #[error("frontmatter key `{key}` appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A required key is absent or empty.
    #[error("frontmatter `{key}` is missing or empty")]
    MissingKey {
        /// `name` or `description`.
        key: &'static str,
    },
    /// `name` or `description` is not a plain string (a list, a mapping, an open quote).
    #[error("frontmatter `{key}` must be a single text value")]
    NotText {
        /// The key.
        key: &'static str,
    },
    /// `description` is too long.
    #[error("frontmatter `description` is longer than {MAX_DESCRIPTION_CHARS} characters")]
    DescriptionTooLong,
}

struct Entry {
    key: String,
    /// The text after `key:` on its own line.
    inline: String,
    /// Indented or list lines that follow.
    continuation: Vec<String>,
}

/// Parses a `SKILL.md`: its frontmatter (`name` and `description` required, both text) and
/// body. The name's charset and its match with the directory are checked by the caller.
pub fn parse_skill(text: &str) -> Result<SkillDocument, FrontmatterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().ok_or(FrontmatterError::Missing)?;
    if first.trim_end() != "---" {
        return Err(FrontmatterError::Missing);
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut consumed = first.len();
    let mut closed = false;
    for (i, raw) in lines.enumerate() {
        consumed += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let number = i + 2;
        if line.trim_end() == "---" || line.trim_end() == "..." {
            closed = true;
            break;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            if let Some(last) = entries.last_mut() {
                if !last.continuation.is_empty() {
                    last.continuation.push(String::new());
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) || line.starts_with("- ") || line == "-" {
            match entries.last_mut() {
                Some(last) => last.continuation.push(line.to_owned()),
                None => return Err(FrontmatterError::BadLine { line: number }),
            }
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .ok_or(FrontmatterError::BadLine { line: number })?;
        if entries.iter().any(|e| e.key == key) {
            return Err(FrontmatterError::DuplicateKey { key: key.to_owned() });
        }
        entries.push(Entry { key: key.to_owned(), inline: value.trim().to_owned(), continuation: Vec::new() });
    }
    if !closed {
        return Err(FrontmatterError::Unclosed);
    }
    let text_value = |key: &'static str| -> Result<String, FrontmatterError> {
        let entry = entries.iter().find(|e| e.key == key).ok_or(FrontmatterError::MissingKey { key })?;
        let value = scalar(entry).ok_or(FrontmatterError::NotText { key })?;
        if value.trim().is_empty() {
            return Err(FrontmatterError::MissingKey { key });
        }
        Ok(value)
    };
    let name = text_value("name")?;
    let description = text_value("description")?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(FrontmatterError::DescriptionTooLong);
    }
    Ok(SkillDocument { name, description, body: text[consumed..].to_owned() })
}

/// The text value of an entry, or `None` when it is not plain text.
fn scalar(entry: &Entry) -> Option<String> {
    let inline = entry.inline.as_str();
    if matches!(inline.chars().next(), Some('|' | '>')) {
        let literal = inline.starts_with('|');
        let header_ok = inline[1..].chars().all(|c| matches!(c, '-' | '+'));
        if !header_ok {
            return None;
        }
        let lines: Vec<&str> = entry.continuation.iter().map(|l| l.trim()).collect();
        let joined = if literal {
            lines.join("\n")
        } else {
            // Folded: single line breaks become spaces, blank lines stay as breaks.
            lines.split(|l| l.is_empty()).map(|para| para.join(" ")).collect::<Vec<_>>().join("\n")
        };
        return Some(joined.trim().to_owned());
    }
    if inline.is_empty() {
        // A nested mapping or list, not text.
        return None;
    }
    if entry.continuation.iter().any(|l| l.trim_start().starts_with('-')) {
        return None;
    }
    // Plain multi-line scalars fold their continuation lines in.
    let mut text = inline.to_owned();
    for line in entry.continuation.iter().filter(|l| !l.trim().is_empty()) {
        text.push(' ');
        text.push_str(line.trim());
    }
    if let Some(rest) = text.strip_prefix('"') {
        return unquote_double(rest);
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let inner = rest.strip_suffix('\'')?;
        return Some(inner.replace("''", "'"));
    }
    if text.starts_with(['[', '{', '&', '*', '!']) {
        return None;
    }
    // A trailing ` #` starts a comment in plain YAML values.
    let text = match text.find(" #") {
        Some(at) => &text[..at],
        None => &text,
    };
    Some(text.trim().to_owned())
}

fn unquote_double(rest: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Only a comment may follow the closing quote.
                let tail = chars.as_str().trim();
                return (tail.is_empty() || tail.starts_with('#')).then_some(out);
            }
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            other => out.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_description_and_body() {
        let doc = parse_skill(
            "---\nname: git-helper\ndescription: Helps with git. Use when committing.\nmetadata: {\"openclaw\": {\"emoji\": \"x\"}}\n---\n# Git helper\n\nDo things.\n",
        )
        .expect("valid");
        assert_eq!(doc.name, "git-helper");
        assert_eq!(doc.description, "Helps with git. Use when committing.");
        assert_eq!(doc.body, "# Git helper\n\nDo things.\n");
    }

    #[test]
    fn quoted_block_and_crlf_values_are_read() {
        let doc = parse_skill(
            "---\r\nname: \"weather\"\r\ndescription: >\r\n  Gets the weather\r\n  for a city.\r\nallowed-tools:\r\n  - web_fetch\r\n---\r\nbody",
        )
        .expect("valid");
        assert_eq!(doc.name, "weather");
        assert_eq!(doc.description, "Gets the weather for a city.");
        assert_eq!(doc.body, "body");
        let doc = parse_skill("---\nname: 'it''s'\ndescription: \"a \\\"b\\\"\" # note\n---\n").expect("valid");
        assert_eq!(doc.name, "it's");
        assert_eq!(doc.description, "a \"b\"");
    }

    #[test]
    fn bad_frontmatter_is_refused() {
        let cases: &[(&str, FrontmatterError)] = &[
            ("# no frontmatter\n", FrontmatterError::Missing),
            ("---\nname: x\ndescription: y\n", FrontmatterError::Unclosed),
            ("---\nname: x\n---\n", FrontmatterError::MissingKey { key: "description" }),
            ("---\ndescription: y\n---\n", FrontmatterError::MissingKey { key: "name" }),
            ("---\nname: \"\"\ndescription: y\n---\n", FrontmatterError::MissingKey { key: "name" }),
            ("---\nname: x\nname: z\ndescription: y\n---\n", FrontmatterError::DuplicateKey { key: "name".into() }),
            ("---\nname: x\nthis is not yaml\n---\n", FrontmatterError::BadLine { line: 3 }),
            ("---\n  indented: first\n---\n", FrontmatterError::BadLine { line: 2 }),
            ("---\nname:\n  - a\n  - b\ndescription: y\n---\n", FrontmatterError::NotText { key: "name" }),
            ("---\nname: [a, b]\ndescription: y\n---\n", FrontmatterError::NotText { key: "name" }),
            ("---\nname: \"open\ndescription: y\n---\n", FrontmatterError::NotText { key: "name" }),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_skill(text).as_ref(), Err(expected), "{text:?}");
        }
        let long = format!("---\nname: x\ndescription: {}\n---\n", "d".repeat(1025));
        assert_eq!(parse_skill(&long), Err(FrontmatterError::DescriptionTooLong));
    }
}
