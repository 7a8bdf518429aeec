import json
from pathlib import Path

import pytest

from loadtest import profiles
from loadtest.profiles import Plan, ProfileError


def write(folder: Path, name: str, body: dict[str, object]) -> None:
    (folder / f"{name}.json").write_text(json.dumps(body))


GET = {
    "call": "shop.orders.v1.OrderService/GetOrder",
    "data": {"order_id": "${ORDER_ID}"},
    "total": 100,
    "concurrency": 16,
    "max-duration": "10s",
    "timeout": "5s",
}
CREATE = {
    "call": "shop.orders.v1.OrderService/CreateOrder",
    "total": 50000,
    "max-duration": "10s",
    "data": [
        {"items": [{"sku": "A-1", "quantity": 1}]},
        {"items": [{"sku": "B-2", "quantity": 1}]},
    ],
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "get_order", GET)
    write(tmp_path, "create_order", CREATE)
    return tmp_path


def test_every_shipped_profile_loads() -> None:
    for name in profiles.available():
        profile = profiles.load(name)
        assert profile.jobs or profile.notification, name


def test_a_call_profile_is_one_job_and_duration_replaces_its_length(folder: Path) -> None:
    profile = profiles.load("get_order", 3.0, folder)

    (job,) = profile.jobs
    assert job.config["max-duration"] == "3000ms" and job.config["total"] == 100
    assert job.service == "orders" and job.offered_rps is None


def test_a_shape_lays_its_load_options_over_each_call(folder: Path) -> None:
    write(
        folder,
        "latency",
        {"rps": 50, "concurrency": 64, "bench": {"calls": ["get_order", "create_order"]}},
    )

    profile = profiles.load("latency", None, folder)

    assert [j.label for j in profile.jobs] == ["get_order", "create_order"]
    assert all(j.config["concurrency"] == 64 and j.offered_rps == 50 for j in profile.jobs)
    assert profile.jobs[0].config["timeout"] == "5s"  # the call's own option stays
    assert not profile.together


def test_a_step_profile_lasts_as_long_as_its_schedule(folder: Path) -> None:
    write(
        folder,
        "step",
        {
            "load-schedule": "step",
            "load-start": 10,
            "load-step": 20,
            "load-end": 50,
            "load-step-duration": "2s",
            "bench": {"calls": ["get_order"]},
        },
    )

    profile = profiles.load("step", 60.0, folder)

    step = profile.jobs[0].step
    assert profile.is_step and step is not None and step.rates == [10, 30, 50]
    assert profile.jobs[0].config["max-duration"] == "6000ms"
    assert profile.jobs[0].offered_rps == 50


def test_each_call_of_a_step_profile_may_climb_over_its_own_range(folder: Path) -> None:
    write(
        folder,
        "step",
        {
            "load-schedule": "step",
            "load-start": 10,
            "load-step": 10,
            "load-end": 30,
            "load-step-duration": "1s",
            "bench": {
                "calls": [{"call": "get_order", "load-start": 100, "load-end": 300}, "create_order"]
            },
        },
    )

    profile = profiles.load("step", None, folder)

    reads, writes = (job.step for job in profile.jobs)
    assert reads is not None and reads.rates == list(range(100, 301, 10))
    assert writes is not None and writes.rates == [10, 20, 30]
    assert [job.label for job in profile.jobs] == ["get_order", "create_order"]


def test_jobs_start_and_last_for_fractions_of_the_profile(folder: Path) -> None:
    write(
        folder,
        "spike",
        {
            "max-duration": "15s",
            "bench": {
                "jobs": [
                    {"call": "create_order", "role": "base", "rps": 10},
                    {
                        "call": "create_order",
                        "role": "burst",
                        "rps": 40,
                        "start": 0.2,
                        "length": 0.4,
                    },
                ]
            },
        },
    )

    profile = profiles.load("spike", None, folder)

    base, burst = profile.jobs
    assert profile.together and profile.is_spike
    assert base.label == "create_order (base)" and base.duration_s == 15
    assert burst.start_s == pytest.approx(3) and burst.duration_s == pytest.approx(6)
    assert burst.offered_rps == 40


def test_a_profile_naming_an_unknown_service_is_refused(folder: Path) -> None:
    write(folder, "odd", {"call": "other.Service/Method"})

    with pytest.raises(ProfileError, match="unknown service"):
        profiles.load("odd", None, folder)


def test_durations_are_read_the_way_ghz_writes_them() -> None:
    assert profiles.parse_duration("2m30s") == 150
    assert profiles.parse_duration("500ms") == 0.5
    with pytest.raises(ProfileError):
        profiles.parse_duration("soon")


def test_a_list_placeholder_makes_one_message_per_value() -> None:
    data = {"order_id": "${IDS}", "reason": "r"}

    assert profiles.substitute(data, {"IDS": ["a", "b"]}) == [
        {"order_id": "a", "reason": "r"},
        {"order_id": "b", "reason": "r"},
    ]
    assert profiles.substitute(data, {"IDS": "x"}) == {"order_id": "x", "reason": "r"}


def test_the_plan_restocks_every_sku_a_create_can_buy(folder: Path) -> None:
    write(folder, "open", {"rps": 10, "max-duration": "5s", "bench": {"calls": ["create_order"]}})

    plan = Plan([profiles.load("create_order", None, folder), profiles.load("open", None, folder)])

    # closed loop: bounded by "total"; open loop: by rate x duration
    assert plan.orders_per_sku() == {"A-1": 50000 + 51, "B-2": 50000 + 51}
    assert Plan([profiles.load("get_order", None, folder)]).placeholders() == {"ORDER_ID"}


def test_an_anchor_job_keeps_the_load_and_drops_the_call(folder: Path) -> None:
    (job,) = profiles.load("get_order", None, folder).jobs

    anchor = job.anchor_config(Path("/p"))

    assert anchor["call"] == profiles.HEALTH_CALL and anchor["data"] == {}
    assert anchor["concurrency"] == 16 and anchor["max-duration"] == "10s"
    assert anchor["import-paths"] == ["/p"]
