"""Node install: plan (pure) then apply (a short loop), every step idempotent and journaled."""
