"""The lab: local stand-ins for AWS and for on-prem hosts, used only by tests and `lab` commands."""
