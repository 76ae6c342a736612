#!/usr/bin/python3
"""LAB DOUBLE of amazon-ssm-agent: registers with an activation, vends role credentials, heartbeats.

THIS IS NOT THE AWS SSM AGENT. It is a stdlib-only stand-in used by the anywhere-agent lab. It
honours the real agent's command line, files and wire calls (see README.md next to this file)
so the product's real install path runs against it; it runs no documents and no sessions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

VERSION = "3.3.1802.0"
LAB_LABEL = "anywhere-agent lab double"
AGENT_NAME = "amazon-ssm-agent"

# Every path the double touches goes under this prefix, so tests run it on a temp dir.
ROOT = Path(os.environ.get("ANYWHERE_LAB_DOUBLE_ROOT", "/"))

CONFIG_FILE = "/etc/amazon/ssm/amazon-ssm-agent.json"
LAB_CONFIG_FILE = "/etc/amazon/ssm/lab-double.json"
DATA_DIR = "/var/lib/amazon/ssm"
REGISTRATION_FILE = DATA_DIR + "/registration"
VAULT_DIR = DATA_DIR + "/Vault"
STORE_DIR = VAULT_DIR + "/Store"
MANIFEST_FILE = VAULT_DIR + "/Manifest"
IDENTITY_CONFIG = DATA_DIR + "/runtimeconfig/identity_config.json"
LOG_FILE = "/var/log/amazon/ssm/amazon-ssm-agent.log"
FAULT_DIR = "/run/anywhere-lab/faults"
TIME_SCALE_FILE = "/etc/anywhere-lab/time-scale"
REG_KEY = "RegistrationKey"
FP_KEY = "InstanceFingerprint"
# Go's time.Format layout "2006-01-02 15:04:05.999999999 -0700 MST" as the real vault stores it.
KEY_DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f +0000 UTC"
ZERO_TIME = "0001-01-01T00:00:00Z"
MDS_TIMEOUT_SECONDS = 20.0  # appconfig Mds.StopTimeoutMillis: the GetMessages HTTP timeout
MDS_MIN_CYCLE_SECONDS = 2.2  # the real agent re-polls about this often when answered at once

_stop = False
_scale = 1.0


def uuid4() -> str:
    """A random (version 4) UUID as text. Not the uuid module: it imports platform too, and
    both would stay resident in an idle daemon that only needs random IDs."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def time_scale() -> float:
    """Lab seconds per real second, shared with the control plane (the lab writes the file)."""
    raw = os.environ.get("ANYWHERE_LAB_TIME_SCALE")
    if raw is None:
        try:
            raw = path(TIME_SCALE_FILE).read_text().strip()
        except OSError:
            raw = "1"
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


def real(lab_seconds: float) -> float:
    """Real seconds that `lab_seconds` of lab time last."""
    return max(0.0, lab_seconds) / _scale


def path(p: str) -> Path:
    return ROOT / p.lstrip("/")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def log(level: str, msg: str, console: bool = True) -> None:
    """Seelog's "%Date(2006-01-02 15:04:05.0000) %LEVEL %Msg" lines, to the log file and stdout."""
    stamp = now_utc().strftime("%Y-%m-%d %H:%M:%S.%f")[:-2]
    line = f"{stamp} {level} {msg}\n"
    try:
        logf = path(LOG_FILE)
        logf.parent.mkdir(parents=True, exist_ok=True)
        with logf.open("a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError:
        pass
    if console:
        sys.stdout.write(line)
        sys.stdout.flush()


def write_private(p: Path, data: str) -> None:
    """Write atomically with mode 0600 (the real agent's HardenedWriteFile)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(p.parent), prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def fault(name: str) -> bool:
    return path(FAULT_DIR + "/" + name).exists()


# ---------------------------------------------------------------------------------------------
# Configuration


class Config:
    """The parts of amazon-ssm-agent.json the double honours, plus the lab-only timings."""

    def __init__(self, region: str = "") -> None:
        real = read_json(path(CONFIG_FILE))
        ssm = real.get("Ssm") if isinstance(real.get("Ssm"), dict) else {}
        profile = real.get("Profile") if isinstance(real.get("Profile"), dict) else {}
        mds = real.get("Mds") if isinstance(real.get("Mds"), dict) else {}
        self.endpoint_override = str((ssm or {}).get("Endpoint") or "")
        self.mds_override = str((mds or {}).get("Endpoint") or "")
        self.share_creds = bool((profile or {}).get("ShareCreds", True))
        # identity_config records the configured value ("" by default); the credentials file
        # section is "default" when none is configured.
        self.share_profile_setting = str((profile or {}).get("ShareProfile") or "")
        self.share_profile = self.share_profile_setting or "default"
        self.region = region
        lab = read_json(path(LAB_CONFIG_FILE))
        # appconfig: HealthFrequencyMinutes within 5..60, else the default 5.
        minutes = (ssm or {}).get("HealthFrequencyMinutes", 5)
        if not isinstance(minutes, int) or not 5 <= minutes <= 60:
            minutes = 5
        self.health_minutes = minutes
        self.retry_max_seconds = _num(
            "ANYWHERE_LAB_SSM_RETRY_MAX_SECONDS", lab, "retry_max_seconds", 30.0
        )
        self.http_timeout = _num("ANYWHERE_LAB_SSM_HTTP_TIMEOUT", lab, "http_timeout_seconds", 10.0)

    def endpoint(self, service: str = "ssm") -> str:
        override = self.mds_override if service == "ec2messages" else self.endpoint_override
        if override:
            return override if "://" in override else "https://" + override
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://{service}.{self.region}.{suffix}"


def _num(env: str, lab: dict[str, Any], key: str, default: float) -> float:
    raw = os.environ.get(env)
    if raw is None:
        raw = lab.get(key)
    try:
        return float(raw) if raw is not None else default
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------
# Vault (Manifest + Store), registration and fingerprint files


def vault_store(key: str, data: dict[str, Any]) -> None:
    store = path(STORE_DIR)
    store.mkdir(parents=True, exist_ok=True)
    for d in (path(VAULT_DIR), store):
        os.chmod(d, 0o700)
    write_private(store / key, compact(data))
    manifest = read_json(path(MANIFEST_FILE))
    manifest[key] = str(Path(STORE_DIR) / key)  # the real manifest holds host paths
    write_private(path(MANIFEST_FILE), compact(manifest))


def vault_get(key: str) -> dict[str, Any]:
    manifest = read_json(path(MANIFEST_FILE))
    stored = manifest.get(key)
    if not stored:
        return {}
    return read_json(path(str(stored)))


def save_registration_key(instance_id: str, region: str, private_key: str) -> None:
    vault_store(
        REG_KEY,
        {
            "instanceID": instance_id,
            "region": region,
            "instanceType": "",
            "availabilityZone": "",
            "privateKey": private_key,
            "publicKey": "",  # the real agent fills this only for EC2 identities
            "privateKeyType": "Rsa" if private_key else "",
            "privateKeyCreatedDate": now_utc().strftime(KEY_DATE_FORMAT),
        },
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read(p: str) -> str:
    try:
        return path(p).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def hardware_hash() -> dict[str, str]:
    """The keys of the real agent's hardwareHash; values are lab approximations."""
    machine_id = (_read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")).strip()
    host = socket.gethostname()
    macs = []
    net = Path("/sys/class/net")
    if net.is_dir():
        for iface in sorted(net.iterdir()):
            try:
                macs.append((iface / "address").read_text().strip())
            except OSError:
                continue
    return {
        "machine-id": machine_id,
        "processor-hash": _sha(_read("/proc/cpuinfo").split("\n\n")[0]),
        "memory-hash": _sha(_read("/proc/meminfo").split("\n")[0]),
        "bios-hash": _sha(_read("/sys/class/dmi/id/bios_version")),
        "system-hash": _sha(_read("/sys/class/dmi/id/product_uuid")),
        "hostname-info": host,
        "ipaddress-info": primary_ip(),
        "macaddr-info": ",".join(macs),
        "disk-info": _sha(_read("/proc/partitions")),
    }


def instance_fingerprint() -> str:
    """Reuse the stored fingerprint while machine-id matches, else mint one (clones differ)."""
    current = hardware_hash()
    saved = vault_get(FP_KEY)
    saved_hw = saved.get("hardwareHash") if isinstance(saved.get("hardwareHash"), dict) else {}
    threshold = int(saved.get("similarityThreshold", 40) or 40)
    if saved.get("fingerprint") and (saved_hw or {}).get("machine-id") == current["machine-id"]:
        return str(saved["fingerprint"])
    fingerprint = uuid4()
    vault_store(
        FP_KEY,
        {"fingerprint": fingerprint, "hardwareHash": current, "similarityThreshold": threshold},
    )
    return fingerprint


def primary_ip() -> str:
    """The first non-loopback IPv4 address by interface order, as the agent's platform.IP()."""
    import fcntl

    try:
        interfaces = socket.if_nameindex()
    except OSError:
        interfaces = []
    for _index, name in interfaces:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(s.fileno(), 0x8915, request)  # SIOCGIFADDR
        except OSError:
            continue
        address = socket.inet_ntoa(answer[20:24])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# RSA keys (the real agent: 2048-bit RSA, privateKey = base64 PKCS#1 DER, PublicKey = base64 PKIX)


class KeyError_(Exception):
    pass


def _openssl(args: list[str], data: Optional[bytes] = None) -> bytes:
    exe = shutil.which("openssl")
    if exe is None:
        raise KeyError_("openssl not found")
    proc = subprocess.run([exe, *args], input=data, capture_output=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise KeyError_(proc.stderr.decode(errors="replace").strip() or "openssl failed")
    return proc.stdout


def generate_key_pair() -> tuple[str, str]:
    """Return (publicKey, privateKey) in the real agent's encodings, or a lab placeholder."""
    if shutil.which("openssl") is None:
        # Lab-only fallback: the lab control plane accepts it in place of an RSA signature,
        # a real service would reject it. Logged loudly so nobody mistakes it for a key.
        log("WARN", "openssl not found: using a LAB PLACEHOLDER key pair (not a real RSA key)")
        blob = base64.b64encode(b"LAB-PLACEHOLDER-KEY-" + os.urandom(32)).decode()
        return blob, blob
    pem = _openssl(["genrsa", "-traditional", "2048"])
    pkcs1_der = _openssl(["rsa", "-traditional", "-outform", "DER"], pem)
    pkix_der = _openssl(["rsa", "-pubout", "-outform", "DER"], pem)
    return base64.b64encode(pkix_der).decode(), base64.b64encode(pkcs1_der).decode()


def rsa_sign(private_key_b64: str, message: str) -> str:
    """RSA-PSS/SHA-256, salt 32, base64: what the real agent puts where SigV4 puts an HMAC."""
    der = base64.b64decode(private_key_b64)
    if der.startswith(b"LAB-PLACEHOLDER-KEY-") or shutil.which("openssl") is None:
        return base64.b64encode(hashlib.sha256(der + message.encode()).digest()).decode()
    body = base64.encodebytes(der).decode()
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"
    with tempfile.TemporaryDirectory(prefix="ssm-lab-sign-") as tmp:
        key_file = Path(tmp) / "key.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(pem)
        sig = _openssl(
            [
                "dgst",
                "-sha256",
                "-sign",
                str(key_file),
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ],
            message.encode(),
        )
    return base64.b64encode(sig).decode()


# ---------------------------------------------------------------------------------------------
# AWS JSON 1.1 calls


class AwsError(Exception):
    """Formatted like aws-sdk-go v1 errors, which is what the real agent logs and prints."""

    def __init__(self, code: str, message: str, status: int = 0, request_id: str = "") -> None:
        self.code = code
        self.status = status
        text = f"{code}: {message}"
        if status:
            text += f"\n\tstatus code: {status}, request id: {request_id}"
        super().__init__(text)


def amz_date(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


def sigv4_parts(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    region: str,
    service: str,
    access_key: str,
    when: dt.datetime,
) -> tuple[str, str, str]:
    """Return (string_to_sign, credential_scope_header_prefix, signed_headers) for SigV4."""
    parsed = urllib.parse.urlsplit(url)
    canon_headers = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed = ";".join(sorted(canon_headers))
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            parsed.query,
            "".join(f"{k}:{canon_headers[k]}\n" for k in sorted(canon_headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{when.strftime('%Y%m%d')}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date(when), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    return to_sign, f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}", signed


def hmac_signature(secret: str, when: dt.datetime, region: str, service: str, to_sign: str) -> str:
    key = ("AWS4" + secret).encode()
    for part in (when.strftime("%Y%m%d"), region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def call(
    cfg: Config,
    target: str,
    payload: dict[str, Any],
    *,
    signer: str = "none",
    creds: Optional[dict[str, str]] = None,
    private_key: str = "",
    instance_id: str = "",
    chunked: bool = False,
    service: str = "ssm",
    timeout: Optional[float] = None,
) -> dict[str, Any]:
    """POST one AWS JSON 1.1 request; proxies come from http(s)_proxy/no_proxy like Go's."""
    url = cfg.endpoint(service).rstrip("/") + "/"
    body = compact(payload).encode()
    when = now_utc()
    headers = {
        "Host": urllib.parse.urlsplit(url).netloc,
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": target,
    }
    if signer != "none":
        headers["X-Amz-Date"] = amz_date(when)
    if signer == "sigv4" and creds:
        if creds.get("token"):
            headers["X-Amz-Security-Token"] = creds["token"]
        to_sign, prefix, signed = sigv4_parts(
            "POST", url, headers, body, cfg.region, service, creds["key"], when
        )
        sig = hmac_signature(creds["secret"], when, cfg.region, service, to_sign)
        headers["Authorization"] = f"{prefix}, SignedHeaders={signed}, Signature={sig}"
    elif signer == "rsa":
        to_sign, prefix, signed = sigv4_parts(
            "POST", url, headers, body, cfg.region, "ssm", instance_id, when
        )
        sig = rsa_sign(private_key, to_sign)
        headers["Authorization"] = f"{prefix}, SignedHeaders={signed}, Signature={sig}"
    headers["User-Agent"] = (
        f"aws-sdk-go/1.55.5 (go1.22; linux) {AGENT_NAME}/{VERSION} ({LAB_LABEL})"
    )
    del headers["Host"]  # urllib sets Host itself; it was only needed for the signature
    data: Any = iter([body]) if chunked else body  # an iterator makes urllib send it chunked
    # The URL is the configured endpoint or https://ssm.REGION...: always http(s).
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    try:
        with opener.open(req, timeout=timeout or cfg.http_timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        raw = err.read()
        rid = err.headers.get("x-amzn-RequestId", "") if err.headers else ""
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            doc = {}
        code = str(doc.get("__type", "") or f"HTTP{err.code}").rsplit("#", 1)[-1]
        message = str(doc.get("message") or doc.get("Message") or err.reason)
        raise AwsError(code, message, err.code, rid) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise AwsError(
            "RequestError", f'send request failed\ncaused by: Post "{url}": {reason}'
        ) from None
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        raise AwsError("SerializationError", "failed decoding JSON RPC response") from None
    return doc if isinstance(doc, dict) else {}


# ---------------------------------------------------------------------------------------------
# Command line (Go `flag` package semantics: -name, -name=value, -name value; first non-flag stops)

BOOL_FLAGS = {
    "register",
    "clear",
    "y",
    "version",
    "fingerprint",
    "disableSimilarityCheck",
    "tools",
    "winOnFirstInstallChecks",
}
VALUE_FLAGS = {"code", "id", "region", "role", "tags", "similarityThreshold", "allowLinkDeletions"}


def usage() -> None:
    err = sys.stderr
    err.write(f"\n\nCommand-line Usage:   ({AGENT_NAME} {VERSION}, {LAB_LABEL})\n")
    err.write("\t-register\tregister managed instance\n")
    err.write("\t\t-id    \tSSM activation ID  \t(REQUIRED with activation registration)\n")
    err.write("\t\t-code  \tSSM activation code\t(REQUIRED with activation registration)\n")
    err.write("\t\t-region\tSSM region         \t(REQUIRED with registration)\n")
    err.write("\n\t\t-clear\tClears the previously saved SSM registration\n")
    err.write("\t-fingerprint\tUpdate the machine fingerprint similarity threshold\t(OPTIONAL)\n")
    err.write(
        "\t\t-similarityThreshold\tRequired percentage of matching hardware values\t(OPTIONAL)\n"
    )
    err.write("\n\t-y\tAnswer yes for all questions\n")
    err.write("\t-version\tPrint the version\n")
    err.write("\nThis is a LAB DOUBLE for the anywhere-agent lab, not the AWS SSM agent.\n")


def parse_flags(argv: list[str]) -> dict[str, str]:
    """Return the set flags; exits 2 like Go's flag.ExitOnError on an undefined flag."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            break
        name, _, value = arg.lstrip("-").partition("=")
        if name in ("h", "help"):
            usage()
            sys.exit(0)
        if name in BOOL_FLAGS:
            flags[name] = value or "true"
        elif name in VALUE_FLAGS:
            if not value and "=" not in arg:
                i += 1
                if i >= len(argv):
                    sys.stderr.write(f"flag needs an argument: -{name}\n")
                    usage()
                    sys.exit(2)
                value = argv[i]
            flags[name] = value
        else:
            sys.stderr.write(f"flag provided but not defined: -{name}\n")
            usage()
            sys.exit(2)
        i += 1
    return flags


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    flags = parse_flags(args)
    on = {k for k, v in flags.items() if k in BOOL_FLAGS and v.lower() in ("true", "1", "t")}
    if len(flags) == 1 and "version" in on:
        print(f"SSM Agent version: {VERSION} ({LAB_LABEL})")
        return 0
    if flags:
        if "register" in on:
            return process_registration(flags, on)
        if "fingerprint" in on:
            return process_fingerprint(flags)
        usage()
        return 1
    return run_daemon()


def process_fingerprint(flags: dict[str, str]) -> int:
    try:
        threshold = int(flags.get("similarityThreshold", "40"))
    except ValueError:
        log("ERROR", "Error setting the SimilarityThreshold. invalid value")
        return 1
    saved = vault_get(FP_KEY) or {"fingerprint": "", "hardwareHash": {}}
    saved["similarityThreshold"] = threshold
    vault_store(FP_KEY, saved)
    log("INFO", f"Fingerprint SimilarityThreshold set to {threshold}")
    return 0


def ask_for_confirmation() -> tuple[bool, str]:
    """Go's fmt.Scanln on stdin: EOF and an empty line are errors, y/n the answers."""
    sys.stdout.write(
        "\nInstance already registered. Would you like to override existing with new "
        "registration information? [Yes/No]: "
    )
    sys.stdout.flush()
    line = sys.stdin.readline()
    if line == "":
        return False, "EOF"
    answer = line.strip()
    if not answer:
        return False, "unexpected newline"
    first = answer[0].lower()
    if first == "y":
        return True, ""
    if first == "n":
        return False, ""
    return False, "Invalid response received."


def process_registration(flags: dict[str, str], on: set[str]) -> int:
    code, act_id, region = flags.get("code", ""), flags.get("id", ""), flags.get("region", "")
    if not code or not act_id or not region:
        if "clear" in on:
            return clear_registration()
        usage()
        return 1
    if "y" not in on and vault_get(REG_KEY).get("instanceID"):
        ok, err = ask_for_confirmation()
        if err:
            log("ERROR", f"Registration failed due to {err}")
            return 1
        if not ok:
            log("INFO", "Registration canceled by user")
            return 1
    cfg = Config(region)
    try:
        instance_id = register(cfg, code, act_id, region)
    except _RegistrationFailure as exc:
        log("ERROR", f"Registration failed due to {exc}")
        return 1
    log(
        "INFO",
        "Successfully registered the instance with AWS SSM using Managed instance-id: "
        + instance_id,
    )
    return 0


class _RegistrationFailure(Exception):
    pass


def register(cfg: Config, code: str, act_id: str, region: str) -> str:
    try:
        public_key, private_key = generate_key_pair()
    except (KeyError_, OSError, subprocess.SubprocessError) as exc:
        raise _RegistrationFailure(f"error generating signing keys. {exc}") from None
    try:
        # Like the real agent: the key is saved before the call, so an interrupted register
        # leaves a RegistrationKey with an empty instanceID.
        save_registration_key("", "", private_key)
    except OSError as exc:
        raise _RegistrationFailure(
            f"Unable to save registration information. {exc}\nTry running as sudo/administrator."
        ) from None
    try:
        fingerprint = instance_fingerprint()
    except OSError as exc:
        raise _RegistrationFailure(f"error generating instance fingerprint. {exc}") from None
    payload = {
        "ActivationCode": code,
        "ActivationId": act_id,
        "Fingerprint": fingerprint,
        "PublicKey": public_key,
        "PublicKeyType": "Rsa",
    }
    answer: dict[str, Any] = {}
    for attempt in range(3):  # aws-sdk-go's default retryer: network errors and 5xx only
        try:
            answer = call(cfg, "AmazonSSM.RegisterManagedInstance", payload)
            break
        except AwsError as exc:
            retryable = exc.code == "RequestError" or exc.status >= 500
            if not retryable or attempt == 2:
                raise _RegistrationFailure(
                    f"error registering the instance with AWS SSM. {exc}"
                ) from None
            time.sleep(0.2 * (2**attempt))
    instance_id = str(answer.get("InstanceId", ""))
    if not instance_id:
        raise _RegistrationFailure("error registering the instance with AWS SSM. empty InstanceId")
    try:
        save_registration_key(instance_id, region, private_key)
    except OSError as exc:
        raise _RegistrationFailure(
            f"error persisting the instance registration information. {exc}"
        ) from None
    try:
        write_private(
            path(REGISTRATION_FILE), compact({"ManagedInstanceID": instance_id, "Region": region})
        )
    except OSError as exc:
        raise _RegistrationFailure(f"Failed to write registration info to file. {exc}") from None
    return instance_id


def clear_registration() -> int:
    try:
        fp = vault_get(FP_KEY)
        if fp:
            vault_store(
                FP_KEY,
                {
                    "fingerprint": "",
                    "hardwareHash": {},
                    "similarityThreshold": fp.get("similarityThreshold", 40),
                },
            )
        vault_store(
            REG_KEY,
            {
                "instanceID": "",
                "region": "",
                "instanceType": "",
                "availabilityZone": "",
                "privateKey": "",
                "publicKey": "",
                "privateKeyType": "",
                "privateKeyCreatedDate": "",
            },
        )
    except OSError as exc:
        log(
            "ERROR",
            f"error clearing the instance registration information. {exc}\n"
            "Try running as sudo/administrator.",
        )
        return 1
    log("INFO", "Registration information has been removed from the instance.")
    return 0


# ---------------------------------------------------------------------------------------------
# Daemon: credential refresher (RequestManagedInstanceRoleToken) and health ping


def shared_credentials_path() -> Path:
    override = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    if override:
        return path(override)
    return path("/root/.aws/credentials")


def store_shared_credentials(p: Path, profile: str, key: str, secret: str, token: str) -> None:
    """Set one profile's three keys, keeping other sections, like go-ini's pretty format."""
    sections: list[tuple[str, list[str]]] = []
    current: Optional[list[str]] = None
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    preamble: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = []
            sections.append((stripped[1:-1].strip(), current))
        elif current is None:
            preamble.append(line)
        else:
            current.append(line)
    values = {"aws_access_key_id": key, "aws_secret_access_key": secret, "aws_session_token": token}
    body = [f"{k:<21} = {v}" for k, v in values.items()]
    out = [*preamble]
    replaced = False
    for name, sec_lines in sections:
        if name == profile:
            kept = [
                ln for ln in sec_lines if ln.split("=", 1)[0].strip() not in values and ln.strip()
            ]
            sec_lines = [*body, *kept]
            replaced = True
        out.append(f"[{name}]")
        out.extend(ln for ln in sec_lines if ln.strip())
        out.append("")
    if not replaced:
        out.extend([f"[{profile}]", *body, ""])
    write_private(p, "\n".join(out).lstrip("\n"))


def rfc3339(t: dt.datetime) -> str:
    text = t.astimezone(dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def save_identity_config(
    instance_id: str,
    share_file: str,
    profile: str,
    expires: str = ZERO_TIME,
    retrieved: str = ZERO_TIME,
    source: str = "",
) -> None:
    doc = {
        "SchemaVersion": "1.1",
        "InstanceId": instance_id,
        "IdentityType": "OnPrem",
        "ShareFile": share_file,
        "ShareProfile": profile,
        "CredentialsExpiresAt": expires,
        "CredentialsRetrievedAt": retrieved,
        "CredentialSource": source,
    }
    write_private(path(IDENTITY_CONFIG), compact(doc))


def parse_time(text: str) -> Optional[dt.datetime]:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def _on_term(signum: int, _frame: Any) -> None:
    global _stop
    _stop = True
    log("INFO", f"amazon-ssm-agent got signal:{signal.Signals(signum).name} value: {signum}")


def sleep_until(deadline: float) -> None:
    while not _stop and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


class Daemon:
    """The core agent's credential refresher and health pinger, on one thread."""

    def __init__(self, cfg: Config, instance_id: str, private_key: str) -> None:
        self.cfg = cfg
        self.instance_id = instance_id
        self.private_key = private_key
        self.share_file = shared_credentials_path()
        self.creds: Optional[dict[str, str]] = None
        self.next_refresh = time.monotonic()
        self.next_ping = time.monotonic()
        self.refresh_failures = 0
        self.ping_failures = 0
        self.pings = 0
        self.channel = ""  # SSMConnectionChannel: "" until a message channel is up
        self.stale_logged = False

    def restore(self) -> None:
        """Keep valid credentials across restarts, as the real refresher does."""
        ident = read_json(path(IDENTITY_CONFIG))
        expires = parse_time(str(ident.get("CredentialsExpiresAt", "")))
        retrieved = parse_time(str(ident.get("CredentialsRetrievedAt", "")))
        creds = self.read_shared()
        if ident.get("InstanceId") == self.instance_id and expires and retrieved and creds:
            left = (expires - now_utc()).total_seconds()
            half = (expires - retrieved).total_seconds() / 2
            if left > 0:
                self.creds = creds
                self.next_refresh = time.monotonic() + max(0.0, left - half)
                return
        save_identity_config(
            self.instance_id, str(self.share_path_host()), self.cfg.share_profile_setting
        )

    def share_path_host(self) -> Path:
        """The path as the host sees it (no lab root prefix), as identity_config records it."""
        try:
            return Path("/") / self.share_file.relative_to(ROOT)
        except ValueError:
            return self.share_file

    def read_shared(self) -> Optional[dict[str, str]]:
        section = ""
        found: dict[str, str] = {}
        try:
            text = self.share_file.read_text(encoding="utf-8")
        except OSError:
            return None
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1].strip()
            elif "=" in s and section == self.cfg.share_profile:
                k, v = s.split("=", 1)
                found[k.strip()] = v.strip()
        if "aws_access_key_id" not in found:
            return None
        return {
            "key": found["aws_access_key_id"],
            "secret": found.get("aws_secret_access_key", ""),
            "token": found.get("aws_session_token", ""),
        }

    def backoff(self, failures: int) -> float:
        base = min(self.cfg.retry_max_seconds, 1.0 * (2 ** min(failures, 10)))
        return float(base * random.uniform(0.8, 1.0))  # noqa: S311 - jitter, not crypto

    def refresh(self) -> None:
        fingerprint = instance_fingerprint()
        try:
            answer = call(
                self.cfg,
                "AmazonSSM.RequestManagedInstanceRoleToken",
                {"Fingerprint": fingerprint},
                signer="rsa",
                private_key=self.private_key,
                instance_id=self.instance_id,
                chunked=True,
            )
            for field in ("AccessKeyId", "SecretAccessKey", "SessionToken", "TokenExpirationDate"):
                if field not in answer:
                    raise AwsError("SerializationError", f"role token answer lacks {field}")
        except AwsError as exc:
            self.refresh_failures += 1
            delay = self.backoff(self.refresh_failures)
            log("ERROR", f"Retrieve credentials produced error: {exc}")
            log("INFO", f"Sleeping for {delay:.1f}s before retrying retrieve credentials")
            self.next_refresh = time.monotonic() + delay
            return
        self.refresh_failures = 0
        retrieved = now_utc()
        expires = dt.datetime.fromtimestamp(float(answer["TokenExpirationDate"]), dt.timezone.utc)
        self.creds = {
            "key": str(answer["AccessKeyId"]),
            "secret": str(answer["SecretAccessKey"]),
            "token": str(answer["SessionToken"]),
        }
        if self.cfg.share_creds:
            store_shared_credentials(
                self.share_file,
                self.cfg.share_profile,
                self.creds["key"],
                self.creds["secret"],
                self.creds["token"],
            )
        save_identity_config(
            self.instance_id,
            str(self.share_path_host()) if self.cfg.share_creds else "",
            self.cfg.share_profile_setting,
            rfc3339(expires),
            rfc3339(retrieved),
            "SSM",
        )
        half = max(1.0, (expires - retrieved).total_seconds() / 2)
        self.next_refresh = time.monotonic() + half
        log(
            "INFO",
            f"Credentials ready; next credential rotation will be in {half / 60:.2f} minutes",
        )

    def ping(self) -> None:
        """healthcheck.go's updateHealth: UpdateInstanceInformation with the host's facts."""
        if self.creds is None:
            self.next_ping = time.monotonic() + 1.0
            return
        payload = {
            "AgentName": AGENT_NAME,
            "AgentStatus": "Active",
            "AgentVersion": VERSION,
            "AvailabilityZone": "",
            "AvailabilityZoneId": "",
            "ComputerName": socket.gethostname(),
            "IPAddress": primary_ip(),
            "InstanceId": self.instance_id,
            "PlatformName": os_release().get("NAME", "Linux"),
            "PlatformType": "Linux",
            "PlatformVersion": os_release().get("VERSION_ID", ""),
            "SSMConnectionChannel": self.channel,
        }
        try:
            call(
                self.cfg,
                "AmazonSSM.UpdateInstanceInformation",
                payload,
                signer="sigv4",
                creds=self.creds,
            )
            if self.ping_failures:
                log("INFO", "Health ping succeeded again")
            self.ping_failures = 0
        except AwsError as exc:
            self.ping_failures += 1
            log("ERROR", f"Health ping failed: {exc}")
        # ModuleExecute: once now, again after a random 0..frequency, then every frequency.
        interval = self.cfg.health_minutes * 60.0
        self.pings += 1
        wait = random.uniform(0, interval) if self.pings == 1 else interval  # noqa: S311
        self.next_ping = time.monotonic() + real(wait)

    def poll_messages(self) -> None:
        """The MDS processor: ec2messages GetMessages in a loop (the service long-polls)."""
        failures = 0
        while not _stop:
            creds = self.creds
            if creds is None or fault("ssm-stale"):
                time.sleep(0.5)
                continue
            started = time.monotonic()
            try:
                call(
                    self.cfg,
                    "EC2WindowsMessageDeliveryService.GetMessages",
                    {
                        "Destination": self.instance_id,
                        "MessagesRequestId": uuid4(),
                        "VisibilityTimeoutInSeconds": 10,
                    },
                    signer="sigv4",
                    creds=creds,
                    service="ec2messages",
                    timeout=MDS_TIMEOUT_SECONDS,
                )
                failures = 0
                self.channel = "ec2messages"
            except AwsError as exc:
                failures += 1
                log("WARN", f"error when calling AWS APIs. error: {exc}")
                time.sleep(self.backoff(failures))
                continue
            # Never spin: an answer that came at once (no long poll) is re-asked ~2 s later.
            time.sleep(max(0.0, MDS_MIN_CYCLE_SECONDS - (time.monotonic() - started)))

    def run(self) -> None:
        self.restore()
        log("INFO", "credentialRefresher has started")
        threading.Thread(target=self.poll_messages, name="mds", daemon=True).start()
        while not _stop:
            if fault("ssm-stale"):
                if not self.stale_logged:
                    log("WARN", "lab fault ssm-stale: not refreshing credentials, not pinging")
                    self.stale_logged = True
                sleep_until(time.monotonic() + 0.5)
                continue
            self.stale_logged = False
            now = time.monotonic()
            if now >= self.next_refresh:
                self.refresh()
            if now >= self.next_ping:
                self.ping()
            sleep_until(min(self.next_refresh, self.next_ping, time.monotonic() + 1.0))


def os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _read("/etc/os-release").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def proxy_settings() -> Iterator[tuple[str, str]]:
    for key in ("http_proxy", "https_proxy", "no_proxy"):
        value = os.environ.get(key) or os.environ.get(key.upper()) or ""
        yield key, value


def redact_proxy(value: str) -> str:
    """A proxy URL with its password masked: the log never holds the secret."""
    try:
        parts = urllib.parse.urlsplit(value if "://" in value else "http://" + value)
    except ValueError:
        return "(unparsable proxy setting)"
    if parts.password is None:
        return value
    host = parts.hostname or ""
    netloc = f"{parts.username}:xxxxx@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)) if "://" in value else netloc


def run_daemon() -> int:
    global _scale
    _scale = time_scale()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    log("INFO", f"amazon-ssm-agent - v{VERSION} ({LAB_LABEL}) starting")
    log("INFO", "Proxy environment variables:")
    for key, value in proxy_settings():
        log("INFO", f"{key}: {redact_proxy(value)}")
    reg = vault_get(REG_KEY)
    instance_id, region, private_key = (
        str(reg.get(k, "")) for k in ("instanceID", "region", "privateKey")
    )
    if not (instance_id and region and private_key):
        log("ERROR", "Agent failed to assume any identity")
        log(
            "ERROR",
            "Error occurred when starting amazon-ssm-agent: failed to get identity: "
            "failed to find agent identity",
        )
        return 0  # the real core agent returns from run() and exits 0; Restart=always revives it
    log("INFO", f"Agent will take identity from OnPrem; instance id {instance_id}, region {region}")
    Daemon(Config(region), instance_id, private_key).run()
    log("INFO", "Stopping Core Agent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
