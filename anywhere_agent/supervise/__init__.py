"""The node supervisor: probes on their own schedules, bounded remediation, health publishing."""
