"""The node's inventory and the store's reservations, in process, on real SQLite and PostgreSQL.

GPUs here are a simulated inventory configured explicitly (RUNYARD_RUNTIME_SIMULATED_GPUS): this host has
no NVIDIA GPU, so NVML finds none (which the last test checks is said plainly).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from runyard.controller.capacity import gpu_env, waiting_message
from runyard.core.errors import Invalid
from runyard.core.phases import Phase
from runyard.core.resources import ObjectMeta, Run, RunSpec, RunStatus
from runyard.services.gpus import Gpu, GpuInventory, parse_simulated
from runyard.services.node import Node, human_bytes
from runyard.settings import RuntimeSettings
from runyard.store import Store
from runyard.store.allocations import Capacity, Demand, Holder, NodeUsage

TWO_GPUS = Capacity(cpu=4.0, memory=8 << 30, gpus=(0, 1))


def test_a_simulated_inventory_is_a_count_or_a_list_and_a_bad_one_says_how_to_write_it():
    assert [(g.index, g.simulated) for g in parse_simulated("2")] == [(0, True), (1, True)]
    gpus = parse_simulated('[{"model": "A100", "memory": "80Gi"}, {}]')
    assert [(g.model, g.memory_bytes) for g in gpus] == [("A100", 80 << 30), ("Simulated GPU", 16 << 30)]
    with pytest.raises(ValueError, match="JSON list"):
        parse_simulated("two")
    with pytest.raises(ValueError, match="item 0: unknown keys"):
        parse_simulated('[{"modle": "A100"}]')


def test_node_settings_above_the_host_name_the_setting():
    with pytest.raises(Invalid) as err:
        Node(RuntimeSettings(node_cpu=100000, node_memory="1000Ti", simulated_gpus="1", node_gpus=3))
    problems = {d.field: d.reason for d in err.value.details}
    assert "more than this host offers" in problems["RUNYARD_RUNTIME_NODE_CPU"]
    assert "more than this host's memory" in problems["RUNYARD_RUNTIME_NODE_MEMORY"]
    assert "1 were found" in problems["RUNYARD_RUNTIME_NODE_GPUS"]
    with pytest.raises(Invalid) as err:
        Node(RuntimeSettings(simulated_gpus="lots"))
    assert err.value.details[0].field == "RUNYARD_RUNTIME_SIMULATED_GPUS"


def test_node_capacity_may_be_set_lower_and_unschedulable_requests_name_both_figures():
    node = Node(RuntimeSettings(node_cpu=1, node_memory="1Gi", simulated_gpus="4", node_gpus=2))
    assert node.capacity == Capacity(1.0, 1 << 30, (0, 1))
    assert node.unschedulable(Demand(cpu=1.0, memory=1 << 30, gpu=2)) is None
    assert node.unschedulable(Demand(cpu=1.5)) == (
        "requests cpu 1.5 cores, but the node offers 1 (RUNYARD_RUNTIME_NODE_CPU)"
    )
    assert node.unschedulable(Demand(memory=2 << 30)) == (
        "requests memory 2.0 GiB, but the node offers 1.0 GiB (RUNYARD_RUNTIME_NODE_MEMORY)"
    )
    assert node.unschedulable(Demand(gpu=3)) == (
        "requests 3 GPUs, but the node offers 2 (RUNYARD_RUNTIME_NODE_GPUS offers 2 of 4)"
    )


def test_without_nvml_the_node_has_no_gpus_and_says_why():
    """This host has no NVIDIA driver: NVML's own error is the note, and a GPU request is unschedulable."""
    inventory = GpuInventory.discover(None)
    assert inventory.gpus == [] and inventory.source == "none"
    node = Node(RuntimeSettings(), inventory)
    msg = node.unschedulable(Demand(gpu=1))
    assert msg is not None
    assert msg.startswith("requests 1 GPU, but the node has none (")
    assert "RUNYARD_RUNTIME_SIMULATED_GPUS for tests" in msg


def test_waiting_messages_name_the_holders_of_this_project_and_count_the_others():
    usage = NodeUsage(
        [
            Holder("u1", "default", "run-a", 1.0, 0, (0,)),
            Holder("u2", "default", "run-b", 0.0, 0, (1,)),
            Holder("u3", "other", "secret", 2.0, 6 << 30, ()),
        ]
    )
    assert waiting_message(Demand(gpu=1), TWO_GPUS, usage, "default") == (
        "waiting for 1 GPU: 2 of 2 held by run-a, run-b"
    )
    msg = waiting_message(Demand(cpu=2.0, memory=4 << 30), TWO_GPUS, usage, "default")
    assert msg == (
        "waiting for 2 cores: 3 of 4 held by run-a, 1 run of other projects; "
        "4.0 GiB of memory: 6.0 GiB of 8.0 GiB held by 1 run of other projects"
    )
    assert human_bytes(1536) == "1.5 KiB"


def _run(store: Store, name: str, phase: Phase = Phase.QUEUED) -> Run:
    run = Run(
        metadata=ObjectMeta(name=name, project="default"),
        spec=RunSpec(command="true"),
        status=RunStatus(phase=phase),
    )
    return store.create(run)


def test_reservations_are_exclusive_idempotent_and_freed_with_the_final_status(store_url):
    store = Store(store_url)
    try:
        store.ensure_project("default")
        store.register_node("local", TWO_GPUS)
        a, b, c = (_run(store, n) for n in ("a", "b", "c"))
        got = store.reserve("local", TWO_GPUS, a.uid, "default", "a", Demand(cpu=1.0, gpu=2))
        assert isinstance(got, Holder) and got.gpus == (0, 1)
        again = store.reserve("local", TWO_GPUS, a.uid, "default", "a", Demand(cpu=1.0, gpu=2))
        assert again == got  # a second start of the same run reuses what it holds
        blocked = store.reserve("local", TWO_GPUS, b.uid, "default", "b", Demand(gpu=1))
        assert isinstance(blocked, NodeUsage) and blocked.gpu_holders[0].name == "a"
        assert isinstance(store.reserve("local", TWO_GPUS, c.uid, "default", "c", Demand(cpu=3.0)), Holder)

        a.status.phase = Phase.SUCCEEDED
        store.update_status(a)  # the run's end frees it in the same transaction
        assert store.allocation_of(a.uid) is None
        got_b = store.reserve("local", TWO_GPUS, b.uid, "default", "b", Demand(gpu=1))
        assert isinstance(got_b, Holder) and got_b.gpus == (0,)

        store.delete(c.uid)  # deleting the run frees it too
        assert store.node_usage("local").cpu == 0
    finally:
        store.close()


def test_the_startup_sweep_frees_what_ended_or_gone_runs_hold_and_keeps_queued_ones(store_url):
    store = Store(store_url)
    try:
        store.ensure_project("default")
        store.register_node("local", TWO_GPUS)
        queued = _run(store, "queued")
        ended = _run(store, "ended", Phase.FAILED)
        for uid, name in ((queued.uid, "queued"), (ended.uid, "ended"), ("no-such-run", "gone")):
            assert isinstance(
                store.reserve("local", TWO_GPUS, uid, "default", name, Demand(gpu=0, cpu=1)), Holder
            )
        assert sorted(store.release_stale_allocations()) == sorted([ended.uid, "no-such-run"])
        assert [h.name for h in store.node_usage("local").holders] == ["queued"]
    finally:
        store.close()


def test_concurrent_reservations_never_hand_one_gpu_to_two_runs(store_url):
    """Sixteen writers at once (each its own connection) for two GPUs: exactly two get one each."""
    store = Store(store_url)
    try:
        store.ensure_project("default")
        store.register_node("local", TWO_GPUS)
        runs = [_run(store, f"r{i}") for i in range(16)]
        go = threading.Barrier(len(runs))

        def reserve(run: Run):
            go.wait()
            return store.reserve("local", TWO_GPUS, run.uid, "default", run.metadata.name, Demand(gpu=1))

        with ThreadPoolExecutor(len(runs)) as pool:
            results = list(pool.map(reserve, runs))
        held = [r for r in results if isinstance(r, Holder)]
        assert sorted(i for h in held for i in h.gpus) == [0, 1]
        assert sorted(store.node_usage("local").gpu_holders) == [0, 1]
    finally:
        store.close()


def test_a_run_is_told_its_real_gpus_by_uuid_and_simulated_ones_by_index():
    """An inventory with UUIDs stands in for what NVML reports (no NVIDIA GPU here). By index, a sandbox
    that lets the run open only /dev/nvidia1 would leave CUDA one device, its device 0, and "1" none."""
    real = [Gpu(0, "H200", 141 << 30, "GPU-aaaa"), Gpu(1, "H200", 141 << 30, "GPU-bbbb")]
    node = Node(RuntimeSettings(), GpuInventory(real, "nvml"))
    assert gpu_env(node, [1]) == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb", "NVIDIA_VISIBLE_DEVICES": "1"}
    assert gpu_env(node, [])["CUDA_VISIBLE_DEVICES"] == ""
    simulated = Node(RuntimeSettings(simulated_gpus="2"))
    assert gpu_env(simulated, [0, 1]) == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NVIDIA_VISIBLE_DEVICES": "0,1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
