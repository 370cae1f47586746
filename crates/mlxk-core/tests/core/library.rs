//! The library over fixture caches, including layouts no healthy download leaves behind.

use std::fs;

use mlxk_core::health::ProblemCode;
use mlxk_core::{HubCache, Library, ModelInfo};
use mlxk_fixtures::{write_standard, FixtureCache};

fn standard() -> (tempfile::TempDir, FixtureCache, Library) {
    let dir = tempfile::tempdir().unwrap();
    let cache = FixtureCache::create(&dir.path().join("home")).unwrap();
    write_standard(&cache).unwrap();
    let library = Library::new(HubCache::at(&cache.hub));
    (dir, cache, library)
}

fn codes(model: &ModelInfo) -> Vec<ProblemCode> {
    model.health.problems.iter().map(|p| p.code).collect()
}

fn find<'a>(models: &'a [ModelInfo], name: &str) -> &'a ModelInfo {
    models
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

#[test]
fn each_broken_fixture_has_its_precise_problem() {
    let (_dir, _cache, library) = standard();
    let models = library.list().unwrap();
    assert_eq!(models.len(), 13);
    let expect = [
        (
            "mlx-community/Mistral-7B-Instruct-v0.3-missing-shard",
            ProblemCode::MissingShard,
        ),
        ("mlx-community/phi-2-lfs-pointer", ProblemCode::LfsPointer),
        (
            "mlx-community/gemma-2-2b-truncated",
            ProblemCode::SafetensorsInvalid,
        ),
        (
            "mlx-community/SmolLM2-135M-Instruct-downloading",
            ProblemCode::IncompleteDownload,
        ),
        (
            "mlx-community/broken-symlink-model",
            ProblemCode::BrokenSymlink,
        ),
    ];
    for (name, code) in expect {
        assert_eq!(codes(find(&models, name)).first(), Some(&code), "{name}");
    }
    let sharded = find(&models, "mlx-community/Qwen3-0.6B-sharded");
    assert!(sharded.is_healthy(), "{:?}", sharded.health);
    assert_eq!(sharded.files.len(), 6);
}

#[test]
fn odd_layouts_are_reported_and_never_hide_other_models() {
    let (_dir, cache, library) = standard();
    let hub = &cache.hub;
    // A model folder with nothing in it.
    fs::create_dir_all(hub.join("models--org--empty")).unwrap();
    // refs/main naming a snapshot that never arrived.
    fs::create_dir_all(hub.join("models--org--ref-only/refs")).unwrap();
    fs::write(
        hub.join("models--org--ref-only/refs/main"),
        "0123456789abcdef0123456789abcdef01234567",
    )
    .unwrap();
    // A config that is not JSON, a config that is a folder.
    let snap = hub.join("models--org--bad-config/snapshots/abc");
    fs::create_dir_all(&snap).unwrap();
    fs::write(snap.join("config.json"), "{not json").unwrap();
    fs::write(
        snap.join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    )
    .unwrap();
    let snap = hub.join("models--org--config-dir/snapshots/abc");
    fs::create_dir_all(snap.join("config.json")).unwrap();
    // Things that are not models at all.
    fs::write(hub.join("models--org--a-file"), "").unwrap();
    fs::create_dir_all(hub.join("datasets--org--data/snapshots")).unwrap();
    fs::create_dir_all(hub.join("models--bad name--x")).unwrap();

    let models = library.list().unwrap();
    assert_eq!(models.len(), 13 + 4);
    assert_eq!(codes(find(&models, "org/empty")), [ProblemCode::NoSnapshot]);
    assert_eq!(
        codes(find(&models, "org/ref-only")),
        [ProblemCode::SnapshotMissing]
    );
    assert!(codes(find(&models, "org/bad-config")).contains(&ProblemCode::ConfigInvalid));
    assert!(codes(find(&models, "org/config-dir")).contains(&ProblemCode::ConfigMissing));
    assert_eq!(models.iter().filter(|m| m.is_healthy()).count(), 8);
}

#[test]
fn sizes_count_each_blob_once() {
    let (_dir, cache, library) = standard();
    let model = library.find("Llama-3.2-1B-Instruct-4bit").unwrap();
    let snapshot = model.path.clone().unwrap();
    // A second name for the same blob must not add to the size.
    let target = fs::read_link(snapshot.join("model.safetensors")).unwrap();
    std::os::unix::fs::symlink(&target, snapshot.join("copy.safetensors")).unwrap();
    let again = library.find("Llama-3.2-1B-Instruct-4bit").unwrap();
    assert_eq!(again.size_bytes, model.size_bytes);
    assert_eq!(again.files.len(), model.files.len() + 1);
    drop(cache);
}
