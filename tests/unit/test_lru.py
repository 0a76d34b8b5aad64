"""The bounded LRU maps: by count, and by the bytes their values weigh."""

from __future__ import annotations

from cargohold.lru import LRU, SizedLRU


def test_lru_drops_the_least_recently_used():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now "b" is the oldest
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)


def test_sized_lru_counts_bytes_and_evicts_to_stay_under_its_bound():
    lru = SizedLRU(100)
    lru.put("a", "A", 40)
    lru.put("b", "B", 40)
    assert lru.bytes == 80 and len(lru) == 2
    assert lru.get("a") == "A"  # "b" is now the oldest
    lru.put("c", "C", 40)
    assert lru.bytes == 80 and lru.get("b") is None and lru.get("a") == "A" and lru.get("c") == "C"
    lru.put("d", "D", 100)  # exactly the bound: everything else goes
    assert lru.bytes == 100 and len(lru) == 1 and lru.get("d") == "D"


def test_sized_lru_replacing_and_popping_keep_the_total_exact():
    lru = SizedLRU(1000)
    lru.put("a", "A", 300)
    lru.put("a", "A2", 100)
    assert lru.bytes == 100 and lru.get("a") == "A2"
    assert lru.pop("a") == "A2" and lru.bytes == 0
    assert lru.pop("a", "gone") == "gone" and lru.bytes == 0


def test_sized_lru_never_keeps_a_value_over_its_bound():
    lru = SizedLRU(100)
    lru.put("small", 1, 10)
    lru.put("huge", 2, 101)
    assert lru.get("huge") is None and lru.get("small") == 1 and lru.bytes == 10
    off = SizedLRU(0)
    off.put("x", 1, 1)
    assert len(off) == 0 and off.bytes == 0


def test_sized_lru_also_honours_a_count():
    lru = SizedLRU(1 << 20, capacity=2)
    for key in "abc":
        lru.put(key, key, 1)
    assert len(lru) == 2 and lru.bytes == 2 and lru.get("a") is None


def test_a_stream_of_large_values_stays_within_the_bound():
    lru = SizedLRU(16 << 20)
    for i in range(100):
        lru.put(i, b"", 4 << 20)
        assert lru.bytes <= 16 << 20
    assert len(lru) == 4 and [lru.get(i) for i in (95, 96, 99)] == [None, b"", b""]
