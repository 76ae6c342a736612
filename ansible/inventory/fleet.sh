#!/bin/sh
# Ansible inventory from what SSM and ECS see (`anywhere-agent registrar inventory`):
#
#   ansible-playbook -i inventory/fleet.sh -i inventory/prod/connection.ini \
#       playbooks/upgrade.yml --limit 'cluster_prod:&ecs_active'
#
# Groups: anywhere_agent_nodes, cluster_<name>, region_<name>, ecs_<status>,
# ssm_<ping status>, ssm_only, ecs_only, duplicate, offline, ssm_agent_<version>,
# ecs_agent_<version>. Scope it with ANYWHERE_AGENT_INVENTORY_ARGS, e.g.
# "--region us-east-1,eu-west-1 --cluster prod"; ANYWHERE_AGENT_CLI names the command.
# AWS credentials come from the environment, as for any AWS tool.
set -eu
case "${1:-}" in
  --host) echo '{}'; exit 0 ;;  # every host's variables are in --list's _meta
esac
# shellcheck disable=SC2086 # the arguments are meant to be split into words
exec "${ANYWHERE_AGENT_CLI:-anywhere-agent}" registrar inventory --format ansible ${ANYWHERE_AGENT_INVENTORY_ARGS:-}
