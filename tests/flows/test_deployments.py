"""prefect.yaml: every deployment points at the real flow and takes valid parameters."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import Flow
from prefect.utilities.importtools import import_object

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def test_deployments_point_at_the_billing_flow() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    names = {d["name"] for d in config["deployments"]}
    assert names == {"monthly", "on-demand"}
    for deployment in config["deployments"]:
        flow = import_object(deployment["entrypoint"])
        assert isinstance(flow, Flow)
        assert flow.name == "billing-run"
        # parameters must be ones the flow takes (none are required)
        assert set(deployment["parameters"]) <= set(flow.parameters.properties)
        assert deployment["work_pool"]["name"] == "billing"


def test_the_monthly_schedule_runs_on_the_second_at_six_utc() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    (monthly,) = [d for d in config["deployments"] if d["name"] == "monthly"]
    assert monthly["schedules"] == [{"cron": "0 6 2 * *", "timezone": "UTC"}]
