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
