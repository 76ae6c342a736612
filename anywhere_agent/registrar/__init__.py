"""Registrar: host role and cluster, activations sized to a rollout, the fleet view, prune, wait."""
