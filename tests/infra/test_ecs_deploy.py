"""deploy/ci/ecs-deploy.sh against a stubbed AWS CLI (tests/infra/fakes/aws): which calls it
makes, in which order, with which arguments, and how it reads the answers. Needs bash and jq.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(os.environ.get("ECS_DEPLOY_SCRIPT", REPO / "deploy/ci/ecs-deploy.sh"))
FAKES = Path(__file__).resolve().parent / "fakes"

CLUSTER = "order-ledger-dev"
ACCOUNT = "arn:aws:ecs:eu-west-1:123456789012"
GRPC = "order-ledger-dev-order-grpc"
WORKER = "order-ledger-dev-order-worker"


def td(family: str, revision: int) -> str:
    return f"{ACCOUNT}:task-definition/{family}:{revision}"


def service(name: str, controller: str, current: str, primary: str | None = None, rollout: str = "COMPLETED") -> str:
    s = {
        "serviceName": name,
        "taskDefinition": current,
        "deploymentController": {"type": controller},
        "deployments": [{"status": "PRIMARY", "taskDefinition": primary or current, "rolloutState": rollout}],
        "loadBalancers": [{"containerName": "order-grpc", "containerPort": 50051}] if controller == "CODE_DEPLOY" else [],
    }
    return json.dumps({"services": [s]})


class Aws:
    def __init__(self, tmp: Path):
        if shutil.which("jq") is None:
            pytest.fail("jq not found (ecs-deploy.sh needs it)")
        self.tmp = tmp
        self.log = tmp / "calls.jsonl"
        self.scenario = tmp / "scenario.json"
        self.rules: list[dict] = []

    def on(self, *call: str, has: tuple[str, ...] = (), stdout: str = "", stderr: str = "", exit: int = 0,
           times: int | None = None) -> "Aws":
        rule = {"call": list(call), "has": list(has), "stdout": stdout, "stderr": stderr, "exit": exit}
        if times is not None:
            rule["times"] = times
        self.rules.append(rule)
        return self

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        # Unless a test says otherwise: no CodeDeploy deployment is active.
        quiet = {"call": ["deploy", "list-deployments"], "has": [], "stdout": "[]\n", "stderr": "", "exit": 0}
        # ... and every image asked about is in ECR.
        kept = {"call": ["ecr", "describe-images"], "has": [], "stdout": '["kept"]\n', "stderr": "", "exit": 0}
        self.scenario.write_text(json.dumps(self.rules + [quiet, kept]))
        self.log.write_text("")
        full_env = {
            **os.environ,
            "PATH": f"{FAKES}:{os.environ['PATH']}",
            "FAKE_AWS_LOG": str(self.log),
            "FAKE_AWS_SCENARIO": str(self.scenario),
            "ECS_CLUSTER": CLUSTER,
            "MIGRATION_SUBNETS": "subnet-1,subnet-2",
            "MIGRATION_SECURITY_GROUP": "sg-1",
            "MIGRATION_LOG_GROUP": "/ecs/order-ledger-dev/migrate",
            "CODEDEPLOY_APPLICATION": GRPC,
            "CODEDEPLOY_GROUP": GRPC,
            "WAIT_ATTEMPTS": "2",
            "WAITER_PAUSE_SECONDS": "0",
            "WAITER_ROUND_SECONDS": "0",
            **env,
        }
        full_env.pop("GITHUB_STEP_SUMMARY", None)
        full_env.update(env)
        return subprocess.run(["bash", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def called(self, *prefix: str) -> list[list[str]]:
        return [c for c in self.calls() if c[: len(prefix)] == list(prefix)]


def arg(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


@pytest.fixture()
def aws(tmp_path) -> Aws:
    return Aws(tmp_path)


# --- defect 4: a re-run of the same commit must not push an existing (immutable) tag -----------


def test_image_exists_reads_ecr(aws):
    aws.on("ecr", "describe-images", has=("imageTag=abc",), stdout='["abc"]\n')
    aws.on("ecr", "describe-images", has=("imageTag=new",), exit=254,
           stderr="An error occurred (ImageNotFoundException) when calling the DescribeImages operation\n")
    aws.on("ecr", "describe-images", has=("imageTag=err",), exit=254,
           stderr="An error occurred (AccessDeniedException) when calling the DescribeImages operation\n")

    assert aws.run("image-exists", "order-ledger-dev/order-grpc", "abc").stdout == "true\n"
    assert aws.run("image-exists", "order-ledger-dev/order-grpc", "new").stdout == "false\n"
    denied = aws.run("image-exists", "order-ledger-dev/order-grpc", "err")
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr, "an error must not read as 'absent'"
    assert arg(aws.calls()[0], "--repository-name") == "order-ledger-dev/order-grpc"


# --- defect 1: the new revision carries the previous one's tags -------------------------------


def test_register_copies_the_revision_with_its_tags_and_the_new_image(aws):
    previous = {
        "taskDefinition": {
            "taskDefinitionArn": td(GRPC, 7), "revision": 7, "status": "ACTIVE", "family": GRPC,
            "executionRoleArn": EXEC_ROLE, "taskRoleArn": TASK_ROLE,
            "containerDefinitions": [{"name": "order-grpc", "image": "repo/order-grpc:old"},
                                     {"name": "otel-collector", "image": "collector:v1"}],
        },
        "tags": [{"key": "project", "value": "order-ledger"}],
    }
    aws.on("ecs", "describe-task-definition", stdout=json.dumps(previous))
    aws.on("ecs", "register-task-definition", stdout=td(GRPC, 8) + "\n")
    result = aws.run("register", GRPC, "order-grpc=repo/order-grpc:new")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == td(GRPC, 8)
    spec = json.loads(arg(aws.called("ecs", "register-task-definition")[0], "--cli-input-json"))
    assert spec["tags"] == previous["tags"]
    assert [c["image"] for c in spec["containerDefinitions"]] == ["repo/order-grpc:new", "collector:v1"]
    assert (spec["executionRoleArn"], spec["taskRoleArn"]) == (EXEC_ROLE, TASK_ROLE)
    assert "revision" not in spec and "taskDefinitionArn" not in spec


EXEC_ROLE = "arn:aws:iam::123456789012:role/order-ledger-dev-order-grpc-exec"
TASK_ROLE = "arn:aws:iam::123456789012:role/order-ledger-dev-order-grpc-task"


@pytest.mark.parametrize("missing", ["executionRoleArn", "taskRoleArn"])
def test_register_refuses_a_latest_revision_without_roles(aws, missing):
    """ECS cannot limit ecs:RegisterTaskDefinition by family, so another environment's deploy
    role in the same account can register a revision into this one's family; it cannot pass this
    environment's roles (iam:PassRole), so such a revision has none, or others (then registering
    the copy fails on PassRole). One without roles would run whatever image it names with this
    environment's network: it is refused, and nothing is registered."""
    latest = {
        "taskDefinition": {
            "taskDefinitionArn": td(GRPC, 9), "revision": 9, "status": "ACTIVE", "family": GRPC,
            "executionRoleArn": EXEC_ROLE, "taskRoleArn": TASK_ROLE,
            "registeredBy": "arn:aws:sts::123456789012:assumed-role/order-ledger-other-github-deploy/x",
            "containerDefinitions": [{"name": "order-grpc", "image": "public.example/anything:latest"}],
        },
    }
    del latest["taskDefinition"][missing]
    aws.on("ecs", "describe-task-definition", stdout=json.dumps(latest))
    aws.on("ecs", "register-task-definition", stdout=td(GRPC, 10) + "\n")
    result = aws.run("register", GRPC, "order-grpc=repo/order-grpc:new")
    assert result.returncode != 0
    assert "has no execution role or no task role" in result.stderr, result.stderr
    assert "order-ledger-other-github-deploy" in result.stderr, "say who registered it"
    assert aws.called("ecs", "register-task-definition") == [], "nothing may be registered"


# --- migration: dry run first (nothing applied), the real run after approval -------------------


def migration_answers(aws: Aws, migrate_exit: int = 0) -> Aws:
    task = f"{ACCOUNT}:task/{CLUSTER}/0123abcd"
    aws.on("ecs", "run-task", stdout=json.dumps({"tasks": [{"taskArn": task}], "failures": []}))
    aws.on("ecs", "wait", "tasks-stopped")
    aws.on("logs", "get-log-events", has=("migrate/migrate/0123abcd",),
           stdout="order-grpc migrate --dry-run: schema history at version 1; 1 migration(s) would be applied:\n")
    aws.on("logs", "get-log-events", stdout="bootstrap-roles: done\n")
    aws.on("ecs", "describe-tasks", stdout=json.dumps({"tasks": [{"stoppedReason": "Essential container in task exited",
        "containers": [{"name": "dbinit", "exitCode": 0}, {"name": "migrate", "exitCode": migrate_exit}]}]}))
    return aws


def test_migrate_dry_run_overrides_the_command_and_applies_nothing(aws, tmp_path):
    migration_answers(aws)
    summary = tmp_path / "summary.md"
    result = aws.run("migrate", "--dry-run", td("order-ledger-dev-migrate", 3), GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 0, result.stderr
    run = aws.called("ecs", "run-task")[0]
    overrides = json.loads(arg(run, "--overrides"))
    assert overrides == {"containerOverrides": [{"name": "migrate", "command": ["migrate", "--dry-run"]}]}
    assert "would be applied" in result.stdout
    assert "would be applied" in summary.read_text()


def test_migrate_runs_the_task_as_defined_and_fails_with_it(aws):
    migration_answers(aws)
    assert aws.run("migrate", td("order-ledger-dev-migrate", 3)).returncode == 0
    assert json.loads(arg(aws.called("ecs", "run-task")[0], "--overrides")) == {}
    aws.rules.clear()
    migration_answers(aws, migrate_exit=1)
    failed = aws.run("migrate", td("order-ledger-dev-migrate", 3))
    assert failed.returncode != 0 and "migration failed" in failed.stderr


def test_migrate_says_why_ecs_started_no_task(aws):
    aws.on("ecs", "run-task", stdout=json.dumps({"tasks": [], "failures": [
        {"arn": "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-1", "reason": "MISSING", "detail": "subnet not found"}]}))
    result = aws.run("migrate", td("order-ledger-dev-migrate", 3))
    assert result.returncode != 0
    assert "run-task started no task" in result.stderr and "MISSING (subnet not found)" in result.stderr, result.stderr


def test_migrate_tells_a_failing_waiter_from_a_task_still_running(aws):
    # The waiter fails at once (expired credentials), and so does the look at the task: the
    # error is not "still running after 20 minutes".
    migration_answers(aws)
    aws.rules = [r for r in aws.rules if r["call"] != ["ecs", "wait", "tasks-stopped"]]
    aws.rules.insert(0, {"call": ["ecs", "wait", "tasks-stopped"], "has": [], "stdout": "", "exit": 255,
                         "stderr": "An error occurred (ExpiredTokenException) when calling the DescribeTasks operation\n"})
    aws.rules.insert(0, {"call": ["ecs", "describe-tasks"], "has": ["tasks[0].lastStatus"], "stdout": "", "exit": 254,
                         "stderr": "An error occurred (ExpiredTokenException) when calling the DescribeTasks operation\n"})
    expired = aws.run("migrate", td("order-ledger-dev-migrate", 3))
    assert expired.returncode != 0
    assert "cannot be read" in expired.stderr and "20 minutes" not in expired.stderr, expired.stderr
    # The waiter failed once, and the task had stopped meanwhile: the migration's result counts.
    aws.rules[0] = {"call": ["ecs", "describe-tasks"], "has": ["tasks[0].lastStatus"], "stdout": "STOPPED\n", "stderr": "", "exit": 0}
    stopped = aws.run("migrate", td("order-ledger-dev-migrate", 3))
    assert stopped.returncode == 0, stopped.stderr
    # Still running at the last attempt: said so, and that it was left running.
    aws.rules[0] = {"call": ["ecs", "describe-tasks"], "has": ["tasks[0].lastStatus"], "stdout": "RUNNING\n", "stderr": "", "exit": 0}
    running = aws.run("migrate", td("order-ledger-dev-migrate", 3))
    assert running.returncode != 0 and "still RUNNING after 0 minutes (2 waits), and left running" in running.stderr, running.stderr
    # Waiter rounds that fail at once are no ten-minute rounds: tried again, 20 in a row at most.
    blips = aws.run("migrate", td("order-ledger-dev-migrate", 3), WAITER_ROUND_SECONDS="600")
    assert blips.returncode != 0 and "failed at once 20 times in a row" in blips.stderr, blips.stderr
    assert len(aws.called("ecs", "wait", "tasks-stopped")) == 20


# --- rolling services ----------------------------------------------------------------------------


def test_roll_updates_waits_and_checks_the_new_revision_is_primary(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 5)), times=1)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    aws.on("ecs", "wait", "services-stable")
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 6)))
    result = aws.run("roll", f"{WORKER}={td(WORKER, 6)}")
    assert result.returncode == 0, result.stderr
    assert arg(aws.called("ecs", "update-service")[0], "--task-definition") == td(WORKER, 6)


def test_roll_fails_when_the_circuit_breaker_rolled_back(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 5)), times=1)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    aws.on("ecs", "wait", "services-stable")
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 5)))
    result = aws.run("roll", f"{WORKER}={td(WORKER, 6)}")
    assert result.returncode != 0 and "rolled back" in result.stderr


def test_roll_refuses_a_blue_green_service(aws):
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 5)))
    result = aws.run("roll", f"{GRPC}={td(GRPC, 6)}")
    assert result.returncode != 0 and "blue-green" in result.stderr
    assert not aws.called("ecs", "update-service")


# --- blue/green by CodeDeploy ------------------------------------------------------------------


def test_blue_green_creates_a_codedeploy_deployment_and_waits_for_it(aws):
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 5)), times=1)
    aws.on("deploy", "create-deployment", stdout="d-ABCDEF123\n")
    aws.on("deploy", "wait", "deployment-successful")
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 6)))
    result = aws.run("blue-green", GRPC, td(GRPC, 6), GITHUB_SHA="f" * 40, DEPLOY_SHA="a" * 40)
    assert result.returncode == 0, result.stderr
    create = aws.called("deploy", "create-deployment")[0]
    # the commit deployed, not main's newest (GITHUB_SHA of a workflow_run)
    assert "a" * 40 in arg(create, "--description") and "f" * 40 not in arg(create, "--description")
    assert arg(create, "--application-name") == GRPC and arg(create, "--deployment-group-name") == GRPC
    revision = json.loads(arg(create, "--revision"))
    appspec = json.loads(revision["appSpecContent"]["content"])
    props = appspec["Resources"][0]["TargetService"]["Properties"]
    assert props == {"TaskDefinition": td(GRPC, 6), "LoadBalancerInfo": {"ContainerName": "order-grpc", "ContainerPort": 50051}}
    assert not aws.called("ecs", "update-service"), "update-service is refused for CODE_DEPLOY services"


def test_blue_green_waits_for_no_one_while_another_deployment_is_active(aws):
    # An interrupted deploy's deployment goes on in CodeDeploy: a re-run, a rollback and its
    # dry run all stop before changing anything, saying which deployment and what to do.
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 8)))
    aws.on("deploy", "list-deployments", stdout='["d-OLD"]\n')
    revision(aws, GRPC, 7, SHA1)
    for args in (("blue-green", GRPC, td(GRPC, 9)), ("rollback", GRPC, td(GRPC, 7)),
                 ("rollback", "--dry-run", GRPC, td(GRPC, 7))):
        result = aws.run(*args)
        assert result.returncode != 0, args
        assert "d-OLD" in result.stderr and "stop-deployment" in result.stderr, result.stderr
        assert not aws.called("deploy", "create-deployment"), args
    listed = aws.called("deploy", "list-deployments")[0]
    assert arg(listed, "--deployment-group-name") == GRPC


def test_blue_green_of_the_revision_already_served_creates_no_deployment(aws):
    # A re-run of a deploy interrupted after order-grpc's shift (during the projector's roll).
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 9)))
    result = aws.run("blue-green", GRPC, td(GRPC, 9))
    assert result.returncode == 0, result.stderr
    assert "already serves" in result.stdout
    assert not aws.called("deploy", "create-deployment")


def test_blue_green_fails_when_codedeploy_rolled_back(aws):
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 5)))
    aws.on("deploy", "create-deployment", stdout="d-ABCDEF123\n")
    aws.on("deploy", "wait", "deployment-successful", exit=255, stderr="Waiter DeploymentSuccessful failed\n")
    aws.on("deploy", "get-deployment", stdout="Stopped\tAlarm order-ledger-dev-tg-5xx fired\n")
    result = aws.run("blue-green", GRPC, td(GRPC, 6))
    assert result.returncode != 0
    assert "rolled back" in result.stderr and "tg-5xx" in result.stderr


# --- defect 4: rollback by task-definition revision -------------------------------------------


def revisions(family: str, *numbers: int) -> str:
    return json.dumps({"taskDefinitionArns": [td(family, n) for n in numbers]})


SHA1 = "1" * 40
SHA2 = "2" * 40
COLLECTOR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-ledger-dev/ecr-public/aws-observability/aws-otel-collector:v0.43.3"


def image(name: str, tag: str) -> str:
    return f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-ledger-dev/{name}:{tag}"


def revision(aws: Aws, family: str, number: int, tag: str) -> Aws:
    """Answers describe-task-definition for one revision: the service's image with `tag` (a
    commit SHA when CI registered it, `bootstrap` when Terraform did) beside the collector."""
    container = family.removeprefix("order-ledger-dev-")
    definition = {"taskDefinition": {
        "taskDefinitionArn": td(family, number), "family": family, "revision": number, "status": "ACTIVE",
        "containerDefinitions": [{"name": container, "image": image(container, tag)},
                                 {"name": "otel-collector", "image": COLLECTOR}],
    }}
    return aws.on("ecs", "describe-task-definition", has=(td(family, number),), stdout=json.dumps(definition))


def test_rollback_of_a_rolling_service_goes_to_the_previous_revision(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)), times=2)
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 13, 12, 11, 9))
    revision(aws, WORKER, 12, SHA2)
    revision(aws, WORKER, 11, SHA1)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    aws.on("ecs", "wait", "services-stable")
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 11)))
    result = aws.run("rollback", WORKER)
    assert result.returncode == 0, result.stderr
    assert arg(aws.called("ecs", "list-task-definitions")[0], "--family-prefix") == WORKER
    assert arg(aws.called("ecs", "update-service")[0], "--task-definition") == td(WORKER, 11)


def test_rollback_to_a_named_revision_of_the_blue_green_service(aws):
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 12)), times=2)
    revision(aws, GRPC, 9, SHA1)
    aws.on("deploy", "create-deployment", stdout="d-ROLLBACK1\n")
    aws.on("deploy", "wait", "deployment-successful")
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 9)))
    result = aws.run("rollback", GRPC, td(GRPC, 9), GITHUB_SHA="f" * 40)
    assert result.returncode == 0, result.stderr
    create = aws.called("deploy", "create-deployment")[0]
    created = json.loads(arg(create, "--revision"))
    assert td(GRPC, 9) in created["appSpecContent"]["content"]
    # the commit gone back to (the revision's image tag), not the branch's newest
    assert f"{SHA1} (rollback)" in arg(create, "--description"), arg(create, "--description")
    assert "f" * 40 not in arg(create, "--description")
    assert not aws.called("ecs", "list-task-definitions")


def test_rollback_refuses_another_services_revision_and_a_later_one(aws):
    # The worker pointed at order-grpc's code, or order-grpc at a revision a plan registered
    # for a release that was never approved: refused, nothing changed.
    aws.on("ecs", "describe-services", has=(WORKER,), stdout=service(WORKER, "ECS", td(WORKER, 12)))
    aws.on("ecs", "describe-services", has=(GRPC,), stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 8)))
    other = aws.run("rollback", WORKER, td(GRPC, 7))
    assert other.returncode != 0 and f"a revision of {GRPC}, not of {WORKER}" in other.stderr, other.stderr
    for target in (td(GRPC, 9), td(GRPC, 8)):
        later = aws.run("rollback", GRPC, target)
        assert later.returncode != 0 and "is not earlier than" in later.stderr, later.stderr
    dry = aws.run("rollback", "--dry-run", GRPC, td(GRPC, 9))
    assert dry.returncode != 0 and "is not earlier than" in dry.stderr
    typo = aws.run("rollback", WORKER, "order-ledger-dev-order-worker")
    assert typo.returncode != 0 and "not a task definition ARN" in typo.stderr
    elsewhere = aws.run("rollback", WORKER, td(WORKER, 11).replace("eu-west-1", "eu-central-1"))
    assert elsewhere.returncode != 0 and "another account or region" in elsewhere.stderr, elsewhere.stderr
    # A revision typed with a leading zero is read in base 10 (bash would take 08 for a bad
    # octal number): the dry run goes on to it.
    typed = td(WORKER, 8).replace(":8", ":08")
    aws.on("ecs", "describe-task-definition", has=(typed,), stdout=json.dumps({"taskDefinition": {
        "containerDefinitions": [{"name": "order-worker", "image": image("order-worker", SHA1)}]}}))
    zero = aws.run("rollback", "--dry-run", WORKER, typed)
    assert zero.returncode == 0 and f"would go back to {typed}" in zero.stdout, zero.stderr
    assert not aws.called("ecs", "update-service") and not aws.called("deploy", "create-deployment")


def test_rollback_to_a_revision_whose_images_are_gone_changes_nothing(aws):
    # ECR keeps the last 30 images: an old revision's may be gone, which its tasks would find
    # only after the deployment began.
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 40)))
    revision(aws, WORKER, 3, SHA1)
    aws.on("ecr", "describe-images", has=(f"imageTag={SHA1}",), exit=254,
           stderr="An error occurred (ImageNotFoundException) when calling the DescribeImages operation\n")
    for args in (("rollback", WORKER, td(WORKER, 3)), ("rollback", "--dry-run", WORKER, td(WORKER, 3))):
        result = aws.run(*args)
        assert result.returncode != 0, args
        assert "no longer in ECR" in result.stderr and f"order-worker:{SHA1}" in result.stderr, result.stderr
        looked = aws.called("ecr", "describe-images")
        assert looked and arg(looked[0], "--repository-name") == "order-ledger-dev/order-worker"
        assert not aws.called("ecs", "update-service")
    # The collector's image (not tagged with a commit SHA) is not looked up.
    assert all(f"imageTag={SHA1}" in arg(c, "--image-ids") for c in aws.called("ecr", "describe-images"))
    # Nor an image pinned by digest, or in another account's registry.
    aws.rules.clear()
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 40)))
    aws.on("ecs", "describe-task-definition", has=(td(WORKER, 3),), stdout=json.dumps({"taskDefinition": {
        "containerDefinitions": [
            {"name": "order-worker", "image": image("order-worker", SHA1).replace(f":{SHA1}", "@sha256:" + "a" * 64)},
            {"name": "sidecar", "image": f"999999999999.dkr.ecr.eu-west-1.amazonaws.com/tools/sidecar:{SHA2}"}]}}))
    foreign = aws.run("rollback", "--dry-run", WORKER, td(WORKER, 3))
    assert foreign.returncode == 0, foreign.stderr
    assert not aws.called("ecr", "describe-images")


def test_rollback_without_an_earlier_revision_changes_nothing(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 1)))
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 1))
    revision(aws, WORKER, 1, SHA1)
    result = aws.run("rollback", WORKER)
    assert result.returncode != 0 and "no earlier revision" in result.stderr
    assert not aws.called("ecs", "update-service")


# --- first-deploy audit: the default rollback target is a release CI registered ------------------


def test_rollback_skips_the_revision_terraform_registered_with_the_bootstrap_image(aws):
    # 10: CI, sha1; 11: a Terraform change to the container definition (image_tag = bootstrap);
    # 12: CI, sha2, copied from 11 with its image, running
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)), times=2)
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 12, 11, 10))
    for number, tag in ((12, SHA2), (11, "bootstrap"), (10, SHA1)):
        revision(aws, WORKER, number, tag)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    aws.on("ecs", "wait", "services-stable")
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 10)))
    result = aws.run("rollback", WORKER)
    assert result.returncode == 0, result.stderr
    assert arg(aws.called("ecs", "update-service")[0], "--task-definition") == td(WORKER, 10)
    assert f"{WORKER}:11" in result.stderr and "bootstrap" in result.stderr, "says what it skipped"


def test_rollback_skips_a_revision_of_the_running_release(aws):
    # 11 and 12 are the same commit (a re-run of its deploy registered a second revision)
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 12)), times=2)
    aws.on("ecs", "list-task-definitions", stdout=revisions(GRPC, 12, 11, 10))
    for number, tag in ((12, SHA2), (11, SHA2), (10, SHA1)):
        revision(aws, GRPC, number, tag)
    aws.on("deploy", "create-deployment", stdout="d-ROLLBACK2\n")
    aws.on("deploy", "wait", "deployment-successful")
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 10)))
    result = aws.run("rollback", GRPC)
    assert result.returncode == 0, result.stderr
    revision_arg = json.loads(arg(aws.called("deploy", "create-deployment")[0], "--revision"))
    assert json.loads(revision_arg["appSpecContent"]["content"])["Resources"][0]["TargetService"][
        "Properties"]["TaskDefinition"] == td(GRPC, 10)


def test_rollback_without_an_earlier_release_names_what_it_skipped_and_changes_nothing(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)))
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 12, 11, 10))
    for number, tag in ((12, SHA2), (11, SHA2), (10, "bootstrap")):
        revision(aws, WORKER, number, tag)
    result = aws.run("rollback", WORKER)
    assert result.returncode != 0
    assert "no earlier revision" in result.stderr
    assert f"{WORKER}:11 (same images as the running revision)" in result.stderr
    assert f"{WORKER}:10 (order-worker: {image('order-worker', 'bootstrap')} is not tagged with a commit SHA)" in result.stderr
    assert not aws.called("ecs", "update-service") and not aws.called("deploy", "create-deployment")


def test_rollback_of_a_revision_ci_did_not_register_needs_a_target(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 2)))
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 2, 1))
    revision(aws, WORKER, 2, "bootstrap")
    revision(aws, WORKER, 1, SHA1)
    result = aws.run("rollback", WORKER)
    assert result.returncode != 0 and "which CI did not register" in result.stderr and "bootstrap" in result.stderr
    assert not aws.called("ecs", "update-service")


def test_blue_green_appspec_says_version_0_0_as_written(aws):
    # jq 1.6 prints the number 0.0 as 0; AWS's AppSpec examples write "version": 0.0
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 5)), times=1)
    aws.on("deploy", "create-deployment", stdout="d-ABCDEF123\n")
    aws.on("deploy", "wait", "deployment-successful")
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 6)))
    result = aws.run("blue-green", GRPC, td(GRPC, 6))
    assert result.returncode == 0, result.stderr
    content = json.loads(arg(aws.called("deploy", "create-deployment")[0], "--revision"))["appSpecContent"]["content"]
    assert content.startswith('{"version":0.0,"Resources":['), content
    assert json.loads(content)["Resources"][0]["TargetService"]["Type"] == "AWS::ECS::Service"


def test_rollback_stops_when_a_revision_cannot_be_read(aws):
    # a describe that fails (throttled, denied) must not pass for a revision to go back to
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)))
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 12, 11, 10))
    revision(aws, WORKER, 12, SHA2)
    aws.on("ecs", "describe-task-definition", has=(td(WORKER, 11),), exit=254,
           stderr="An error occurred (ThrottlingException) when calling the DescribeTaskDefinition operation\n")
    revision(aws, WORKER, 10, SHA1)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    result = aws.run("rollback", WORKER)
    assert result.returncode != 0 and "ThrottlingException" in result.stderr
    assert not aws.called("ecs", "update-service")


# --- rollback --dry-run: the target the real run takes, and nothing changed ---------------------

# AWS CLI operations that only read: everything else a dry run must not call.
READ_ONLY = ("describe-", "list-", "get-")


def mutations(aws: Aws) -> list[list[str]]:
    """The recorded calls that could change something (anything but a describe, list or get)."""
    return [c for c in aws.calls() if not (len(c) > 1 and c[1].startswith(READ_ONLY))]


def dry_run_target(result: subprocess.CompletedProcess, service_name: str) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"dry run: {service_name} would go back to ")]
    assert len(lines) == 1, result.stdout
    return lines[0].split(" would go back to ", 1)[1].split(" ", 1)[0]


def rolling_rollback_scenario(aws: Aws) -> Aws:
    # 12 running (sha2); 11 Terraform's bootstrap revision; 10 the release before (sha1)
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)), times=2)
    aws.on("ecs", "list-task-definitions", stdout=revisions(WORKER, 12, 11, 10))
    for number, tag in ((12, SHA2), (11, "bootstrap"), (10, SHA1)):
        revision(aws, WORKER, number, tag)
    aws.on("ecs", "update-service", stdout=WORKER + "\n")
    aws.on("ecs", "wait", "services-stable")
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 10)))
    return aws


def test_rollback_dry_run_of_a_rolling_service_names_the_target_and_changes_nothing(aws):
    rolling_rollback_scenario(aws)
    dry = aws.run("rollback", "--dry-run", WORKER)
    assert dry.returncode == 0, dry.stderr
    assert mutations(aws) == [], "a dry run called AWS to change something"
    target = dry_run_target(dry, WORKER)
    assert target == td(WORKER, 10)
    assert f"order-worker={image('order-worker', SHA1)}" in dry.stdout and f"otel-collector={COLLECTOR}" in dry.stdout
    assert "rolling update" in dry.stdout

    # the real run, on the same answers, goes where the dry run said
    real = aws.run("rollback", WORKER)
    assert real.returncode == 0, real.stderr
    assert arg(aws.called("ecs", "update-service")[0], "--task-definition") == target


def test_rollback_dry_run_of_the_blue_green_service_names_the_target_and_changes_nothing(aws):
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 12)), times=2)
    aws.on("ecs", "list-task-definitions", stdout=revisions(GRPC, 12, 11, 10))
    for number, tag in ((12, SHA2), (11, SHA2), (10, SHA1)):
        revision(aws, GRPC, number, tag)
    aws.on("deploy", "create-deployment", stdout="d-ROLLBACK3\n")
    aws.on("deploy", "wait", "deployment-successful")
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 10)))
    dry = aws.run("rollback", "--dry-run", GRPC)
    assert dry.returncode == 0, dry.stderr
    assert mutations(aws) == [], "a dry run called AWS to change something"
    target = dry_run_target(dry, GRPC)
    assert target == td(GRPC, 10)
    assert f"order-grpc={image('order-grpc', SHA1)}" in dry.stdout
    assert "blue/green" in dry.stdout

    real = aws.run("rollback", GRPC)
    assert real.returncode == 0, real.stderr
    content = json.loads(arg(aws.called("deploy", "create-deployment")[0], "--revision"))["appSpecContent"]["content"]
    assert json.loads(content)["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"] == target


def test_rollback_dry_run_to_a_named_revision_shows_its_images(aws):
    aws.on("ecs", "describe-services", stdout=service(WORKER, "ECS", td(WORKER, 12)))
    revision(aws, WORKER, 9, SHA1)
    dry = aws.run("rollback", "--dry-run", WORKER, td(WORKER, 9))
    assert dry.returncode == 0, dry.stderr
    assert mutations(aws) == []
    assert dry_run_target(dry, WORKER) == td(WORKER, 9)
    assert f"order-worker={image('order-worker', SHA1)}" in dry.stdout


def test_rollback_dry_run_fails_as_the_real_run_would(aws):
    # what stops the real run before it changes anything stops the dry run too
    aws.on("ecs", "describe-services", stdout=service(GRPC, "CODE_DEPLOY", td(GRPC, 12)))
    revision(aws, GRPC, 9, SHA1)
    missing = aws.run("rollback", "--dry-run", GRPC, td(GRPC, 9), CODEDEPLOY_GROUP="")
    assert missing.returncode != 0 and "CODEDEPLOY_GROUP" in missing.stderr
    # both missing: both named in one go, before the revision or its images are looked up
    both = aws.run("rollback", GRPC, td(GRPC, 9), CODEDEPLOY_GROUP="", CODEDEPLOY_APPLICATION="")
    assert both.returncode != 0, both.stderr
    assert "set CODEDEPLOY_APPLICATION CODEDEPLOY_GROUP" in both.stderr and "nothing changed" in both.stderr
    assert [c[:2] for c in aws.calls()] == [["ecs", "describe-services"]], aws.calls()
    aws.on("ecs", "describe-task-definition", has=(td(GRPC, 8),), exit=254,
           stderr="An error occurred (ClientException) when calling the DescribeTaskDefinition operation: Unable to describe task definition.\n")
    unknown = aws.run("rollback", "--dry-run", GRPC, td(GRPC, 8))
    assert unknown.returncode != 0 and "Unable to describe task definition" in unknown.stderr
    assert mutations(aws) == []
    # a mistyped flag is refused, not taken for the service
    mistyped = aws.run("rollback", "--dryrun", GRPC)
    assert mistyped.returncode != 0 and "usage: rollback [--dry-run]" in mistyped.stderr
    assert aws.calls() == []
