//! The text of /etc/sudoers.d/zt: a header saying where it comes from, then
//! one rule per `[[sudo]]` entry whose group is published on this host.
//!
//! Rules name POSIX groups (`%sre`), so a change of membership in the IdP needs
//! no rewrite: sudo asks NSS for the person's groups, and libnss_zt answers
//! from the snapshot. The text depends only on the config and on which groups
//! are published, never on a time, so an unchanged config leaves the file
//! untouched.

use std::collections::{HashMap, HashSet};

use super::rule::{self, Rights};

/// The start of the first line of every file zt-agent writes: the agent
/// replaces or removes only a file that starts with it.
pub const MARK: &str = "# zt-agent: generated from ";

/// One `[[sudo]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoRule {
    /// Where it is written, "agent.toml:12", for messages.
    pub at: String,
    /// The IdP group id.
    pub group_id: String,
    pub rights: Rights,
}

/// The file's text and what it left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    /// None when no rule applies (the file should not exist).
    pub text: Option<String>,
    /// Line number (1-based) of each rule line -> where the rule is written.
    pub lines: Vec<(usize, String)>,
    /// Rules left out and why.
    pub problems: Vec<String>,
    /// The header the text starts with.
    pub header: String,
    /// The rules, in order: `text` is `header` followed by each block's text.
    pub blocks: Vec<Block>,
}

/// One rule of the file: a blank line, its comment, its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Where the rule is written in the config.
    pub at: String,
    /// The rule's first word, `%group`.
    pub group: String,
    pub text: String,
}

/// The rule blocks of a file this module wrote (the header is everything
/// before the first blank line): the header and each `%group` line with the
/// comment above it. None for text that is not UTF-8.
pub fn parse(text: &[u8]) -> Option<(String, Vec<Block>)> {
    let text = std::str::from_utf8(text).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let header_end = lines
        .iter()
        .position(|l| l.is_empty())
        .unwrap_or(lines.len());
    let header: String = lines[..header_end]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let mut blocks = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(header_end) {
        if !line.starts_with('%') {
            continue;
        }
        let comment = lines[..i].last().filter(|c| c.starts_with("# "));
        blocks.push(Block {
            at: String::new(),
            group: group_of(line).to_string(),
            text: match comment {
                Some(c) => format!("\n{c}\n{line}\n"),
                None => format!("\n{line}\n"),
            },
        });
    }
    Some((header, blocks))
}

/// The `%group` word a rule line starts with.
pub fn group_of(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

impl Rendered {
    /// Where the rule on `line` of the file is written, if a rule is there.
    pub fn rule_at(&self, line: usize) -> Option<&str> {
        self.lines
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, at)| at.as_str())
    }
}

/// Comments carry config text: nothing in them may start a new line.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Renders the rules whose group is published (`published`: IdP group id ->
/// POSIX name). A rule is left out, with a problem, when its group is not
/// published (absent from the directory, or its name clashes with a local
/// group: then `%name` would be the local group), or when a local group's name
/// differs from it only in case (sudo matches group names case-insensitively
/// by default, so `%sre` would match a local `SRE` too).
pub fn render(
    origin: &str,
    rules: &[SudoRule],
    published: &HashMap<String, String>,
    local_groups: &HashSet<String>,
) -> Rendered {
    let mut out = Rendered::default();
    if rules.is_empty() {
        return out;
    }
    let local_folded: HashMap<String, &str> = local_groups
        .iter()
        .map(|g| (g.to_lowercase(), g.as_str()))
        .collect();
    let mut text = format!(
        "{MARK}{} ([[sudo]]).\n\
         # Do not edit: the next sync rewrites it. Change agent.toml instead.\n\
         # Each rule names an IdP group by its POSIX name on this host; who is in it\n\
         # comes from the directory (libnss_zt), so membership changes need no rewrite.\n",
        comment_safe(origin)
    );
    out.header = text.clone();
    let mut line = text.lines().count();
    let mut any = false;
    for r in rules {
        let Some(name) = published.get(&r.group_id) else {
            out.problems.push(format!(
                "{}: sudo rule for IdP group {:?} left out: the group is not published on this \
                 host (not in the directory, or its name clashes with a local group)",
                r.at, r.group_id
            ));
            continue;
        };
        if let Some(local) = local_folded.get(&name.to_lowercase()) {
            out.problems.push(format!(
                "{}: sudo rule for group {name:?} left out: the local group {local:?} differs \
                 only in case, and sudo matches group names case-insensitively",
                r.at
            ));
            continue;
        }
        let rule_line = rule::render(name, &r.rights);
        let block = format!(
            "\n# {}: IdP group {}\n{rule_line}\n",
            comment_safe(&r.at),
            comment_safe(&r.group_id),
        );
        text.push_str(&block);
        out.blocks.push(Block {
            at: r.at.clone(),
            group: group_of(&rule_line).to_string(),
            text: block,
        });
        line += 3;
        out.lines.push((line, r.at.clone()));
        any = true;
    }
    if any {
        out.text = Some(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<SudoRule> {
        vec![
            SudoRule {
                at: "agent.toml:20".into(),
                group_id: "g-sre".into(),
                rights: Rights::Line("ALL=(ALL:ALL) ALL".into()),
            },
            SudoRule {
                at: "agent.toml:24".into(),
                group_id: "g-app".into(),
                rights: Rights::Commands {
                    run_as: "root".into(),
                    commands: vec!["/usr/bin/systemctl restart app".into()],
                    authenticate: false,
                },
            },
        ]
    }

    fn published(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn rules_name_published_groups_and_lines_map_back_to_the_config() {
        let r = render(
            "/etc/zt/agent.toml",
            &rules(),
            &published(&[("g-sre", "sre"), ("g-app", "app-ops")]),
            &HashSet::new(),
        );
        let text = r.text.clone().unwrap();
        assert!(text.starts_with("# zt-agent: generated from /etc/zt/agent.toml"));
        let lines: Vec<&str> = text.lines().collect();
        let (l1, at1) = &r.lines[0];
        assert_eq!(lines[l1 - 1], "%sre ALL=(ALL:ALL) ALL");
        assert_eq!(at1, "agent.toml:20");
        let (l2, _) = &r.lines[1];
        assert_eq!(
            lines[l2 - 1],
            "%app-ops ALL=(root) NOPASSWD: /usr/bin/systemctl restart app"
        );
        assert_eq!(r.rule_at(*l2), Some("agent.toml:24"));
        assert!(r.problems.is_empty());
    }

    #[test]
    fn a_rule_whose_group_is_not_published_or_shadowed_by_a_local_group_is_left_out() {
        let r = render(
            "/etc/zt/agent.toml",
            &rules(),
            &published(&[("g-app", "app-ops")]),
            &HashSet::new(),
        );
        assert!(!r.text.as_ref().unwrap().contains("%sre"));
        assert!(r.problems[0].contains("not published"), "{:?}", r.problems);

        let local: HashSet<String> = ["App-Ops".to_string()].into();
        let r = render(
            "/etc/zt/agent.toml",
            &rules(),
            &published(&[("g-app", "app-ops")]),
            &local,
        );
        assert_eq!(r.text, None, "no rule left: no file");
        assert!(
            r.problems.iter().any(|p| p.contains("case")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn config_text_in_comments_cannot_start_a_line() {
        let mut rs = rules();
        rs[0].group_id = "g\nALL ALL=(ALL) NOPASSWD: ALL".into();
        let r = render(
            "/etc/zt/agent.toml\n%evil ALL=(ALL) ALL",
            &rs,
            &published(&[(rs[0].group_id.as_str(), "sre")]),
            &HashSet::new(),
        );
        let text = r.text.unwrap();
        for l in text.lines() {
            assert!(
                l.is_empty() || l.starts_with('#') || l.starts_with("%sre "),
                "{l:?}"
            );
        }
    }

    #[test]
    fn a_written_file_parses_back_into_its_blocks() {
        let r = render(
            "/etc/zt/agent.toml",
            &rules(),
            &published(&[("g-sre", "sre"), ("g-app", "app-ops")]),
            &HashSet::new(),
        );
        let text = r.text.clone().unwrap();
        let (header, blocks) = parse(text.as_bytes()).unwrap();
        assert_eq!(header, r.header);
        let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
        let want: Vec<&str> = r.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(texts, want);
        assert_eq!(blocks[1].group, "%app-ops");
        let joined: String = std::iter::once(header.as_str()).chain(texts).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn no_rules_no_file() {
        assert_eq!(
            render("x", &[], &HashMap::new(), &HashSet::new()),
            Rendered::default()
        );
    }
}
