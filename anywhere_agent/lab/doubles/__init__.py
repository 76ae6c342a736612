"""Lab doubles of the SSM and ECS agents (stdlib-only programs) and the package repos shipping them.

`ssm_agent.py` and `ecs_agent.py` are standalone programs: each is installed as one file on a lab
host and runs on its `/usr/bin/python3` with no third-party packages, so they import nothing from
this package and nothing from each other. See README.md next to this file.
"""
