"""A run across workers that is ended frees every placement group its controller asked for, even one asked for
while its killer looked: names are posted on the run's board before a group is made, and a closed board refuses
them (``Board``, ``free_reserved``). Here a small actor plays Ray Train's controller, so the timing is the test's."""

import sys
import time

import pytest
from ray import cloudpickle
from support import every_cpu_held

from tlcore.training.data_parallel import GROUP_PREFIX, Board, free_reserved

pytestmark = pytest.mark.slow  # Ray actors and placement groups
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module


class Maker:
    """Does what ``_naming_placement_groups`` makes Ray Train's controller do: post the name, then ask."""

    def reserve(self, board, name: str) -> None:
        import ray

        ray.get(board.reserving.remote(name, ray.get_runtime_context().current_actor))

    def ask(self, name: str, cpus: float, pause: float = 0.0) -> None:
        from ray.util.placement_group import placement_group

        time.sleep(pause)  # the window in which a killer may look
        placement_group([{"CPU": cpus}], name=name)

    def make(self, board, name: str, cpus: float) -> None:
        self.reserve(board, name)
        self.ask(name, cpus)


def groups_named(names) -> dict[str, str]:
    from ray.util.placement_group import placement_group_table

    return {group["name"]: group["state"] for group in placement_group_table().values()
            if group["name"] in names and group["state"] != "REMOVED"}


@pytest.fixture
def ray(ray_address):
    import ray

    return ray


@pytest.fixture
def held(ray):
    """Every CPU reserved, as another job or a sweep would: the groups below wait."""
    with every_cpu_held():
        yield


def test_a_waiting_group_is_removed_and_its_maker_ended(ray, held):
    board, maker = ray.remote(num_cpus=0)(Board).remote(), ray.remote(num_cpus=0)(Maker).remote()
    name = f"{GROUP_PREFIX}waiting"
    ray.get(maker.make.remote(board, name, 1.0), timeout=60)
    assert groups_named({name}) == {name: "PENDING"}  # it waits for the CPUs held
    reserved = ray.get(board.close.remote())
    assert [n for n, _ in reserved] == [name]
    assert free_reserved(reserved) == [name]
    assert groups_named({name}) == {}
    with pytest.raises(ray.exceptions.RayActorError):  # the controller ended first: it can ask for nothing more
        ray.get(maker.__ray_ready__.remote(), timeout=10)


def test_a_group_asked_for_while_the_killer_looks_is_never_made(ray, held):
    """The name is on the board, the group not yet asked for: ending the controller first leaves nothing."""
    board, maker = ray.remote(num_cpus=0)(Board).remote(), ray.remote(num_cpus=0)(Maker).remote()
    name = f"{GROUP_PREFIX}in-flight"
    ray.get(maker.reserve.remote(board, name), timeout=60)
    asking = maker.ask.remote(name, 1.0, pause=2.0)
    reserved = ray.get(board.close.remote())
    assert [n for n, _ in reserved] == [name]
    assert free_reserved(reserved) == []  # nothing made yet...
    time.sleep(3.0)  # ...and, past the maker's pause, nothing made since: had it lived, its group would exist now
    assert groups_named({name}) == {}
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(asking, timeout=10)


def test_a_closed_board_refuses_a_new_name(ray):
    board, maker = ray.remote(num_cpus=0)(Board).remote(), ray.remote(num_cpus=0)(Maker).remote()
    assert ray.get(board.close.remote()) == []
    name = f"{GROUP_PREFIX}late"
    with pytest.raises(ray.exceptions.RayTaskError, match="being ended: it may not reserve CPUs"):
        ray.get(maker.make.remote(board, name, 1.0), timeout=60)
    assert groups_named({name}) == {}
    ray.kill(maker)
