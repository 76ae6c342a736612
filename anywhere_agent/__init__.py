"""anywhere-agent: put on-prem servers into Amazon ECS clusters with ECS Anywhere."""

__version__ = "0.1.0"
