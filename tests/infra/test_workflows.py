"""The GitHub Actions workflows: what a deploy waits for, what it runs, in which order.
(actionlint checks their syntax and expressions; these check their intent.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
SHA = re.compile(r"^[^@]+@[0-9a-f]{40}$")
IMAGES = ["order-grpc", "order-projector", "order-worker", "order-dbinit"]


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(wf: dict) -> dict:
    return wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_is_pinned_to_a_commit(name):
    """defect 8: a tag can be moved to other code; a commit SHA cannot."""
    unpinned = [
        s["uses"]
        for job in load(name)["jobs"].values()
        for s in steps(job)
        if "uses" in s and not s["uses"].startswith("./") and not SHA.match(s["uses"])
    ]
    assert unpinned == []


def test_deploy_waits_for_ci():
    """defect 8: dev deploys only after the ci workflow passed for the commit; a manual deploy
    checks the commit's ci verdict first; every deploying job depends on that gate."""
    wf = load("deploy.yml")
    on = triggers(wf)
    assert "push" not in on, "a push deploys without waiting for ci"
    assert on["workflow_run"]["workflows"] == ["ci"] and on["workflow_run"]["types"] == ["completed"]
    assert on["workflow_run"].get("branches") == ["main"]
    gate = wf["jobs"]["gate"]
    assert "workflow_run.conclusion == 'success'" in gate["if"]
    assert "actions/workflows/ci.yml/runs" in runs(gate) and "status=success" in runs(gate)
    for name, job in wf["jobs"].items():
        if name != "gate":
            needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
            assert "gate" in needs or any("gate" in wf["jobs"][n].get("needs", []) for n in needs), name
    for job in ("plan", "apply"):
        checkout = next(s for s in steps(wf["jobs"][job]) if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["ref"] == "${{ needs.gate.outputs.sha }}", f"{job} builds another commit than ci checked"


def test_a_rerun_does_not_push_existing_tags():
    """defect 4: tags are immutable; each image is pushed only when its tag is absent."""
    plan = load("deploy.yml")["jobs"]["plan"]
    existing = next(s for s in steps(plan) if s.get("id") == "existing")
    assert "ecs-deploy.sh image-exists" in existing["run"]
    for image in IMAGES:
        build = next(s for s in steps(plan) if s.get("with", {}).get("target") == image)
        assert build["if"] == f"steps.existing.outputs.{image} != 'true'", image


def test_migrations_are_dry_run_then_approved_in_prod_then_applied():
    jobs = load("deploy.yml")["jobs"]
    plan, approve, apply = jobs["plan"], jobs["approve"], jobs["apply"]
    assert "ecs-deploy.sh migrate --dry-run" in runs(plan)
    assert re.search(r"ecs-deploy\.sh migrate \"", runs(plan)) is None, "plan applies migrations"
    assert approve["environment"] == "prod-approval" and approve["if"] == "needs.gate.outputs.environment == 'prod'"
    assert "approve" in apply["needs"] and "plan" in apply["needs"]
    assert "needs.approve.result == 'success'" in apply["if"] and "needs.plan.result == 'success'" in apply["if"]
    order = [s.get("name", "") for s in steps(apply)]
    assert order.index("Run the migration task and wait for it") < order.index("Deploy order-grpc blue/green and wait")


def test_order_grpc_is_deployed_blue_green_the_others_rolled():
    apply = runs(load("deploy.yml")["jobs"]["apply"])
    assert 'ecs-deploy.sh blue-green "${ECS_SERVICE_PREFIX}-order-grpc"' in apply
    roll = apply[apply.index("ecs-deploy.sh roll"):]
    assert "order-projector" in roll and "order-worker" in roll and "order-grpc" not in roll


def test_rollback_is_by_task_definition_revision():
    wf = load("rollback.yml")
    assert set(triggers(wf)) == {"workflow_dispatch"}
    assert "ecs-deploy.sh rollback" in runs(wf["jobs"]["rollback"])


@pytest.mark.parametrize("dry_run", ["true", "false"])
@pytest.mark.parametrize("task_definition", ["", "arn:aws:ecs:eu-west-1:123456789012:task-definition/x-order-worker:9"])
def test_rollback_has_a_dry_run_that_passes_dry_run_to_the_script(tmp_path, dry_run, task_definition):
    """The operator can see the target before anything changes: input dry_run (off by default)
    runs `ecs-deploy.sh rollback --dry-run` with the same service and revision."""
    import subprocess

    wf = load("rollback.yml")
    dry_input = triggers(wf)["workflow_dispatch"]["inputs"]["dry_run"]
    assert dry_input["type"] == "boolean" and dry_input["default"] is False
    job = wf["jobs"]["rollback"]
    step = next(s for s in steps(job) if "ecs-deploy.sh rollback" in s.get("run", ""))
    assert step["env"]["DRY_RUN"] == "${{ inputs.dry_run }}"
    # the step's script, against a stand-in for the deploy script that prints its arguments
    stub = tmp_path / "deploy" / "ci" / "ecs-deploy.sh"
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "ECS_SERVICE_PREFIX": "x", "SERVICE": "order-worker",
           "TASK_DEFINITION": task_definition, "DRY_RUN": dry_run}
    out = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    expected = ["rollback"] + (["--dry-run"] if dry_run == "true" else []) + ["x-order-worker"]
    expected += [task_definition] if task_definition else []
    assert out == expected


def test_a_cancel_stops_the_deploy_and_the_rollback():
    """`always()` in a job's condition makes Cancel workflow pass the job by (GitHub re-checks
    the conditions of running jobs on a cancel), and GitHub kills it minutes later wherever it
    is; `!cancelled()` lets a skipped approval through and a cancel stop the job."""
    for name, job in (("deploy.yml", "apply"), ("rollback.yml", "rollback")):
        condition = load(name)["jobs"][job]["if"]
        assert "always()" not in condition and "!cancelled()" in condition, (name, condition)


def test_a_prod_rollback_waits_for_a_reviewer_and_a_dry_run_does_not():
    jobs = load("rollback.yml")["jobs"]
    approve, rollback = jobs["approve"], jobs["rollback"]
    assert approve["environment"] == "prod-approval"
    assert approve["if"] == "inputs.environment == 'prod' && !inputs.dry_run"
    assert rollback["needs"] == ["approve"]
    assert "needs.approve.result == 'success'" in rollback["if"]
    assert "needs.approve.result == 'skipped'" in rollback["if"]


def test_the_jobs_outlast_the_scripts_waits():
    """ecs-deploy.sh waits at most WAIT_ATTEMPTS (3) x 10 minutes for a migration and for a
    roll, and BLUE_GREEN_WAIT_ATTEMPTS (2) x 30 for a blue/green deployment: a job that ends
    first is killed mid-step, before the script can say what it left going on."""
    script = (WORKFLOWS.parents[1] / "deploy" / "ci" / "ecs-deploy.sh").read_text()
    waits = int(re.search(r"WAIT_ATTEMPTS=\$\{WAIT_ATTEMPTS:-(\d+)\}", script).group(1))
    blue_green = int(re.search(r"BLUE_GREEN_WAIT_ATTEMPTS=\$\{BLUE_GREEN_WAIT_ATTEMPTS:-(\d+)\}", script).group(1))
    apply = load("deploy.yml")["jobs"]["apply"]["timeout-minutes"]
    rollback = load("rollback.yml")["jobs"]["rollback"]["timeout-minutes"]
    assert apply > 2 * waits * 10 + blue_green * 30, apply
    assert rollback > max(blue_green * 30, waits * 10), rollback
