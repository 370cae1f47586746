"""huggingface_hub's own scan_cache_dir() and mlxk read the same cache and agree."""

from datetime import datetime, timezone

from huggingface_hub import scan_cache_dir


def _default_revision(repo):
    """The revision huggingface_hub's `main` names, else (no refs) the only/newest one."""
    for revision in repo.revisions:
        if "main" in revision.refs:
            return revision
    return max(repo.revisions, key=lambda r: r.snapshot_path.stat().st_mtime)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_names_commits_sizes_and_times_agree(fixture_cache):
    info = scan_cache_dir(fixture_cache.hub)
    listed = {m["name"]: m for m in fixture_cache.mlxk("list", "--all")["data"]["models"]}

    python_names = {repo.repo_id for repo in info.repos}
    assert len(python_names) >= 10
    assert python_names <= set(listed)
    # huggingface_hub skips a repo it finds corrupted (with a warning); mlxk lists it as unhealthy.
    skipped = set(listed) - python_names
    assert skipped == {"mlx-community/broken-symlink-model"}
    assert all(listed[name]["health"] == "unhealthy" for name in skipped)
    assert len(info.warnings) == len(skipped)

    for repo in info.repos:
        ours = listed[repo.repo_id]
        revision = _default_revision(repo)
        assert ours["hash"] == revision.commit_hash, repo.repo_id
        assert ours["size_bytes"] == revision.size_on_disk, repo.repo_id
        assert ours["last_modified"] == _utc(revision.last_modified), repo.repo_id


def test_every_revision_agrees_through_show(fixture_cache):
    info = scan_cache_dir(fixture_cache.hub)
    checked = 0
    for repo in info.repos:
        for revision in repo.revisions:
            shown = fixture_cache.mlxk("show", f"{repo.repo_id}@{revision.commit_hash}")["data"]["model"]
            assert shown["hash"] == revision.commit_hash
            assert shown["size_bytes"] == revision.size_on_disk
            checked += 1
    assert checked >= 13


def test_snapshot_removal_leaves_a_cache_huggingface_hub_reads_cleanly(fixture_cache):
    before = scan_cache_dir(fixture_cache.hub)
    qwen = next(r for r in before.repos if r.repo_id.endswith("Qwen2.5-0.5B-Instruct-4bit"))
    assert len(qwen.revisions) == 2

    fixture_cache.mlxk("rm", "Qwen2.5-0.5B-Instruct-4bit@v1.0", "-f")

    after = scan_cache_dir(fixture_cache.hub)
    assert len(after.warnings) == len(before.warnings)
    qwen_after = next(r for r in after.repos if r.repo_id == qwen.repo_id)
    assert [sorted(r.refs) for r in qwen_after.revisions] == [["main"]]
    # The deleted snapshot's own blob went; the blobs shared with main stayed.
    assert qwen_after.size_on_disk == next(r for r in qwen.revisions if "main" in r.refs).size_on_disk
    assert {r.repo_id for r in after.repos} == {r.repo_id for r in before.repos}
