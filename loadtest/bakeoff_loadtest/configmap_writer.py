"""Create a ConfigMap holding a run's summary through the Kubernetes API, with a bearer token.

The operator's bake-off Jobs run `bakeoff loadtest ... --summary-configmap NAME`: the pod's
ServiceAccount, allowed to create ConfigMaps in its namespace and nothing else, creates one per
variant and run, which the operator reads back into the BakeOff's status. Credentials, in order: the
pod's ServiceAccount (`KUBERNETES_SERVICE_HOST`, the mounted token and CA), else the current context of
`KUBECONFIG` (or `~/.kube/config`) when it authenticates with a bearer token. A ConfigMap is never
overwritten: a second write of the same name is an error.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.run_summary import SUMMARY_KEY, SummaryError, summary_text

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_S: Final = 30.0
OWNER_KEYS: Final = ("apiVersion", "kind", "name", "uid")


# --- the ConfigMap -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigMapTarget:
    """Where the summary goes: a ConfigMap name, its namespace (None: the credentials'), labels and owner."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    owner: Mapping[str, str] | None = None

    def body(self, namespace: str, data: Mapping[str, str]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": namespace, "labels": dict(self.labels)}
        if self.owner is not None:
            metadata["ownerReferences"] = [dict(self.owner)]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}


def parse_target(name: str, labels: Sequence[str], owner: str | None) -> ConfigMapTarget:
    """`--summary-configmap [NAMESPACE/]NAME`, `--summary-label KEY=VALUE` (repeated) and
    `--summary-owner apiVersion=...,kind=...,name=...,uid=...`; raises ValueError naming the flag."""
    namespace, _, plain = name.rpartition("/")
    if not plain:
        raise ValueError(f"--summary-configmap {name!r}: give NAME or NAMESPACE/NAME")
    parsed: dict[str, str] = {}
    for text in labels:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"--summary-label {text!r}: write KEY=VALUE")
        parsed[key] = value
    reference: dict[str, str] | None = None
    if owner is not None:
        pairs = dict(part.partition("=")[::2] for part in owner.split(",") if part)
        missing = [k for k in OWNER_KEYS if not pairs.get(k)]
        unknown = sorted(set(pairs) - set(OWNER_KEYS))
        if missing or unknown:
            raise ValueError(
                f"--summary-owner {owner!r}: write apiVersion=...,kind=...,name=...,uid=... "
                f"({'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(unknown)})"
            )
        reference = {k: pairs[k] for k in OWNER_KEYS}
    return ConfigMapTarget(name=plain, namespace=namespace or None, labels=parsed, owner=reference)


@dataclass(frozen=True)
class Credentials:
    """How to reach the API server: its URL, a bearer token, the CA that signs its certificate (a file or
    PEM text; neither: the system's), a namespace."""

    server: str
    token: str
    ca_file: str | None = None
    ca_pem: str | None = None
    namespace: str | None = None
    insecure: bool = False

    def tls(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        return ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)


def credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """The pod's ServiceAccount, else the current context of KUBECONFIG; raises SummaryError when neither
    gives a bearer token."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token_file = SERVICE_ACCOUNT_DIR / "token"
    if host and port and token_file.is_file():
        namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
        return Credentials(
            server=f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}",
            token=token_file.read_text().strip(),
            ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            namespace=namespace_file.read_text().strip() if namespace_file.is_file() else None,
        )
    path = Path(env.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")
    return kubeconfig_credentials(path)


def kubeconfig_credentials(path: Path) -> Credentials:
    """The current context of the kubeconfig at `path`, if its user has a token (or a token file)."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SummaryError(f"no in-cluster ServiceAccount, and kubeconfig {str(path)!r} is unreadable: {err}") from None

    def named(section: str, name: str) -> dict[str, Any]:
        for entry in config.get(section) or []:
            if entry.get("name") == name:
                return dict(entry.get(section.removesuffix("s")) or {})
        raise SummaryError(f"kubeconfig {str(path)!r}: no {section.removesuffix('s')} named {name!r}")

    context = named("contexts", str(config.get("current-context") or ""))
    cluster = named("clusters", str(context.get("cluster") or ""))
    user = named("users", str(context.get("user") or ""))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    if not token:
        raise SummaryError(f"kubeconfig {str(path)!r}: the current user has no token; use a ServiceAccount token")
    ca_data = cluster.get("certificate-authority-data")
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        token=str(token),
        ca_file=str(cluster["certificate-authority"]) if cluster.get("certificate-authority") else None,
        ca_pem=base64.b64decode(ca_data).decode() if ca_data else None,
        namespace=context.get("namespace"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def write_configmap(result: RunResult, target: ConfigMapTarget, creds: Credentials | None = None) -> str:
    """Create the ConfigMap holding the summary; returns `namespace/name`. Raises SummaryError with the
    API server's answer when it refuses (it never overwrites one: a second write is an error)."""
    creds = creds or credentials()
    namespace = target.namespace or creds.namespace
    if not namespace:
        raise SummaryError("--summary-configmap: no namespace given and none in the credentials; write NAMESPACE/NAME")
    body = target.body(namespace, {SUMMARY_KEY: summary_text(result)})
    url = f"{creds.server}/api/v1/namespaces/{namespace}/configmaps"
    headers = {"Authorization": f"Bearer {creds.token}"}
    try:
        response = httpx.post(url, json=body, headers=headers, verify=creds.tls(), timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as err:
        raise SummaryError(f"cannot reach the Kubernetes API at {creds.server}: {err}") from None
    if response.status_code >= 300:
        try:
            message = str(response.json().get("message") or response.text)
        except ValueError:
            message = response.text
        raise SummaryError(f"ConfigMap {namespace}/{target.name} refused ({response.status_code}): {message[:500]}")
    return f"{namespace}/{target.name}"
