"""Clock skew as AWS reports it (SigV4's 5-minute window), without importing boto."""

from __future__ import annotations

# The codes AWS answers a request signed outside its time window with (and, for the first
# two, a bad signature: `is_clock_skew` tells them apart by the message).
SKEW_CODES = frozenset({"InvalidSignatureException", "SignatureDoesNotMatch", "RequestExpired",
                         "RequestTimeTooSkewed"})
CLOCK_FIX = ("this host's clock is more than 5 minutes off: sync it (`timedatectl set-ntp true` "
             "or `chronyc makestep`) and retry")


def is_clock_skew(code: str, message: str) -> bool:
    """Whether AWS refused a request for its time (SigV4's 5-minute window), not its key.

    JSON services answer InvalidSignatureException "Signature expired: <t> is now earlier
    than <t> (<now> - 5 min.)" (or "Signature not yet current"), query ones
    SignatureDoesNotMatch with the same words, S3 RequestTimeTooSkewed."""
    if code in ("RequestTimeTooSkewed", "RequestExpired"):
        return True
    low = message.lower()
    return code in SKEW_CODES and ("signature expired" in low or "not yet current" in low)
