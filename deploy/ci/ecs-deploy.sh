#!/usr/bin/env bash
# ECS steps of .github/workflows/deploy.yml and rollback.yml, kept here so they can be read,
# linted, tested (tests/infra/test_ecs_deploy.py, against a stubbed `aws`) and run by hand with
# the same result. Needs the AWS CLI v2 and jq, and credentials of the deploy role.
#
#   ecs-deploy.sh image-exists REPOSITORY TAG
#       prints true when REPOSITORY already holds TAG (tags are immutable: a re-run of the same
#       commit must not push again), false when it does not
#   ecs-deploy.sh register FAMILY CONTAINER=IMAGE [CONTAINER=IMAGE...]
#       new revision of FAMILY (copied from its latest revision, tags included) with the given
#       images; prints the new task definition ARN. Refuses to copy a latest revision without
#       an execution role and a task role: every revision Terraform and this workflow register
#       has both, and a role can be passed only by this environment's principals
#       (iam:PassRole), so a revision without them was registered by someone else (ECS cannot
#       limit ecs:RegisterTaskDefinition by family: another environment's deploy role in the
#       same account can register into this one's families)
#   ecs-deploy.sh migrate [--dry-run] TASK_DEFINITION_ARN
#       runs the migration task (roles bootstrap, then `order-grpc migrate`), waits for it,
#       prints its log and fails unless both containers exited 0. --dry-run runs
#       `order-grpc migrate --dry-run` instead: what would be applied, applying nothing (the
#       report also goes to $GITHUB_STEP_SUMMARY when set)
#   ecs-deploy.sh roll SERVICE=TASK_DEFINITION_ARN [SERVICE=TASK_DEFINITION_ARN...]
#       rolling services: points each at its new revision (circuit breaker with rollback) and
#       waits until every one is stable and completed on it
#   ecs-deploy.sh blue-green SERVICE TASK_DEFINITION_ARN
#       a CODE_DEPLOY service: a CodeDeploy blue/green deployment to the revision (test
#       listener first, then production traffic; rolled back on failure or alarm), waited for
#   ecs-deploy.sh rollback [--dry-run] SERVICE [TASK_DEFINITION_ARN]
#       back to TASK_DEFINITION_ARN, or to the newest earlier revision CI registered for another
#       release (its images tagged with a commit SHA and not those the service runs: never one
#       Terraform registered with its `bootstrap` image_tag): a blue/green deployment or a
#       rolling update, whichever the service uses. --dry-run goes the same way up to the first
#       call that would change something (update-service, create-deployment) and stops there:
#       it prints the revision it would go back to, how, and that revision's images, and
#       fails where the real run would fail before changing anything (calls only describe and list)
#
# Environment: ECS_CLUSTER; for migrate also MIGRATION_SUBNETS (comma-separated),
# MIGRATION_SECURITY_GROUP, MIGRATION_LOG_GROUP; for blue-green (and rollback of a CODE_DEPLOY
# service) CODEDEPLOY_APPLICATION and CODEDEPLOY_GROUP, and DEPLOY_SHA, the commit deployed,
# for the deployment's description (else GITHUB_SHA; a rollback names its images' commit).
# WAIT_ATTEMPTS (default 3) bounds the 10-minute waiter rounds of ECS; BLUE_GREEN_WAIT_ATTEMPTS
# (default 2) the 30-minute rounds of CodeDeploy's waiter (15 s x 120). All of them must fit
# the deploy workflow's apply job (135 minutes) and the rollback job (75). A migration's waiter round that fails in less than
# WAITER_ROUND_SECONDS (default 300) is no round: it is tried again after WAITER_PAUSE_SECONDS
# (default 15), up to 20 times in a row.
set -euo pipefail

die() { echo "ecs-deploy: $*" >&2; exit 1; }
WAIT_ATTEMPTS=${WAIT_ATTEMPTS:-3}
BLUE_GREEN_WAIT_ATTEMPTS=${BLUE_GREEN_WAIT_ATTEMPTS:-2}
# Set by `rollback --dry-run`: roll and blue_green stop before their first call that changes
# anything and say where they would have gone (dry_run_stop).
rollback_dry_run=false

image_exists() {
    local repository=$1 tag=$2 err
    if err=$(aws ecr describe-images --repository-name "$repository" --image-ids "imageTag=${tag}" \
        --query 'imageDetails[0].imageTags' --output json 2>&1 >/dev/null); then
        echo true
    elif [[ $err == *ImageNotFoundException* ]]; then
        echo false
    else
        die "cannot look up ${repository}:${tag}: ${err}"
    fi
}

register() {
    local family=$1; shift
    local td
    td=$(aws ecs describe-task-definition --task-definition "$family" --include TAGS --output json)
    jq -e '.taskDefinition | ((.executionRoleArn // "") != "") and ((.taskRoleArn // "") != "")' \
        <<<"$td" >/dev/null \
        || die "the latest revision of $family ($(jq -r '.taskDefinition.taskDefinitionArn // "?"' <<<"$td"), registered by $(jq -r '.taskDefinition.registeredBy // "?"' <<<"$td")) has no execution role or no task role: Terraform and this workflow never register one like that, so another principal did (a deploy role of another environment in this account?). Nothing was registered. Check who, deregister it (aws ecs deregister-task-definition), and run the deploy again"
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
    # tags are registered with the revision too (they are not part of taskDefinition); the
    # deploy role may tag only while registering (ecs:TagResource with ecs:CreateAction)
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
    local dry_run=false
    if [[ ${1:-} == --dry-run ]]; then
        dry_run=true
        shift
    fi
    local td_arn=$1
    : "${MIGRATION_SUBNETS:?}" "${MIGRATION_SECURITY_GROUP:?}" "${MIGRATION_LOG_GROUP:?}"
    local network="awsvpcConfiguration={subnets=[${MIGRATION_SUBNETS}],securityGroups=[${MIGRATION_SECURITY_GROUP}],assignPublicIp=DISABLED}"
    local overrides='{}'
    if $dry_run; then
        overrides='{"containerOverrides":[{"name":"migrate","command":["migrate","--dry-run"]}]}'
    fi
    local started task_arn
    started=$(aws ecs run-task --cluster "$ECS_CLUSTER" --task-definition "$td_arn" \
        --launch-type FARGATE --platform-version LATEST --count 1 \
        --network-configuration "$network" --overrides "$overrides" \
        --started-by "deploy-${GITHUB_RUN_ID:-manual}" --output json)
    task_arn=$(jq -r '.tasks[0].taskArn // ""' <<<"$started")
    # ECS says why in failures[] (no capacity, a subnet or security group it cannot use)
    [[ -n $task_arn ]] \
        || die "run-task started no task: $(jq -r '[.failures[]? | "\(.arn // "-"): \(.reason // "no reason")\(if .detail then " (\(.detail))" else "" end)"] | if length == 0 then "ECS gave no reason" else join("; ") end' <<<"$started")"
    echo "migration task$($dry_run && echo ' (dry run)'): $task_arn"

    # the waiter gives up after 10 minutes; a long migration gets up to WAIT_ATTEMPTS of them
    # A waiter round that ended in less than WAITER_ROUND_SECONDS failed at once (throttled, a
    # network blip): it is no ten-minute round, and is tried again after a pause, up to 20
    # times in a row.
    local rounds=0 quick=0 status round started=$SECONDS
    while true; do
        round=$SECONDS
        if aws ecs wait tasks-stopped --cluster "$ECS_CLUSTER" --tasks "$task_arn"; then
            break
        fi
        # The waiter also fails at once on an error (expired credentials, throttling): say
        # what the task is doing rather than count it as ten minutes.
        status=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" \
            --query 'tasks[0].lastStatus' --output text) \
            || die "migration task $task_arn: its state cannot be read (see the error above); it may still be running: aws ecs describe-tasks --cluster $ECS_CLUSTER --tasks $task_arn"
        if [[ $status == STOPPED ]]; then
            break
        fi
        if ((SECONDS - round >= ${WAITER_ROUND_SECONDS:-300})); then
            rounds=$((rounds + 1))
            quick=0
        else
            quick=$((quick + 1))
            ((quick < 20)) || die "the wait for migration task $task_arn failed at once 20 times in a row (the errors above); the task is $status, and left running (a re-run starts another, which waits for its lock)"
            sleep "${WAITER_PAUSE_SECONDS:-15}"
        fi
        ((rounds < WAIT_ATTEMPTS)) || die "migration task still $status after $(((SECONDS - started) / 60)) minutes ($rounds waits), and left running (a re-run starts another, which waits for its lock): $task_arn"
    done

    local task_id=${task_arn##*/}
    print_log "dbinit/dbinit/${task_id}"
    local migrate_log
    migrate_log=$(print_log "migrate/migrate/${task_id}")
    echo "$migrate_log"
    if $dry_run && [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
        # shellcheck disable=SC2016 # a markdown code fence, not a command substitution
        printf '### Migrations that would be applied\n\n```\n%s\n```\n' "$migrate_log" >>"$GITHUB_STEP_SUMMARY"
    fi

    local result
    result=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" --output json)
    local dbinit_exit migrate_exit reason
    dbinit_exit=$(jq -r '.tasks[0].containers[] | select(.name == "dbinit") | .exitCode // "none"' <<<"$result")
    migrate_exit=$(jq -r '.tasks[0].containers[] | select(.name == "migrate") | .exitCode // "none"' <<<"$result")
    reason=$(jq -r '.tasks[0].stoppedReason // ""' <<<"$result")
    echo "dbinit exit: ${dbinit_exit}; migrate exit: ${migrate_exit}; stopped: ${reason}"
    [[ $dbinit_exit == 0 ]] || die "role bootstrap failed (exit ${dbinit_exit})"
    [[ $migrate_exit == 0 ]] || die "migration$($dry_run && echo ' dry run') failed (exit ${migrate_exit})"
}

describe_service() {
    aws ecs describe-services --cluster "$ECS_CLUSTER" --services "$1" --output json
}

controller_of() {
    jq -r '.services[0].deploymentController.type // "ECS"' <<<"$1"
}

# rollback --dry-run, in place of the first call that would change something: SERVICE (described
# by DESCRIPTION) would go to TARGET by HOW; prints it with TARGET's images.
dry_run_stop() {
    local service=$1 target=$2 how=$3 description=$4 images
    images=$(images_of "$target") || die "cannot read $target"
    echo "dry run: $service would go back to $target by $how; it runs $(jq -r '.services[0].taskDefinition' <<<"$description") now; nothing changed"
    echo "  images: $(jq -r 'to_entries | map("\(.key)=\(.value)") | join(", ")' <<<"$images")"
}

roll() {
    local pair service td_arn services=() description
    for pair in "$@"; do
        service=${pair%%=*}
        description=$(describe_service "$service")
        [[ $(controller_of "$description") == ECS ]] \
            || die "$service is deployed blue/green: use ecs-deploy.sh blue-green"
        if $rollback_dry_run; then
            dry_run_stop "$service" "${pair#*=}" "a rolling update (update-service)" "$description"
        fi
    done
    $rollback_dry_run && return
    for pair in "$@"; do
        service=${pair%%=*}
        td_arn=${pair#*=}
        echo "updating $service -> $td_arn"
        aws ecs update-service --cluster "$ECS_CLUSTER" --service "$service" \
            --task-definition "$td_arn" --query 'service.serviceName' --output text >/dev/null
        services+=("$service")
    done

    local attempt
    for ((attempt = 1; ; attempt++)); do
        if aws ecs wait services-stable --cluster "$ECS_CLUSTER" --services "${services[@]}"; then
            break
        fi
        ((attempt < WAIT_ATTEMPTS)) || die "services not stable after $((WAIT_ATTEMPTS * 10)) minutes"
    done

    # stable is not enough: after a circuit-breaker rollback the service is stable on the OLD
    # revision. The primary deployment must be the new one, and completed.
    local failed=0 state
    for pair in "$@"; do
        service=${pair%%=*}
        td_arn=${pair#*=}
        state=$(describe_service "$service" \
            | jq -r --arg td "$td_arn" \
                '.services[0].deployments[] | select(.status == "PRIMARY")
                 | "\(.taskDefinition == $td) \(.rolloutState)"')
        echo "$service: new revision primary / rollout state: $state"
        [[ $state == "true COMPLETED" ]] || failed=1
    done
    [[ $failed == 0 ]] || die "a service did not complete its rollout (rolled back?)"
}

# A blue/green deployment's settings, every missing one named at once.
need_codedeploy_settings() {
    local missing=()
    [[ -n ${CODEDEPLOY_APPLICATION:-} ]] || missing+=(CODEDEPLOY_APPLICATION)
    [[ -n ${CODEDEPLOY_GROUP:-} ]] || missing+=(CODEDEPLOY_GROUP)
    ((${#missing[@]} == 0)) \
        || die "$1 is deployed blue/green by CodeDeploy: set ${missing[*]} (the deploy workflow's environment variables); nothing changed"
}

blue_green() {
    local service=$1 td_arn=$2
    local description container port
    description=$(describe_service "$service")
    [[ $(controller_of "$description") == CODE_DEPLOY ]] \
        || die "$service uses rolling updates: use ecs-deploy.sh roll"
    need_codedeploy_settings "$service"
    container=$(jq -r '.services[0].loadBalancers[0].containerName' <<<"$description")
    port=$(jq -r '.services[0].loadBalancers[0].containerPort' <<<"$description")
    [[ $container != null && $port != null ]] || die "$service has no load balancer to shift"

    # "version": 0.0 as AWS's AppSpec examples write it: written as text, since jq (1.6) would
    # print the number 0.0 as 0
    local resources appspec revision
    resources=$(jq -cn --arg td "$td_arn" --arg c "$container" --argjson p "$port" '[
        {TargetService: {Type: "AWS::ECS::Service", Properties: {
            TaskDefinition: $td,
            LoadBalancerInfo: {ContainerName: $c, ContainerPort: $p}}}}]')
    appspec="{\"version\":0.0,\"Resources\":${resources}}"
    revision=$(jq -cn --arg content "$appspec" \
        '{revisionType: "AppSpecContent", appSpecContent: {content: $content}}')
    # One deployment at a time per group: one still active (an interrupted deploy's, or the
    # last one's wait before it ends the old tasks) makes create-deployment fail. Say which,
    # and what to do, before anything changes (in a dry run too).
    local active
    active=$(aws deploy list-deployments --application-name "$CODEDEPLOY_APPLICATION" \
        --deployment-group-name "$CODEDEPLOY_GROUP" \
        --include-only-statuses Created Queued InProgress Ready Baking \
        --query 'deployments' --output json | jq -r '.[]?')
    if [[ -n $active ]]; then
        die "CodeDeploy deployment(s) ${active//$'\n'/, } of $CODEDEPLOY_GROUP still active (an interrupted deploy's, or the last one waiting to end its old tasks): wait for it to end (aws deploy wait deployment-successful --deployment-id ID), or stop it, which shifts traffic back to the old tasks (aws deploy stop-deployment --deployment-id ID --auto-rollback-enabled); then run this again. Nothing changed"
    fi
    if $rollback_dry_run; then
        dry_run_stop "$service" "$td_arn" "a blue/green deployment (CodeDeploy $CODEDEPLOY_APPLICATION / $CODEDEPLOY_GROUP)" "$description"
        return
    fi
    # A re-run of a deploy interrupted after its blue/green deployment ended: nothing to shift.
    if [[ $(jq -r '.services[0].taskDefinition' <<<"$description") == "$td_arn" ]]; then
        echo "$service already serves $td_arn: no deployment"
        return
    fi
    local deployment
    deployment=$(aws deploy create-deployment --application-name "$CODEDEPLOY_APPLICATION" \
        --deployment-group-name "$CODEDEPLOY_GROUP" --revision "$revision" \
        --description "${GITHUB_REPOSITORY:-manual}@${DEPLOY_SHA:-${GITHUB_SHA:-manual}}: $td_arn" \
        --query deploymentId --output text)
    [[ -n $deployment && $deployment != None ]] || die "create-deployment returned no deployment id"
    echo "blue/green deployment of $service -> $td_arn: $deployment"

    local attempt
    for ((attempt = 1; ; attempt++)); do
        if aws deploy wait deployment-successful --deployment-id "$deployment"; then
            break
        fi
        local status
        status=$(aws deploy get-deployment --deployment-id "$deployment" \
            --query '[deploymentInfo.status, deploymentInfo.errorInformation.message]' --output text)
        case "$status" in
            Failed* | Stopped*) die "deployment $deployment ended: $status (rolled back to the previous task set)" ;;
        esac
        ((attempt < BLUE_GREEN_WAIT_ATTEMPTS)) || die "deployment $deployment not finished after $((BLUE_GREEN_WAIT_ATTEMPTS * 30)) minutes: $status (it goes on in CodeDeploy: continue or stop it there)"
    done

    local live
    live=$(describe_service "$service" | jq -r '.services[0].taskDefinition')
    echo "$service: serving $live"
    [[ $live == "$td_arn" ]] || die "$service serves $live, not $td_arn"
}

# What CI tags its images with: the commit SHA (40 hex digits; 64 in a SHA-256 repository).
COMMIT_TAG=':([0-9a-f]{40}|[0-9a-f]{64})$'

# A revision's containers and their images, as a JSON object name => image.
images_of() {
    aws ecs describe-task-definition --task-definition "$1" --output json \
        | jq -c '[.taskDefinition.containerDefinitions[] | {(.name): .image}] | add // {}'
}

# Sets previous_release to the default rollback target of SERVICE, which runs CURRENT: the
# newest earlier ACTIVE revision that CI registered for another release. The release's
# containers are those of CURRENT whose image is tagged with a commit SHA (CI's; the collector
# sidecar is not); a revision qualifies when each of them has an image tagged with a commit SHA
# there too, not all the same as now. Passed over: the revisions Terraform registers with
# `image_tag` (the first images, `bootstrap`) whenever a container definition changes, and
# earlier revisions of the running release. Called as a command, not in $(...), where bash
# drops `set -e` and a failed describe would pass for a revision to go back to.
previous_release() {
    local service=$1 current=$2
    local family=${current##*:task-definition/} revision=${current##*:}
    family=${family%:*}
    local running release
    running=$(images_of "$current")
    release=$(jq -c --arg re "$COMMIT_TAG" 'with_entries(select(.value | test($re)))' <<<"$running")
    [[ $release != '{}' ]] \
        || die "$service runs $current, which CI did not register (none of its images is tagged with a commit SHA: $(jq -r 'to_entries | map("\(.key): \(.value)") | join(", ")' <<<"$running")); name the revision to go back to"
    local candidates arn images reason skipped=()
    candidates=$(aws ecs list-task-definitions --family-prefix "$family" --status ACTIVE --sort DESC \
        --output json | jq -r --argjson rev "$revision" --arg family "$family" \
            '.taskDefinitionArns[] | select(test(":task-definition/" + $family + ":[0-9]+$"))
             | select((split(":") | last | tonumber) < $rev)')
    for arn in $candidates; do
        images=$(images_of "$arn")
        reason=$(jq -r --argjson release "$release" --arg re "$COMMIT_TAG" '
            . as $c
            | [$release | keys[] | select(($c[.] // "") | test($re) | not)
               | "\(.): \($c[.] // "no such container") is not tagged with a commit SHA"] as $foreign
            | if ($foreign | length) > 0 then $foreign | join("; ")
              elif all($release | keys[]; $c[.] == $release[.]) then "same images as the running revision"
              else "" end' <<<"$images")
        if [[ -z $reason ]]; then
            # A release's revisions are registered when its deploy is planned, before it runs:
            # say which images this one holds, so that one which never ran can be told.
            echo "going back to ${arn##*:task-definition/}: $(jq -r 'to_entries | map("\(.key)=\(.value)") | join(", ")' <<<"$images")" >&2
            previous_release=$arn
            return
        fi
        echo "skipping ${arn##*:task-definition/} (${reason})" >&2
        skipped+=("${arn##*:task-definition/} (${reason})")
    done
    local passed_over=""
    if ((${#skipped[@]} > 0)); then
        passed_over="; passed over: $(printf '%s, ' "${skipped[@]}")"
        passed_over=${passed_over%, }
    fi
    die "$service runs $current; no earlier revision of $family registered by CI for another release to go back to${passed_over}"
}

rollback() {
    if [[ ${1:-} == --dry-run ]]; then
        rollback_dry_run=true
        shift
    fi
    [[ $# -ge 1 && $# -le 2 && $1 != -* ]] || die "usage: rollback [--dry-run] SERVICE [TASK_DEFINITION_ARN]"
    local service=$1 target=${2:-}
    local description current
    description=$(describe_service "$service")
    current=$(jq -r '.services[0].taskDefinition' <<<"$description")
    [[ $current != null ]] || die "no service $service in $ECS_CLUSTER"
    # Before anything is looked up: the operator learns at once what to set.
    [[ $(controller_of "$description") != CODE_DEPLOY ]] || need_codedeploy_settings "$service"
    if [[ -z $target ]]; then
        previous_release "$service" "$current"
        target=$previous_release
    else
        # Back, and to the same service's code: not another family (the worker would become a
        # second order-grpc fleet), nor a later revision (one a plan registered for a release
        # that was never approved nor migrated).
        local family=${current##*:task-definition/} target_family=${target##*:task-definition/}
        [[ $target =~ :task-definition/[A-Za-z0-9_-]+:[0-9]+$ ]] \
            || die "$target is not a task definition ARN with a revision (arn:...:task-definition/FAMILY:REVISION)"
        [[ ${target%%:task-definition/*} == "${current%%:task-definition/*}" ]] \
            || die "$target is in another account or region than $current, which $service runs; nothing changed"
        [[ ${target_family%:*} == "${family%:*}" ]] \
            || die "$target is a revision of ${target_family%:*}, not of ${family%:*}, which $service runs; nothing changed"
        # base 10: a revision typed as 08 is eight, not a bad octal number
        ((10#${target##*:} < 10#${current##*:})) \
            || die "$target is not earlier than $current, which $service runs: a rollback goes back to an earlier revision (deploy a newer release through the deploy workflow); nothing changed"
    fi
    # Its images must still be in ECR (which keeps the last 30 per repository): a revision
    # whose image is gone would fail only once its tasks start, after the deployment began.
    local target_images listed name uri repository tag exists missing=() deployed_sha=""
    local account=${target#arn:*:ecs:*:}
    account=${account%%:*}
    target_images=$(images_of "$target") || die "cannot read $target"
    listed=$(jq -r 'to_entries[] | "\(.key)\t\(.value)"' <<<"$target_images")
    while IFS=$'\t' read -r name uri; do
        # CI's images: in this account's ECR, tagged (not pinned by digest) with a commit SHA
        [[ $uri == "$account".dkr.ecr.*/* && $uri != *@* && $uri =~ $COMMIT_TAG ]] || continue
        repository=${uri#*/}
        repository=${repository%:*}
        tag=${uri##*:}
        deployed_sha=${deployed_sha:-$tag}
        exists=$(image_exists "$repository" "$tag" </dev/null) || exit 1
        [[ $exists == true ]] || missing+=("$name: $uri")
    done <<<"$listed"
    ((${#missing[@]} == 0)) \
        || die "$target cannot be gone back to: its images are no longer in ECR ($(printf '%s; ' "${missing[@]}" | sed 's/; $//')); nothing changed"
    echo "rolling $service back$($rollback_dry_run && echo ' (dry run)'): $current -> $target"
    if [[ $(controller_of "$description") == CODE_DEPLOY ]]; then
        # The deployment's description names the commit gone back to (its images' tag), not
        # the newest commit of the branch the rollback was started from.
        DEPLOY_SHA="${deployed_sha:-an earlier commit} (rollback)" blue_green "$service" "$target"
    else
        roll "${service}=${target}"
    fi
}

: "${ECS_CLUSTER:?ECS_CLUSTER must be set}"
cmd=${1:-}; shift || true
case "$cmd" in
    image-exists) [[ $# -eq 2 ]] || die "usage: image-exists REPOSITORY TAG"; image_exists "$@" ;;
    register)     [[ $# -ge 2 ]] || die "usage: register FAMILY CONTAINER=IMAGE..."; register "$@" ;;
    migrate)      [[ $# -ge 1 && $# -le 2 ]] || die "usage: migrate [--dry-run] TASK_DEFINITION_ARN"; migrate "$@" ;;
    roll)         [[ $# -ge 1 ]] || die "usage: roll SERVICE=TASK_DEFINITION_ARN..."; roll "$@" ;;
    blue-green)   [[ $# -eq 2 ]] || die "usage: blue-green SERVICE TASK_DEFINITION_ARN"; blue_green "$@" ;;
    rollback)     rollback "$@" ;;
    *) die "usage: ecs-deploy.sh image-exists|register|migrate|roll|blue-green|rollback ..." ;;
esac
