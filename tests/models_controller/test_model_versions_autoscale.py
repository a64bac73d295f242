"""The pure parts of the model controller: which spec changes make a new version (and which reuse one),
how many versions are kept, and the autoscaler's arithmetic over time."""

from __future__ import annotations

from runyard.controller.models.versions import KEEP_VERSIONS, version_for
from runyard.core.resources import ModelSpec, ModelStatus
from runyard.serving.autoscale import ScaleMemory, desired_replicas


def test_scaling_fields_never_make_a_version_and_an_old_spec_reuses_its_own():
    st = ModelStatus()
    first, new = version_for(st, ModelSpec(handler="a:f"), None)
    assert (first.version, new) == (1, True)
    scaled = ModelSpec(handler="a:f", replicas=5, autoscaling={"minReplicas": 0, "maxReplicas": 9})
    assert version_for(st, scaled, None) == (first, False)
    second, new = version_for(st, ModelSpec(handler="a:f", env={"K": "v"}), None)
    assert (second.version, new) == (2, True)
    assert version_for(st, ModelSpec(handler="a:f"), None) == (first, False)  # a rollback
    other_source, new = version_for(st, ModelSpec(modelUri="models:/m@a"), "runs:/1/model")
    assert new and version_for(st, ModelSpec(modelUri="models:/m@a"), "runs:/2/model")[0].version == 4


def test_the_oldest_versions_go_but_never_the_one_serving():
    st = ModelStatus(currentVersion=1)
    version_for(st, ModelSpec(handler="a:f"), None)
    for i in range(KEEP_VERSIONS + 5):
        version_for(st, ModelSpec(handler="a:f", env={"N": str(i)}), None)
    kept = [v.version for v in st.versions]
    assert len(kept) == KEEP_VERSIONS and kept[0] == 1 and kept[-1] == KEEP_VERSIONS + 6
    assert kept[1] == 8  # 2..7 went


def test_autoscaling_rounds_up_clamps_waits_before_scaling_down_and_goes_to_zero_when_idle():
    spec = ModelSpec(
        handler="a:f",
        autoscaling={"minReplicas": 0, "maxReplicas": 4, "targetInFlight": 2, "scaleDownDelaySeconds": 10,
                     "scaleToZeroAfterSeconds": 60},
    )  # fmt: skip
    mem = ScaleMemory()
    assert desired_replicas(spec, 0, 0.0, 0.0, 0.0, mem) == 1  # active (a request waits): at least one
    assert desired_replicas(spec, 1, 5.0, 0.0, 1.0, mem) == 3
    assert desired_replicas(spec, 3, 100.0, 0.0, 2.0, mem) == 4
    assert desired_replicas(spec, 4, 1.0, 0.0, 3.0, mem) == 4  # below since 3.0: waits
    assert desired_replicas(spec, 4, 1.0, 0.0, 12.0, mem) == 4
    assert desired_replicas(spec, 4, 1.0, 0.0, 13.5, mem) == 1
    assert desired_replicas(spec, 1, 0.0, 61.0, 14.0, mem) == 0
    fixed = ModelSpec(handler="a:f", replicas=3)
    assert desired_replicas(fixed, 0, 100.0, 1e6, 0.0, ScaleMemory()) == 3
