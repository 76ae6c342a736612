"""AWS clients: sessions, endpoint/retry/proxy conventions, error translation."""
