//! The committed fuzz corpus of zt-agent/fuzz (and any crash a fuzzer once
//! found, once added there) is replayed on stable in every test run.

#[test]
fn directory_fuzz_corpus_replays_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/directory_resolve");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        // a panic names the input that caused it
        let run = std::panic::catch_unwind(|| zt_agent::fuzzing::exercise_directory(&bytes));
        assert!(run.is_ok(), "{} fails", path.display());
        n += 1;
    }
    assert!(n >= 4, "corpus seeds missing from {}", dir.display());
}

/// The seed with hostile entries (a lone surrogate, an out-of-range uid, a
/// misspelt field) must reach resolve: if the whole document failed to parse,
/// the fuzzer would stop at parse and never exercise the rest with it.
#[test]
fn the_entry_errors_seed_parses_with_its_good_people() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/directory_resolve/seed-entry-errors");
    let text = std::fs::read_to_string(&path).unwrap();
    let d = zt_agent::directory::file::parse(&text, "seed").unwrap();
    let ids: Vec<&str> = d.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u-alice"], "{:?}", d.problems);
    assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
}
