//! `kind = "file"`: the directory as one JSON document (see README).

use std::path::Path;

use super::Directory;
use super::error::{DirectoryError, DirectoryFailure};

/// Reads and parses the file: a file that cannot be read is "unavailable", one
/// that does not parse is "malformed".
pub fn load(path: &Path) -> Result<Directory, DirectoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DirectoryError::new(
            DirectoryFailure::Unavailable,
            format!("{}: cannot read: {e}", path.display()),
        )
    })?;
    parse(&text, &path.display().to_string())
        .map_err(|e| DirectoryError::new(DirectoryFailure::Malformed, e))
}

pub fn parse(text: &str, origin: &str) -> Result<Directory, String> {
    let mut d: Directory = serde_json::from_str(text)
        .map_err(|e| format!("{origin}:{}:{}: {e}", e.line(), e.column()))?;
    d.drop_ambiguous_entries();
    Ok(d)
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
    fn malformed_documents_say_where() {
        let e = parse(
            "{\"users\": [{\"id\": \"u\", \"emial\": \"a@b\"}]}",
            "d.json",
        )
        .unwrap_err();
        assert!(e.starts_with("d.json:1:") && e.contains("emial"), "{e}");
        let e = parse("{\"users\": [\n{\"id\": \"u\", \"email\": 5}]}", "d.json").unwrap_err();
        assert!(e.starts_with("d.json:2:"), "{e}");
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
