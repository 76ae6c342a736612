"""Redaction for support bundles: the secret values a node holds, and the shapes secrets take.

Two nets, because either alone misses something: the values read from the node's own secret
files (role credentials, the registration's RSA key, proxy passwords, the activation code in
our environment) are replaced wherever they appear, in any text; and patterns catch secrets
whose value we never saw (a key pasted into a log, a token in a header, a PEM block).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

from anywhere_agent.errors import HostIOError
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.secret import redact_userinfo

MASK = "[REDACTED]"
MIN_VALUE = 4  # shorter values are too common as text to replace blindly (patterns still apply)

# Files whose secret values are learnt (never put in a bundle themselves).
SECRET_SOURCES = (agent_files.HOST_CREDENTIALS, agent_files.SSM_REGISTRATION_KEY)
# Files and directories whose every `scheme://user:password@` password is learnt.
PROXY_SOURCES = (agent_files.APT_PROXY_CONF, agent_files.ECS_CONFIG, agent_files.ECS_VAR_CONFIG,
                 agent_files.CONFIG_DIR + "/agent.toml", agent_files.SSM_CONFIG)
ENV_SECRETS = ("ANYWHERE_AGENT_ACTIVATION_CODE", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_ACCESS_KEY_ID", "ANYWHERE_AGENT_HTTP_PROXY", "ANYWHERE_AGENT_HTTPS_PROXY")

_KEY_WORDS = r"(?:secret|password|passwd|token|credential|private_?key|auth|activation_?code)"


def _if_random(match: re.Match[str]) -> str:
    """Mask a run of base64 that looks random: an AWS secret key (40) or session token
    (hundreds), where about a third of the characters are capitals; not a hex hash, a word,
    a date or a file name (a capital or two at most)."""
    text = match.group()
    upper = sum(c.isupper() for c in text)
    lower = sum(c.islower() for c in text)
    other = any(not c.isalpha() for c in text)
    return MASK if upper >= 3 and lower >= 3 and other else text


PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM private keys, whole.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                re.S), MASK),
    # ... and a PEM block a log tail cut in two: its end without its start, or the reverse.
    (re.compile(r"\A(?:(?!-----BEGIN).)*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----END).)*\Z", re.S), MASK),
    # AWS access key IDs (long-term AKIA, temporary ASIA).
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    # JSON members: "SecretAccessKey": "...", "privateKey": "...", "ActivationCode": "..."
    (re.compile(r'("(?:[A-Za-z_]*' + _KEY_WORDS + r'[A-Za-z_]*|AccessKeyId|Code)"\s*:\s*)'
                r'"(?:[^"\\]|\\.)*"', re.I), r'\1"' + MASK + '"'),
    # key = value / KEY=value lines (ini, env files, ecs.config: ECS_ENGINE_AUTH_DATA=...).
    (re.compile(r"(?im)^([ \t]*[A-Za-z0-9_.]*" + _KEY_WORDS
                + r"[A-Za-z0-9_.]*[ \t]*[=:][ \t]*)(?!\[REDACTED\])\S.*$"), r"\1" + MASK),
    (re.compile(r"(?im)^([ \t]*aws_access_key_id[ \t]*=[ \t]*)\S+$"), r"\1" + MASK),
    # argv: amazon-ssm-agent -register -code CODE; our --activation-code VALUE.
    (re.compile(r"(\s-{1,2}(?:code|activation-code)(?:[ =]+))(?!\[REDACTED\])\S+"),
     r"\1" + MASK),
    # HTTP headers and SigV4: X-Amz-Security-Token, Authorization signatures.
    (re.compile(r"(?i)(x-amz-security-token[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+"), r"\1" + MASK),
    (re.compile(r"(?i)(Signature=)[0-9a-f]{16,}"), r"\1" + MASK),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer)\s+)[^\s\"',]+"),
     r"\1" + MASK),
    # Credentials whose value was never seen (rotated away since they were logged): a secret
    # key is 40 base64 characters, a session token a long base64 run (either alphabet).
    (re.compile(r"(?<![A-Za-z0-9/+_=-])[A-Za-z0-9/+_-]{40}(?![A-Za-z0-9/+_=-])"), _if_random),
    (re.compile(r"(?<![A-Za-z0-9/+_=-])[A-Za-z0-9/+_-]{100,}={0,2}(?![A-Za-z0-9/+_=-])"),
     _if_random),
)


def _variants(value: str) -> set[str]:
    """A value and the encodings it is likely to appear in elsewhere."""
    out = {value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]}
    return {v for v in out if len(v) >= MIN_VALUE}


class Redactor:
    """Replaces known secret values, then secret-shaped text; counts what it replaced."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        found: set[str] = set()
        for value in values:
            value = value.strip()
            if len(value) >= MIN_VALUE:
                found |= _variants(value)
        # Longest first, so a value never leaves a redacted prefix's tail behind.
        self._values = sorted(found, key=len, reverse=True)
        self.count = 0

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                self.count += text.count(value)
                text = text.replace(value, MASK)
        for pattern, repl in PATTERNS:
            text, n = pattern.subn(repl, text)
            self.count += n
        clean = redact_userinfo(text)
        if clean != text:
            self.count += 1
        return clean


def url_passwords(text: str) -> set[str]:
    """The password of each `scheme://user:password@` (the token of `scheme://token@`)."""
    found = set()
    for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://([^\s:/@\"']*)(:[^\s/@\"']*)?@", text):
        part = m.group(2)[1:] if m.group(2) else m.group(1)
        found |= {part, urllib.parse.unquote(part)}
    return found


def _credentials_values(text: str) -> set[str]:
    parsed = agent_files.parse_credentials(text)
    if parsed.malformed:
        return set(re.findall(r"=\s*(\S+)", text))
    return {v for profile in parsed.profiles.values() for k, v in profile.items()
            if "key" in k or "token" in k}


def _json_values(text: str) -> set[str]:
    try:
        doc = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(doc, dict):
        return set()
    found = set()
    for key in ("privateKey", "PrivateKey", "publicKey"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            found.add(value)
            # The same key written as PEM is this base64 wrapped at 64 (or 76) columns.
            for width in (64, 76):
                found |= {value[i:i + width] for i in range(0, len(value), width)
                          if len(value[i:i + width]) >= 16}
    return found


def learn(host: Host, env: Mapping[str, str], extra: Iterable[str] = ()) -> Redactor:
    """A Redactor that knows every secret value this node holds in its secret files, proxy
    settings and our environment (read through the host gateway, never kept elsewhere)."""
    values: set[str] = set(extra)
    for path in SECRET_SOURCES + PROXY_SOURCES:
        try:
            text = host.read_text(path) or ""
        except HostIOError:
            continue
        if path == agent_files.HOST_CREDENTIALS:
            values |= _credentials_values(text)
        elif path == agent_files.SSM_REGISTRATION_KEY:
            values |= _json_values(text)
        values |= url_passwords(text)
    for name in host.listdir(agent_files.CONFIG_DIR + "/proxy"):
        try:
            text = host.read_text(f"{agent_files.CONFIG_DIR}/proxy/{name}") or ""
            values |= url_passwords(text)
        except HostIOError:
            continue
    for name in ENV_SECRETS:
        value = env.get(name, "")
        values |= url_passwords(value) if "://" in value else {value}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        values |= url_passwords(env.get(name, ""))
    return Redactor(values)
