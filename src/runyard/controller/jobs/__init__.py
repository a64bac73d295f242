"""Jobs: the scheduler that fires them (cron, dependencies) and the reconciler that keeps their status,
history and notifications. A fire itself is one store transaction: see store/jobs.py."""
