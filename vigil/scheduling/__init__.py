"""Pure time logic: backoff with jitter (and, later, cron ticks and catch-up)."""
