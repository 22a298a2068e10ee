import logging
import os
import time
from types import SimpleNamespace

import pytest
import torch

from pdd.engine.teacher_cache import TeacherFeatureCache


class _CountingTeacher:
    """Stands in for frozen teachers: deterministic per-image features, counting images it sees."""

    def __init__(self):
        self.images_seen = 0
        self.weight = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))

    def __call__(self, images):
        self.images_seen += images.shape[0]
        pooled = images.mean(dim=(2, 3))
        return {"r1": pooled @ self.weight, "z0": images[:, :1] * 1.000123}


def _batch(n, seed):
    images = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return images, [f"{seed:02d}{index:062d}" for index in range(n)]


def test_hits_return_what_a_miss_computed(tmp_path):
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"vmamba": "random-init:0"}, image_size=8)
    images, keys = _batch(4, seed=1)
    first = cache.features(teacher, images, keys)
    assert teacher.images_seen == 4
    reordered = [2, 0, 3]
    second = cache.features(teacher, images[reordered], [keys[i] for i in reordered])
    assert teacher.images_seen == 4, "cached images must not be recomputed"
    for name, value in teacher(images).items():
        assert torch.equal(first[name], value)
        assert torch.equal(second[name], value[reordered])
    assert (cache.hits, cache.misses) == (3, 4)


def test_hits_and_misses_keep_the_teachers_memory_layout(tmp_path):
    """VMamba's taps are channels_last views (the authors' layout); a cached batch must be laid out the same,
    also when another process reads it from the shard."""
    cache = TeacherFeatureCache(tmp_path, {"t": "layout"}, image_size=8)
    images, keys = _batch(3, seed=6)

    def channels_last_teacher(batch):
        return {"z0": (batch * 2).contiguous(memory_format=torch.channels_last), "r0": batch[:, :2] + 1}

    miss = cache.features(channels_last_teacher, images, keys)
    hit = cache.features(channels_last_teacher, images, keys)
    reread = TeacherFeatureCache(tmp_path, {"t": "layout"}, image_size=8).features(
        channels_last_teacher, images[[2, 0]], [keys[2], keys[0]])
    expected = channels_last_teacher(images)
    for served in (miss, hit):
        for name, value in expected.items():
            assert served[name].stride() == value.stride() and torch.equal(served[name], value)
    assert reread["z0"].stride() == expected["z0"][[2, 0]].stride()
    assert torch.equal(reread["z0"], expected["z0"][[2, 0]]) and torch.equal(reread["r0"], expected["r0"][[2, 0]])


def test_partial_hits_compute_only_the_new_images(tmp_path):
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"t": "x"}, image_size=8)
    images, keys = _batch(4, seed=2)
    cache.features(teacher, images[:2], keys[:2])
    mixed = cache.features(teacher, images, keys)
    assert teacher.images_seen == 4
    assert torch.allclose(mixed["r1"], teacher(images)["r1"], atol=1e-6)


def test_key_separates_teachers_and_sizes(tmp_path):
    teacher = _CountingTeacher()
    images, keys = _batch(2, seed=3)
    for fingerprint, size in [({"t": "a"}, 8), ({"t": "b"}, 8), ({"t": "a"}, 16)]:
        cache = TeacherFeatureCache(tmp_path, fingerprint, image_size=size)
        cache.features(teacher, images, keys)
    assert teacher.images_seen == 6
    assert len([p for p in tmp_path.iterdir() if (p / "key.json").is_file()]) == 3


def test_half_precision_is_the_same_on_hit_and_miss(tmp_path):
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8, dtype=torch.float16)
    images, keys = _batch(3, seed=4)
    miss = cache.features(teacher, images, keys)
    hit = cache.features(teacher, images, keys)
    assert miss["r1"].dtype == torch.float32
    assert torch.equal(miss["r1"], hit["r1"])
    assert torch.equal(miss["r1"], teacher(images)["r1"].half().float())


def _shards(cache):
    return sorted(cache.directory.glob("shard-*.safetensors"))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_shard_is_recomputed_and_replaced(tmp_path, caplog, damage):
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    images, keys = _batch(2, seed=5)
    expected = cache.features(teacher, images, keys)
    [shard] = _shards(cache)
    data = shard.read_bytes()
    shard.write_bytes(b"garbage" if damage == "garbage" else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="pdd.engine.teacher_cache"):
        again = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8).features(teacher, images, keys)
    assert "is unreadable" in caplog.text
    assert teacher.images_seen == 4
    assert torch.equal(again["z0"], expected["z0"]) and torch.equal(again["r1"], expected["r1"])
    assert TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8).features(teacher, images, keys)["z0"].equal(
        expected["z0"]) and teacher.images_seen == 4, "the shard was written again, whole"


def test_a_write_killed_midway_is_never_read(tmp_path):
    """A kill inside a shard's write leaves only a temporary file beside the shards: never indexed."""
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    images, keys = _batch(2, seed=7)
    cache.features(teacher, images, keys)
    [shard] = _shards(cache)
    (shard.parent / f".{shard.name}.x1y2.tmp").write_bytes(shard.read_bytes()[:100])
    shard.unlink()
    fresh = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    assert fresh.features(teacher, images, keys)["z0"].equal(teacher(images)["z0"])
    assert (fresh.hits, fresh.misses) == (0, 2)
    [left] = cache.directory.glob(".*.tmp")
    TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    assert left.exists(), "a recent temporary may belong to a live writer"
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    assert not left.exists(), "an hour-old one is a killed writer's"


def test_a_shard_of_another_key_is_never_served(tmp_path, caplog):
    """Features are named by image sha256 inside a directory keyed by teachers, size and dtype; a shard copied
    from another key's directory is refused, not served."""
    teacher = _CountingTeacher()
    images, keys = _batch(2, seed=8)
    other = TeacherFeatureCache(tmp_path, {"t": "other"}, image_size=8)
    other.features(lambda batch: {"z0": batch * 0}, images, keys)
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    [foreign] = _shards(other)
    (cache.directory / foreign.name).write_bytes(foreign.read_bytes())
    with caplog.at_level(logging.WARNING, logger="pdd.engine.teacher_cache"):
        served = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8).features(teacher, images, keys)
    assert "unreadable" in caplog.text and "key" in caplog.text
    assert torch.equal(served["z0"], teacher(images)["z0"])


def test_entries_another_process_stored_are_found_on_a_miss(tmp_path):
    teacher = _CountingTeacher()
    first = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    second = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    images, keys = _batch(3, seed=9)
    first.features(teacher, images, keys)
    second.features(teacher, images, keys)
    assert teacher.images_seen == 3 and (second.hits, second.misses) == (3, 0)


def test_entries_of_the_per_image_format_move_into_a_shard_without_recomputing(tmp_path, caplog):
    teacher = _CountingTeacher()
    images, keys = _batch(3, seed=10)
    computed = teacher(images)
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    for row, sha in enumerate(keys[:2]):  # what the earlier cache wrote: one torch.save per image
        old = cache.directory / sha[:2] / f"{sha}.pt"
        old.parent.mkdir(parents=True, exist_ok=True)
        torch.save({name: value[row].clone() for name, value in computed.items()}, old)
    with caplog.at_level(logging.INFO, logger="pdd.engine.teacher_cache"):
        cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
        served = cache.features(teacher, images, keys)
    assert "2 entries of the earlier per-image format" in caplog.text
    assert teacher.images_seen == 3 + 1, "only the image without an old entry was computed"
    assert not list(cache.directory.glob("??/*.pt")), "moved, not copied"
    reread = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8).features(teacher, images, keys)
    for name, value in computed.items():
        assert torch.equal(served[name], value) and torch.equal(reread[name], value)


@pytest.mark.parametrize("train_setting, dataset_setting, on_cpu, on_cuda", [
    ("auto", None, True, False),  # auto: cache on the CPU, recompute on CUDA
    ("true", None, True, True),
    ("false", None, False, False),
    ("true", "auto", True, False),  # the dataset's own setting wins
    ("auto", "false", False, False),
])
def test_teacher_cache_policy_by_device(engine_workspace, train_setting, dataset_setting, on_cpu, on_cuda):
    overrides = [f"train.teacher_cache={train_setting}"]
    if dataset_setting is not None:
        overrides.append(f"data.datasets.headct.teacher_cache={dataset_setting}")
    params = engine_workspace.params(*overrides)
    assert params.teacher_cache_enabled("headct", "cpu") is on_cpu
    assert params.teacher_cache_enabled("headct", "cuda") is on_cuda
    assert params.teacher_cache_enabled("headct") is on_cpu  # planning (disk): the CPU's, the most disk


def test_auto_decides_by_the_models_device_and_logs_it(engine_workspace, tmp_path, caplog):
    from pdd.config import RunSpec
    from pdd.engine.rundir import RunDir
    from pdd.engine.runs import RunContext

    params = engine_workspace.params("train.teacher_cache=auto", f"paths.cache={tmp_path}")
    context = RunContext(params, RunSpec("headct", "full", "code", 0), RunDir(tmp_path / "run"))
    with caplog.at_level(logging.INFO, logger="pdd.engine.runs"):
        assert context.teacher_cache(context.build_model()) is not None
        on_gpu = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda"))]))
        assert context.teacher_cache(on_gpu) is None
    assert "headct on cpu: read from the disk cache" in caplog.text
    assert "headct on cuda: recomputed every batch" in caplog.text
