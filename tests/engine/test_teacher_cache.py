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
    """VMamba's taps are channels_last views (the authors' layout); a cached batch must be laid out the same."""
    cache = TeacherFeatureCache(tmp_path, {"t": "layout"}, image_size=8)
    images, keys = _batch(3, seed=6)

    def channels_last_teacher(batch):
        return {"z0": (batch * 2).contiguous(memory_format=torch.channels_last)}

    miss = cache.features(channels_last_teacher, images, keys)
    hit = cache.features(channels_last_teacher, images, keys)
    expected = channels_last_teacher(images)["z0"]
    for served in (miss["z0"], hit["z0"]):
        assert served.stride() == expected.stride() and torch.equal(served, expected)


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


def test_corrupt_entry_is_recomputed(tmp_path):
    teacher = _CountingTeacher()
    cache = TeacherFeatureCache(tmp_path, {"t": "a"}, image_size=8)
    images, keys = _batch(2, seed=5)
    expected = cache.features(teacher, images, keys)
    entry = next(cache.directory.rglob(f"{keys[0]}.pt"))
    entry.write_bytes(b"garbage")
    again = cache.features(teacher, images, keys)
    assert teacher.images_seen == 3
    assert torch.equal(again["z0"], expected["z0"])
