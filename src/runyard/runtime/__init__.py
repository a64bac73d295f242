"""Runtimes start Runs somewhere: `local` (processes on this host) today, `kubernetes` later."""
