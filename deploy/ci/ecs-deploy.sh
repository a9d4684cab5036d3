#!/usr/bin/env bash
# ECS steps of .github/workflows/deploy.yml, kept here so they can be read, linted and run by
# hand with the same result. Needs the AWS CLI v2 and jq, and credentials of the deploy role.
#
#   ecs-deploy.sh register FAMILY CONTAINER=IMAGE [CONTAINER=IMAGE...]
#       new revision of FAMILY (copied from its latest revision) with the given images;
#       prints the new task definition ARN
#   ecs-deploy.sh migrate TASK_DEFINITION_ARN
#       runs the migration task (roles bootstrap, then `order-grpc migrate`), waits for it,
#       prints its log and fails unless the migrate container exited 0
#   ecs-deploy.sh roll SERVICE=TASK_DEFINITION_ARN [SERVICE=TASK_DEFINITION_ARN...]
#       points each service at its new revision (rolling update, circuit breaker with rollback)
#       and waits until every service is stable on the new revision
#
# Environment: ECS_CLUSTER; for migrate also MIGRATION_SUBNETS (comma-separated),
# MIGRATION_SECURITY_GROUP, MIGRATION_LOG_GROUP.
set -euo pipefail

die() { echo "ecs-deploy: $*" >&2; exit 1; }
: "${ECS_CLUSTER:?ECS_CLUSTER must be set}"

register() {
    local family=$1; shift
    local td
    td=$(aws ecs describe-task-definition --task-definition "$family" --include TAGS --output json)
    local filter='.taskDefinition
        | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
              .registeredAt, .registeredBy, .deregisteredAt)'
    local spec
    spec=$(jq "$filter" <<<"$td")
    local pair name image
    for pair in "$@"; do
        name=${pair%%=*}
        image=${pair#*=}
        jq -e --arg n "$name" 'any(.containerDefinitions[]; .name == $n)' <<<"$spec" >/dev/null \
            || die "$family has no container named $name"
        spec=$(jq --arg n "$name" --arg i "$image" \
            '.containerDefinitions |= map(if .name == $n then .image = $i else . end)' <<<"$spec")
    done
    # tags are registered with the revision too (they are not part of taskDefinition)
    local tags
    tags=$(jq '.tags // []' <<<"$td")
    if [[ $(jq 'length' <<<"$tags") -gt 0 ]]; then
        spec=$(jq --argjson t "$tags" '. + {tags: $t}' <<<"$spec")
    fi
    aws ecs register-task-definition --cli-input-json "$spec" \
        --query 'taskDefinition.taskDefinitionArn' --output text
}

print_log() {
    local stream=$1
    echo "----- ${stream}"
    aws logs get-log-events --log-group-name "$MIGRATION_LOG_GROUP" --log-stream-name "$stream" \
        --start-from-head --query 'events[].message' --output text 2>/dev/null | tr '\t' '\n' \
        || echo "(no log stream ${stream})"
}

migrate() {
    local td_arn=$1
    : "${MIGRATION_SUBNETS:?}" "${MIGRATION_SECURITY_GROUP:?}" "${MIGRATION_LOG_GROUP:?}"
    local network="awsvpcConfiguration={subnets=[${MIGRATION_SUBNETS}],securityGroups=[${MIGRATION_SECURITY_GROUP}],assignPublicIp=DISABLED}"
    local task_arn
    task_arn=$(aws ecs run-task --cluster "$ECS_CLUSTER" --task-definition "$td_arn" \
        --launch-type FARGATE --platform-version LATEST --count 1 \
        --network-configuration "$network" --started-by "deploy-${GITHUB_RUN_ID:-manual}" \
        --query 'tasks[0].taskArn' --output text)
    [[ -n $task_arn && $task_arn != None ]] || die "run-task started no task"
    echo "migration task: $task_arn"

    # the waiter gives up after 10 minutes; a long migration gets up to 30
    local attempt
    for attempt in 1 2 3; do
        if aws ecs wait tasks-stopped --cluster "$ECS_CLUSTER" --tasks "$task_arn"; then
            break
        fi
        [[ $attempt -lt 3 ]] || die "migration task still running after 30 minutes: $task_arn"
    done

    local task_id=${task_arn##*/}
    print_log "dbinit/dbinit/${task_id}"
    print_log "migrate/migrate/${task_id}"

    local result
    result=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" --output json)
    local dbinit_exit migrate_exit reason
    dbinit_exit=$(jq -r '.tasks[0].containers[] | select(.name == "dbinit") | .exitCode // "none"' <<<"$result")
    migrate_exit=$(jq -r '.tasks[0].containers[] | select(.name == "migrate") | .exitCode // "none"' <<<"$result")
    reason=$(jq -r '.tasks[0].stoppedReason // ""' <<<"$result")
    echo "dbinit exit: ${dbinit_exit}; migrate exit: ${migrate_exit}; stopped: ${reason}"
    [[ $dbinit_exit == 0 ]] || die "role bootstrap failed (exit ${dbinit_exit})"
    [[ $migrate_exit == 0 ]] || die "migration failed (exit ${migrate_exit})"
}

roll() {
    local pair service td_arn services=()
    for pair in "$@"; do
        service=${pair%%=*}
        td_arn=${pair#*=}
        echo "updating $service -> $td_arn"
        aws ecs update-service --cluster "$ECS_CLUSTER" --service "$service" \
            --task-definition "$td_arn" --query 'service.serviceName' --output text >/dev/null
        services+=("$service")
    done

    local attempt
    for attempt in 1 2 3; do
        if aws ecs wait services-stable --cluster "$ECS_CLUSTER" --services "${services[@]}"; then
            break
        fi
        [[ $attempt -lt 3 ]] || die "services not stable after 30 minutes"
    done

    # stable is not enough: after a circuit-breaker rollback the service is stable on the OLD
    # revision. The primary deployment must be the new one, and completed.
    local failed=0 state
    for pair in "$@"; do
        service=${pair%%=*}
        td_arn=${pair#*=}
        state=$(aws ecs describe-services --cluster "$ECS_CLUSTER" --services "$service" --output json \
            | jq -r --arg td "$td_arn" \
                '.services[0].deployments[] | select(.status == "PRIMARY")
                 | "\(.taskDefinition == $td) \(.rolloutState)"')
        echo "$service: new revision primary / rollout state: $state"
        [[ $state == "true COMPLETED" ]] || failed=1
    done
    [[ $failed == 0 ]] || die "a service did not complete its rollout (rolled back?)"
}

cmd=${1:-}; shift || true
case "$cmd" in
    register) [[ $# -ge 2 ]] || die "usage: register FAMILY CONTAINER=IMAGE..."; register "$@" ;;
    migrate)  [[ $# -eq 1 ]] || die "usage: migrate TASK_DEFINITION_ARN"; migrate "$@" ;;
    roll)     [[ $# -ge 1 ]] || die "usage: roll SERVICE=TASK_DEFINITION_ARN..."; roll "$@" ;;
    *) die "usage: ecs-deploy.sh register|migrate|roll ..." ;;
esac
