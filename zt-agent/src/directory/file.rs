//! `kind = "file"`: the directory as one JSON document (see README).
//!
//! The document is read in two steps so that one hostile entry can never fail
//! the whole sync (which would freeze revocation for everyone): first its shape
//! (`{"users": [...], "groups": [...]}`, strict: anything else fails the read
//! and the last good snapshot stays), then each entry on its own, where an
//! entry that does not parse is left out with a problem saying where and why.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{DirectoryError, DirectoryFailure};
use super::{DirGroup, DirUser, Directory, MAX_ENTRY_PROBLEMS};

/// The largest directory file the agent reads (256 MiB): far above any real
/// organisation (about 1 KiB per person), and low enough that a runaway or
/// hostile file cannot exhaust the agent's memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads and parses the file: a file that cannot be read (missing, not a
/// regular file, larger than [`MAX_FILE_BYTES`]) is "unavailable", one whose
/// document does not have the directory's shape is "malformed".
pub fn load(path: &Path) -> Result<Directory, DirectoryError> {
    let unavailable = |why: String| {
        DirectoryError::new(
            DirectoryFailure::Unavailable,
            format!("{}: {why}", path.display()),
        )
    };
    // O_NONBLOCK: opening a FIFO (or a device) put where the directory file
    // should be must not hang the agent; the type is then checked on the opened
    // fd, so nothing can be swapped in between the check and the read.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| unavailable(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| unavailable(format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        let kind = match meta.file_type() {
            t if t.is_dir() => "a directory",
            t if t.is_fifo() => "a FIFO",
            t if t.is_socket() => "a socket",
            t if t.is_char_device() || t.is_block_device() => "a device",
            _ => "not a regular file",
        };
        return Err(unavailable(format!(
            "is {kind}; the directory must be a regular file"
        )));
    }
    // The file decides who logs in (and, later, who gets sudo): as with
    // agent.toml, nobody but root (or the user running the agent) may change it.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    crate::trusted_file::check(&meta, crate::trusted_file::Kind::Config, euid)
        .map_err(unavailable)?;
    let too_big = |size: u64| {
        unavailable(format!(
            "is {size} bytes or more, larger than the {MAX_FILE_BYTES}-byte limit for a directory file"
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    // read at most one byte past the limit: the file may grow after fstat
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unavailable(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(e.as_bytes(), e.utf8_error().valid_up_to());
        DirectoryError::new(
            DirectoryFailure::Malformed,
            format!("{}:{line}:{col}: not UTF-8", path.display()),
        )
    })?;
    parse(&text, &path.display().to_string())
        .map_err(|e| DirectoryError::new(DirectoryFailure::Malformed, e))
}

/// The document's shape; entries stay unparsed text (borrowed from the
/// document, so each entry's position in it is known).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shape<'a> {
    #[serde(default, borrow)]
    users: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    groups: Vec<&'a RawValue>,
}

/// What can still be read from an entry that failed to parse: its id (to name
/// it, and so the removal guard does not take the person for missing) and
/// whether it says `"enabled": false` (a disable applies at once, even in an
/// entry that is otherwise broken). Read key by key, so unknown fields, wrong
/// types and repeated keys (which make serde's derived parsers fail) cannot
/// hide either: the first string id counts, and any `"enabled": false` in the
/// entry disables, whatever else it says.
#[derive(Default)]
struct Salvage {
    id: Option<String>,
    disabled: bool,
}

impl<'de> Deserialize<'de> for Salvage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Salvage;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Salvage, A::Error> {
                let mut out = Salvage::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    // only "id" and "enabled" are decoded; every other value is
                    // skipped unread (a lone surrogate elsewhere must not hide them)
                    match key.as_ref() {
                        "id" | "enabled" => match (key.as_ref(), map.next_value()?) {
                            ("id", serde_json::Value::String(id)) if out.id.is_none() => {
                                out.id = Some(id)
                            }
                            ("enabled", serde_json::Value::Bool(false)) => out.disabled = true,
                            _ => {}
                        },
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Keys)
    }
}

impl Salvage {
    fn of(entry: &RawValue) -> (Option<String>, bool) {
        let s = serde_json::from_str::<Salvage>(entry.get()).unwrap_or_default();
        (s.id, s.disabled)
    }
}

/// Parses a whole document. `Err` (with origin:line:col) only when the document
/// itself is unusable: not JSON, not an object, an unknown top-level key, users
/// or groups not arrays. An entry that does not parse is left out with a problem.
pub fn parse(text: &str, origin: &str) -> Result<Directory, String> {
    // serde accepts a sequence for a struct too (`[]` would be an empty
    // directory, removing everyone): the top level must be an object
    if let Some(at) = text.bytes().position(|b| !b" \t\n\r".contains(&b))
        && text.as_bytes()[at] != b'{'
    {
        let (line, col) = line_col(text.as_bytes(), at);
        return Err(format!(
            "{origin}:{line}:{col}: the document must be a JSON object {{\"users\": [...], \"groups\": [...]}}"
        ));
    }
    let shape: Shape = serde_json::from_str(text)
        .map_err(|e| format!("{origin}:{}:{}: {e}", e.line(), e.column()))?;
    let mut entries = EntryProblems::default();
    let users = parse_entries::<DirUser>(text, origin, "user", &shape.users, &mut entries);
    let groups = parse_entries::<DirGroup>(text, origin, "group", &shape.groups, &mut entries);
    let mut d = Directory {
        users,
        groups,
        problems: entries.finish(),
        left_out: Default::default(),
    };
    // an id read from a failed entry still counts: a well-formed entry with the
    // same id cannot be safely attributed to one object either
    d.drop_ambiguous_entries_with(&entries.failed);
    Ok(d)
}

#[derive(Default)]
struct EntryProblems {
    problems: Vec<String>,
    left_out: usize,
    /// (id, says disabled) of every entry that failed to parse and has an id.
    failed: Vec<(String, bool)>,
}

impl EntryProblems {
    fn finish(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.problems);
        if self.left_out > out.len() {
            out.push(format!(
                "... and {} more entries that do not parse left out",
                self.left_out - out.len()
            ));
        }
        out
    }
}

fn parse_entries<'a, T: Deserialize<'a>>(
    text: &str,
    origin: &str,
    what: &str,
    raw: &[&'a RawValue],
    problems: &mut EntryProblems,
) -> Vec<T> {
    let mut out = Vec::with_capacity(raw.len());
    for (n, entry) in raw.iter().enumerate() {
        let e = match serde_json::from_str::<T>(entry.get()) {
            Ok(v) => {
                out.push(v);
                continue;
            }
            Err(e) => e,
        };
        problems.left_out += 1;
        let (id, disabled) = Salvage::of(entry);
        if let Some(id) = &id {
            // only a person can be disabled: `"enabled": false` in a broken
            // group entry (groups have no such field) must not remove a user
            // whose id it borrows
            problems
                .failed
                .push((id.clone(), disabled && what == "user"));
        }
        if problems.problems.len() >= MAX_ENTRY_PROBLEMS {
            continue;
        }
        // the entry borrows from `text`: its offset there is the pointer difference
        let start = entry.get().as_ptr() as usize - text.as_ptr() as usize;
        let at = start + offset_of(entry.get(), e.line(), e.column());
        let (line, col) = line_col(text.as_bytes(), at);
        let named = match &id {
            Some(id) => format!(" (id {:?})", shorten(id)),
            None => String::new(),
        };
        let why = serde_message(&e);
        let hint = if why.starts_with("unknown field") {
            " (a field zt does not know, perhaps misspelt: only this entry is left out)"
        } else {
            ""
        };
        problems.problems.push(format!(
            "{origin}:{line}:{col}: {what} entry {n}{named} left out: {why:?}{hint}",
            n = n + 1
        ));
    }
    out
}

/// serde_json's message without its " at line L column C", which counts from
/// the entry, not the document.
fn serde_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}

/// Ids are hostile too: keep them short in messages.
fn shorten(id: &str) -> String {
    const MAX: usize = 64;
    match id.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &id[..i]),
        None => id.to_string(),
    }
}

/// Byte offset in `s` of serde_json's 1-based line and column (column 0 means
/// "before the first byte of the line", as serde_json reports at a line start).
fn offset_of(s: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        s.match_indices('\n')
            .nth(line - 2)
            .map_or(s.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(s.len())
}

/// 1-based line and column (in bytes, as serde_json counts) of byte `at`.
fn line_col(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = 1 + before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_parses() {
        let d = parse(
            r#"{"users":  [{"id": "u-7f3a", "email": "alice@example.com", "display_name": "Alice Liddell",
                 "enabled": true, "username": null, "uid": null, "created": "2024-02-01T10:00:00Z"}],
                "groups": [{"id": "g-sre", "name": "SRE", "members": ["u-7f3a", "g-oncall"]}]}"#,
            "d.json",
        )
        .unwrap();
        assert_eq!(d.users[0].created_at().unwrap(), Some(1_706_781_600));
        assert_eq!(d.groups[0].members.len(), 2);
    }

    #[test]
    fn unusable_documents_fail_whole_and_say_where() {
        for (doc, at, says) in [
            (
                "{\"users\": [\n{\"id\": \"u\", \"email\": \"a@b\"}",
                "d.json:2:",
                "EOF",
            ),
            ("  []", "d.json:1:3", "must be a JSON object"),
            ("{\"users\": [], \"persons\": []}", "d.json:1:", "persons"),
            (
                "{\"users\": {\"id\": \"u\"}}",
                "d.json:1:",
                "expected a sequence",
            ),
            ("{\"groups\": \"g\"}", "d.json:1:", "expected a sequence"),
            ("not json", "d.json:1:1", "must be a JSON object"),
            ("{\"users\": [} ", "d.json:1:12", "expected value"),
            ("", "d.json:1:0", "EOF"),
        ] {
            let e = parse(doc, "d.json").unwrap_err();
            assert!(e.starts_with(at) && e.contains(says), "{doc}: {e}");
        }
    }

    /// One person's field must never fail the whole sync (that would freeze
    /// revocation for everyone): the entry is left out and named, and the rest
    /// of the directory parses.
    #[test]
    fn a_bad_entry_is_left_out_not_the_document() {
        let doc = concat!(
            "{\"users\": [\n",
            "  {\"id\": \"u-ok\", \"email\": \"ok@example.com\"},\n",
            // a lone surrogate, as Python's json.dumps writes it
            "  {\"id\": \"u-sur\", \"email\": \"s@example.com\", \"display_name\": \"x\\ud800y\"},\n",
            "  {\"id\": \"u-neg\", \"email\": \"n@example.com\", \"uid\": -1},\n",
            "  {\"id\": \"u-big\", \"email\": \"b@example.com\", \"uid\": 4294967296},\n",
            "  {\"id\": \"u-typ\", \"email\": 5},\n",
            "  {\"id\": \"u-typo\", \"emial\": \"t@example.com\"},\n",
            "  {\"email\": \"noid@example.com\", \"enabled\": \"yes\"},\n",
            "  DEEP,\n",
            "  {\"id\": \"u-ok2\", \"email\": \"ok2@example.com\"}],\n",
            " \"groups\": [{\"id\": \"g\", \"name\": \"G\", \"members\": [\"u-ok\", 7]},\n",
            "            {\"id\": \"g-ok\", \"name\": \"OK\", \"members\": [\"u-ok\"]}]}",
        )
        // deeper than serde_json's recursion limit of 128: one entry, left out
        .replace("DEEP", &format!("{}{}", "[".repeat(1000), "]".repeat(1000)));
        let doc = doc.as_str();
        let d = parse(doc, "d.json").unwrap();
        let ids: Vec<&str> = d.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u-ok", "u-ok2"]);
        let gids: Vec<&str> = d.groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(gids, ["g-ok"]);
        let p = &d.problems;
        assert_eq!(p.len(), 8, "{p:#?}");
        // origin:line:col of the offending spot in the document, the entry's id
        // and serde's own message
        assert!(
            p[0].starts_with("d.json:3:")
                && p[0].contains("user entry 2 (id \"u-sur\") left out")
                && p[0].contains("hex escape"),
            "{p:#?}"
        );
        let col: usize = p[0].split(':').nth(2).unwrap().parse().unwrap();
        // the column is the document's (inside the display name), not the entry's
        let line3 = doc.lines().nth(2).unwrap();
        assert!(col > line3.find("\\ud800").unwrap(), "{}", p[0]);
        assert!(p[1].starts_with("d.json:4:") && p[1].contains("\"u-neg\"") && p[1].contains("-1"));
        assert!(p[2].starts_with("d.json:5:") && p[2].contains("\"u-big\""));
        assert!(p[3].starts_with("d.json:6:") && p[3].contains("invalid type"));
        assert!(
            p[4].starts_with("d.json:7:")
                && p[4].contains("unknown field `emial`")
                && p[4].contains("misspelt: only this entry is left out"),
            "{p:#?}"
        );
        assert!(p[5].starts_with("d.json:8:") && p[5].contains("user entry 7 left out"));
        assert!(p[6].starts_with("d.json:9:") && p[6].contains("user entry 8 left out"));
        assert!(p[7].starts_with("d.json:11:") && p[7].contains("group entry 1 (id \"g\")"));
    }

    #[test]
    fn entry_problems_are_escaped_capped_and_ids_still_count() {
        let mut users = vec![r#"{"id": "u-ok", "email": "ok@example.com"}"#.to_string()];
        // a failed entry with the id of a good one: which is the person? neither
        users.push(r#"{"id": "u-ok", "email": 1}"#.to_string());
        users.push("{\"id\": \"\\u001b[31mred\\n\", \"emial\": \"\\u001b\"}".to_string());
        for n in 0..200 {
            users.push(format!(
                "{{\"id\": \"u{n}\", \"uid\": -1, \"email\": \"a@b\"}}"
            ));
        }
        let doc = format!("{{\"users\": [{}]}}", users.join(",\n"));
        let d = parse(&doc, "d.json").unwrap();
        assert!(d.users.is_empty(), "{:?}", d.users);
        assert!(
            d.problems
                .iter()
                .all(|p| !p.contains('\u{1b}') && !p.contains('\n'))
        );
        assert!(
            d.problems[1].contains(r#"\u{1b}[31mred\n"#),
            "{:?}",
            d.problems[1]
        );
        assert!(
            d.problems.iter().any(|p| p.contains("152 more entries")),
            "{:?}",
            d.problems
        );
        assert!(
            d.problems
                .iter()
                .any(|p| p.contains("\"u-ok\" appears more than once")),
            "{:?}",
            d.problems
        );
        assert!(d.problems.len() <= 2 * MAX_ENTRY_PROBLEMS + 2);
    }

    /// serde_json skips a raw value without decoding its escapes; the entry's
    /// own parse is what must catch a lone surrogate.
    #[test]
    fn raw_values_do_not_hide_lone_surrogates() {
        let d = parse(r#"{"groups": [{"id": "g", "name": "\udc00"}]}"#, "d").unwrap();
        assert!(d.groups.is_empty());
        assert!(d.problems[0].contains("hex escape"), "{:?}", d.problems);
    }

    #[test]
    fn load_refuses_fifos_directories_and_huge_files_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // without O_NONBLOCK this open blocks until a writer appears: run it in a
        // thread so a regression fails the test instead of hanging it
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(load(&fifo)).unwrap());
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO must not hang")
            .unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Unavailable);
        assert!(e.message.contains("is a FIFO"), "{e}");

        let e = load(dir.path()).unwrap_err();
        assert!(e.message.contains("is a directory"), "{e}");

        let big = dir.path().join("big.json");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse: no disk used
        let e = load(&big).unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Unavailable);
        assert!(e.message.contains("limit"), "{e}");

        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"{"users": [{"id": "u", "email": "a@b"}]}"#).unwrap();
        assert_eq!(load(&ok).unwrap().users.len(), 1);
        std::fs::write(&ok, b"{\"users\": [\n\xff]}").unwrap();
        let e = load(&ok).unwrap_err();
        assert_eq!(e.kind, DirectoryFailure::Malformed);
        assert!(e.message.ends_with("ok.json:2:1: not UTF-8"), "{e}");
    }

    #[test]
    fn a_disable_in_a_broken_entry_is_read_whatever_else_is_wrong_with_it() {
        let d = parse(
            r#"{"users": [
                 {"enabled": false, "enabled": false, "id": "u0", "email": "a@b"},
                 {"id": "u1", "email": "c@d", "enabled": false, "enabled": true},
                 {"id": "u2", "id": "u2b", "email": "e@f", "dept": 1},
                 {"id": "u3", "email": "g@h", "dept": 1}],
               "groups": [{"id": "u4", "name": "x", "enabled": false}]}"#,
            "d",
        )
        .unwrap();
        assert!(d.users.iter().all(|u| u.id != "u0" && u.id != "u1"));
        // repeated keys: any "enabled": false disables
        assert_eq!(d.left_out("u0"), Some(true), "{:?}", d.problems);
        assert_eq!(d.left_out("u1"), Some(true), "{:?}", d.problems);
        // broken but not disabled: left out, not a disable (the first id counts)
        assert_eq!(d.left_out("u2"), Some(false));
        assert_eq!(d.left_out("u3"), Some(false));
        // a group entry cannot disable a person by borrowing their id
        assert_eq!(d.left_out("u4"), Some(false));
    }

    #[test]
    fn a_directory_file_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        std::fs::write(&path, r#"{"users": [{"id": "u", "email": "a@b"}]}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&path).is_ok(), "root-owned 0644 is fine");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.message.contains("group or others change it"), "{e}");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.message.contains("owned by uid 65534"), "{e}");
        }
    }

    #[test]
    fn ambiguous_entries_are_left_out_not_the_document() {
        let d = parse(
            r#"{"users": [{"id": "u", "email": "a@b"}, {"id": "u", "email": "c@d"},
                          {"id": "", "email": "e@f"}, {"id": "ok", "email": "g@h"}],
                "groups": [{"id": "u", "name": "U"}, {"id": "g", "name": "G"}]}"#,
            "d.json",
        )
        .unwrap();
        let ids: Vec<&str> = d.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["ok"]);
        assert_eq!(d.groups.len(), 1);
        assert!(
            d.problems
                .iter()
                .any(|p| p.contains("\"u\" appears more than once")),
            "{:?}",
            d.problems
        );
        assert!(
            d.problems.iter().any(|p| p.contains("empty id")),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn bad_created_is_reported() {
        let d = parse(
            r#"{"users": [{"id": "u", "email": "a@b", "created": "yesterday"}]}"#,
            "d",
        )
        .unwrap();
        assert!(d.users[0].created_at().is_err());
    }
}
