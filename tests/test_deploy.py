"""The deployment files: prefect.yaml's deployments point at real flows and pools, the Kubernetes job templates
declare every variable they use, and the GPU pool's jobs ask for GPUs."""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_name_existing_flows_on_the_two_pools():
    sys.path.insert(0, str(ROOT))
    import flows.pipeline as pipeline

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"full-pipeline", "stage-cpu", "stage-gpu"}
    for d in deployments.values():
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and hasattr(pipeline, func)
    assert {d["work_pool"]["name"] for d in deployments.values()} == {"svd-cpu", "svd-gpu"}
    assert deployments["full-pipeline"]["parameters"]["work_pools"] is True
    flow_names = {getattr(pipeline, d["entrypoint"].split(":")[1]).name for d in deployments.values()}
    # dispatch_stage runs "svd-stage/stage-<pool>": the stage flow's name and the deployments' names must agree
    assert flow_names == {"svd", "svd-stage"}


def test_job_templates_declare_what_they_use():
    for kind in ("cpu", "gpu"):
        template = json.loads((ROOT / "deploy" / "k8s" / f"{kind}-job-template.json").read_text())
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
        declared = set(template["variables"]["properties"])
        assert used <= declared, used - declared
        container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
        asks = container["resources"]["requests"]
        assert ("nvidia.com/gpu" in asks) == (kind == "gpu")
