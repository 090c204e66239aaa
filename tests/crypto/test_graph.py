"""Specification of accord.crypto.graph: the SecAgg+ neighbour graph of a round."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto.graph import neighbours
from accord.errors import InternalError

SEED = hashlib.sha256(b"round seed").digest()


def ids(count: int) -> list[str]:
    return [f"P{i:02d}" for i in range(count)]


def is_connected(graph: dict[str, tuple[str, ...]]) -> bool:
    start = next(iter(graph))
    seen = {start}
    frontier = [start]
    while frontier:
        for peer in graph[frontier.pop()]:
            if peer not in seen:
                seen.add(peer)
                frontier.append(peer)
    return len(seen) == len(graph)


@given(count=st.integers(1, 40), data=st.data(), seed=st.binary(min_size=32, max_size=32))
def test_graph_is_symmetric_regular_and_sorted(
    count: int, data: st.DataObject, seed: bytes
) -> None:
    sparse = [d for d in range(2, count - 1, 2)]
    degree = data.draw(st.sampled_from([*sparse, count - 1 if count > 1 else 0, count + 3]))
    graph = neighbours(ids(count), degree, seed)
    assert sorted(graph) == ids(count)
    expected_degree = min(degree, count - 1)
    for me, peers in graph.items():
        assert me not in peers
        assert list(peers) == sorted(set(peers))
        assert len(peers) == expected_degree
        for peer in peers:
            assert me in graph[peer]
    if count > 1 and expected_degree >= 2:
        assert is_connected(graph)


@pytest.mark.parametrize(("count", "degree"), [(1, 0), (2, 1), (5, 4), (5, 5), (6, 5), (6, 100)])
def test_large_degree_gives_the_complete_graph(count: int, degree: int) -> None:
    graph = neighbours(ids(count), degree, SEED)
    for me in ids(count):
        assert graph[me] == tuple(peer for peer in ids(count) if peer != me)


def test_same_inputs_same_graph_whatever_the_listing_order() -> None:
    first = neighbours(ids(30), 6, SEED)
    assert neighbours(ids(30), 6, SEED) == first
    assert neighbours(list(reversed(ids(30))), 6, SEED) == first


def test_different_seeds_give_different_graphs() -> None:
    other = hashlib.sha256(b"another round").digest()
    assert neighbours(ids(30), 4, SEED) != neighbours(ids(30), 4, other)


def test_sparse_graph_is_not_just_the_sorted_ring() -> None:
    graph = neighbours(ids(30), 2, SEED)
    ring = {
        me: tuple(sorted({ids(30)[(i - 1) % 30], ids(30)[(i + 1) % 30]}))
        for i, me in enumerate(ids(30))
    }
    assert graph != ring


@pytest.mark.parametrize("degree", [0, 1, 3, 7, -1])
def test_sparse_degree_must_be_even_and_at_least_two(degree: int) -> None:
    with pytest.raises(InternalError):
        neighbours(ids(10), degree, SEED)


def test_refuses_repeated_ids() -> None:
    with pytest.raises(InternalError):
        neighbours(["P1", "P2", "P1"], 2, SEED)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_refuses_seeds_that_are_not_32_bytes(seed: bytes) -> None:
    with pytest.raises(InternalError):
        neighbours(ids(5), 2, seed)


def test_no_participants_no_graph() -> None:
    assert neighbours([], 4, SEED) == {}
