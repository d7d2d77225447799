"""A real, throw-away Kubernetes control plane for Bakeoff's tests.

`ControlPlane` runs etcd, kube-apiserver and kube-controller-manager (built by
`hack/build-tools.sh`) on loopback ports chosen free, with RBAC authorization and real
ServiceAccount tokens, so tests exercise the same API machinery a cluster has: CRD schema
validation, garbage collection, Deployments/ReplicaSets and RBAC denials. There are no kubelets,
so Pods are created and scheduled by nobody; tests check API objects, not running containers.

Every component runs in its own process group and is stopped with it, also when startup fails;
on Linux each also dies with the Python process that started it, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = "run hack/build-tools.sh"
CRDS_HINT = "run hack/fetch-crds.sh"

CONTROL_PLANE_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
UPSTREAM_CRD_GROUPS = ("kserve", "keda", "prometheus-operator")

# Controllers that give the API the behaviour Bakeoff relies on: owner-based cleanup, Deployments
# that create ReplicaSets (and ReplicaSets Pods), namespaces that really terminate, and the
# `default` ServiceAccount with the cluster CA in every namespace.
DEFAULT_CONTROLLERS = (
    "serviceaccount-token",
    "serviceaccount",
    "namespace",
    "garbagecollector",
    "deployment",
    "replicaset",
    "statefulset",
    "job",
    "root-ca-cert-publisher",
    "clusterrole-aggregation",
)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not start, or a command against it failed."""


class ToolsMissingError(ControlPlaneError):
    """A binary or CRD bundle that `hack/build-tools.sh` / `hack/fetch-crds.sh` provides is absent."""


class CommandError(ControlPlaneError):
    """kubectl or helm exited non-zero; carries the command line and both output streams."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        shown = " ".join(argv)
        super().__init__(f"`{shown}` exited {returncode}:\n{stderr.strip() or stdout.strip()}")


def tools_dir() -> Path:
    """Where `hack/build-tools.sh` and `hack/fetch-crds.sh` put their output."""
    configured = os.environ.get("BAKEOFF_TOOLS_DIR")
    return Path(configured).expanduser() if configured else REPO_ROOT / ".tools"


def find_tool(name: str) -> Path:
    """The path of a built tool (etcd, kube-apiserver, kube-controller-manager, kubectl, helm)."""
    path = tools_dir() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolsMissingError(f"{name} not found at {path}: {BUILD_HINT} (BAKEOFF_TOOLS_DIR={tools_dir()})")
    return path


def missing_tools(names: Iterable[str] = CONTROL_PLANE_TOOLS) -> list[str]:
    """The tools among `names` that are not built yet."""
    missing = []
    for name in names:
        try:
            find_tool(name)
        except ToolsMissingError:
            missing.append(name)
    return missing


def crds_dir() -> Path:
    """The folder of upstream CRDs copied by `hack/fetch-crds.sh` (kserve/, keda/, prometheus-operator/)."""
    path = tools_dir() / "crds"
    if not (path / "VERSIONS").is_file():
        raise ToolsMissingError(f"upstream CRDs not found at {path}: {CRDS_HINT}")
    return path


def upstream_crd_files(*groups: str) -> list[Path]:
    """The upstream CRD files of the given groups (all of UPSTREAM_CRD_GROUPS when none is named)."""
    root = crds_dir()
    chosen = groups or UPSTREAM_CRD_GROUPS
    unknown = sorted(set(chosen) - set(UPSTREAM_CRD_GROUPS))
    if unknown:
        raise ValueError(f"unknown CRD group(s) {unknown}; choose from {list(UPSTREAM_CRD_GROUPS)}")
    return [f for group in chosen for f in sorted((root / group).glob("*.yaml"))]


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `condition` until it is true; raise TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port that the OS reports free (components that cannot take port 0 get these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- certificates ---------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds, unlike RSA, and every component accepts them.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usages: Sequence[x509.ObjectIdentifier] = (),
    ips: Sequence[str] = (),
    dns: Sequence[str] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _Pki:
    """The CA, the API server's serving certificate, client certificates and the ServiceAccount keys."""

    def __init__(self, directory: Path, service_ip: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._ca_key = _new_key()
        self._ca_name = _name("bakeoff-test-ca")
        ca = _sign(self._ca_name, self._ca_key.public_key(), self._ca_name, self._ca_key, ca=True)
        self.ca_cert = directory / "ca.crt"
        self.ca_cert.write_bytes(_pem(ca))

        server_key = _new_key()
        server = _sign(
            _name("kube-apiserver"),
            server_key.public_key(),
            self._ca_name,
            self._ca_key,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            ips=["127.0.0.1", service_ip],
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        self.server_cert = directory / "apiserver.crt"
        self.server_key = directory / "apiserver.key"
        self.server_cert.write_bytes(_pem(server))
        _write_key(self.server_key, server_key)

        sa_key = _new_key()
        self.service_account_key = directory / "sa.key"
        self.service_account_pub = directory / "sa.pub"
        _write_key(self.service_account_key, sa_key)
        self.service_account_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def client(self, stem: str, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        """A client certificate: the API server maps CN to the user name and O to its groups."""
        key = _new_key()
        cert = _sign(
            _name(user, groups),
            key.public_key(),
            self._ca_name,
            self._ca_key,
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(_pem(cert))
        _write_key(key_path, key)
        return cert_path, key_path

    def serving(self, stem: str, common_name: str, *, ips: Sequence[str] = ("127.0.0.1",)) -> tuple[Path, Path]:
        """A serving certificate for a loopback endpoint (a webhook server), signed by the cluster CA."""
        key = _new_key()
        cert = _sign(
            _name(common_name),
            key.public_key(),
            self._ca_name,
            self._ca_key,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            ips=ips,
        )
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(_pem(cert))
        _write_key(key_path, key)
        return cert_path, key_path


# --- processes -------------------------------------------------------------------------------------


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Bound once in the parent so the child, between fork and exec, only makes one C call and takes
# no lock that another thread of the test process might hold.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    # If the test process is killed outright, the kernel kills this component too instead of
    # leaving it running and bound to its ports.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Component:
    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            # None: the test process's environment.
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (one prebound C call, see _PRCTL)
            close_fds=True,
        )

    def alive(self) -> bool:
        """True while running; raises (rather than returning False) so waits stop at once."""
        code = self.process.poll()
        if code is not None:
            raise ControlPlaneError(f"{self.name} exited with status {code} (log: {self.log_path})")
        return True

    def stop(self, grace: float = 10.0) -> None:
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=grace)
            # The group may hold children that outlived their leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        finally:
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _kubeconfig(server: str, ca: Path, user: Mapping[str, str], namespace: str = "default") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bakeoff-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": dict(user)}],
        "contexts": [
            {"name": "bakeoff-test", "context": {"cluster": "bakeoff-test", "user": "user", "namespace": namespace}}
        ],
        "current-context": "bakeoff-test",
    }
    return yaml.safe_dump(config, sort_keys=False)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback; use as a context manager.

    Attributes after `start()`: `server` (https URL), `kubeconfig` (admin, system:masters),
    `ca_cert`, `workdir` (certificates, kubeconfigs, component logs `<component>.log`).
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        startup_timeout: float = 90.0,
        extra_apiserver_args: Sequence[str] = (),
        crds: Iterable[Path | str] = (),
    ) -> None:
        """`crds`: CRD files (or folders) installed before kube-controller-manager starts, so its
        garbage collector watches their kinds from the start; it discovers kinds added later only
        every 30 s, and until then objects they own are not collected."""
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bakeoff-k8s-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.controllers = tuple(controllers)
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.crds = tuple(Path(c) for c in crds)
        self.server = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.ca_cert = self.workdir / "pki" / "ca.crt"
        self.startup_seconds = 0.0
        self._components: list[_Component] = []
        self._pki: _Pki | None = None
        self._admin_ssl: ssl.SSLContext | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start every component and wait until the API is ready and controllers are working."""
        binaries = {name: find_tool(name) for name in CONTROL_PLANE_TOOLS}
        started = time.monotonic()
        try:
            self._start(binaries)
        except BaseException as exc:
            report = self._failure_report()
            self.stop(remove_workdir=False)
            print(report, file=sys.stderr)
            if isinstance(exc, Exception):
                raise ControlPlaneError(f"control plane failed to start: {exc}\n{report}") from exc
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, *, remove_workdir: bool | None = None) -> None:
        """Stop every component (newest first); idempotent. Removes a workdir it created itself."""
        while self._components:
            self._components.pop().stop()
        if remove_workdir is None:
            remove_workdir = self._own_workdir
        if remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start(self, binaries: Mapping[str, Path]) -> None:
        service_ip = str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts()))
        pki = self._pki = _Pki(self.workdir / "pki", service_ip)
        self.ca_cert = pki.ca_cert
        deadline = time.monotonic() + self.startup_timeout

        client_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                "--name=bakeoff-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=bakeoff-test={peer_url}",
                # Throw-away data: skipping fsync makes every write (and so every test) faster.
                "--unsafe-no-fsync=true",
                # KServe's InferenceService CRD is close to etcd's default 1.5 MiB request limit.
                "--max-request-bytes=10485760",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: etcd.alive() and self._etcd_healthy(etcd_url),
            timeout=max(1.0, deadline - time.monotonic()),
            what="etcd /health",
        )

        self.server = f"https://127.0.0.1:{api_port}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # A loopback address cannot be published as the `kubernetes` Service's endpoint,
                # and nothing in-cluster would dial it anyway.
                "--endpoint-reconciler-type=none",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self.extra_apiserver_args,
            ],
        )
        admin_cert, admin_key = pki.client("admin", "bakeoff-admin", ["system:masters"])
        self.kubeconfig.write_text(
            _kubeconfig(self.server, pki.ca_cert, {"client-certificate": str(admin_cert), "client-key": str(admin_key)})
        )
        self._admin_ssl = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._admin_ssl.load_cert_chain(str(admin_cert), str(admin_key))
        wait_until(
            lambda: apiserver.alive() and self._get("/readyz") == 200,
            timeout=max(1.0, deadline - time.monotonic()),
            what="kube-apiserver /readyz",
        )

        if self.crds:
            self.install_crds(self.crds, timeout=max(1.0, deadline - time.monotonic()))

        kcm_cert, kcm_key = pki.client("kube-controller-manager", "system:kube-controller-manager")
        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(
            _kubeconfig(self.server, pki.ca_cert, {"client-certificate": str(kcm_cert), "client-key": str(kcm_key)})
        )
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'kube-controller-manager-certs'}",
                f"--controllers={','.join(self.controllers)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        # The `default` ServiceAccount appears once the controllers are running against the API.
        if "serviceaccount" in self.controllers:
            wait_until(
                lambda: kcm.alive() and self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
                timeout=max(1.0, deadline - time.monotonic()),
                what="kube-controller-manager to create the default ServiceAccount",
            )

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> _Component:
        component = _Component(name, argv, self.workdir / f"{name}.log", env)
        self._components.append(component)
        return component

    @staticmethod
    def _etcd_healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _get(self, path: str) -> int:
        """Status code of an admin GET against the API server; 0 when it cannot be reached."""
        return self._request(path)[0]

    def _request(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"{self.server}{path}", timeout=5, context=self._admin_ssl) as response:
                status: int = response.status
                return status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except OSError:
            return 0, b""

    def _crd_established(self, name: str) -> bool:
        status, body = self._request(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def _failure_report(self) -> str:
        parts = [f"control plane workdir: {self.workdir}"]
        for component in self._components:
            parts.append(f"----- {component.name} ({component.log_path}) -----\n{component.log_tail()}")
        return "\n".join(parts)

    def logs(self, lines: int = 40) -> str:
        """The last `lines` lines of every component's log, for failure messages."""
        return "\n".join(f"----- {c.name} -----\n{c.log_tail(lines)}" for c in self._components)

    # -- clients ------------------------------------------------------------------------------------

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for a subprocess that talks to this cluster (KUBECONFIG, tools on PATH)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        env["PATH"] = f"{tools_dir() / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # Keep Helm's and kubectl's caches and config out of the user's home.
        for var, sub in (
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
            ("KUBECACHEDIR", "kube-cache"),
        ):
            env[var] = str(self.workdir / sub)
        return env

    def _run(
        self,
        argv: Sequence[str],
        *,
        input: str | None,
        check: bool,
        timeout: float,
        kubeconfig: Path | None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(kubeconfig),
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result.args, result.returncode, result.stdout, result.stderr)
        return result

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as admin (or with `kubeconfig`); raise CommandError on failure when `check`."""
        argv = [str(find_tool("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return self._run(argv, input=input, check=check, timeout=timeout, kubeconfig=kubeconfig)

    def helm(
        self,
        *args: str,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster as admin (or with `kubeconfig`)."""
        argv = [str(find_tool("helm")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return self._run(argv, input=None, check=check, timeout=timeout, kubeconfig=kubeconfig)

    def apply(
        self,
        manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` one object, a list of objects, or YAML text (server-side apply)."""
        if isinstance(manifest, str):
            text = manifest
        elif isinstance(manifest, Mapping):
            text = yaml.safe_dump(dict(manifest), sort_keys=False)
        else:
            text = yaml.safe_dump_all([dict(m) for m in manifest], sort_keys=False)
        args = ["apply", "--server-side", "--field-manager=bakeoff-tests", "-f", "-"]
        if namespace:
            args += ["--namespace", namespace]
        return self.kubectl(*args, input=text, check=check, kubeconfig=kubeconfig)

    def get(self, kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        """An object as a dict, or None when it does not exist."""
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["--namespace", namespace]
        out = self.kubectl(*args).stdout.strip()
        if not out:
            return None
        obj: dict[str, Any] = json.loads(out)
        return obj

    def create_namespace(self, name: str) -> str:
        """Create a namespace if it does not exist yet; returns its name."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def install_crds(self, paths: Iterable[Path | str], *, timeout: float = 120.0) -> list[str]:
        """Apply CRD files (or folders of *.yaml) and wait until each is Established; returns CRD names."""
        files: list[Path] = []
        for p in map(Path, paths):
            files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
        if not files:
            raise ValueError("install_crds: no CRD files given")
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=bakeoff-tests", "-o", "name"]
        for f in files:
            args += ["-f", str(f)]
        # Server-side apply: client-side apply would copy KServe's ~2 MB schema into an annotation.
        refs = self.kubectl(*args, timeout=timeout).stdout.split()
        names = [r.split("/", 1)[1] for r in refs if r.startswith("customresourcedefinition")]
        # Polled here: `kubectl wait` gives up on a CRD whose status has no conditions yet.
        wait_until(
            lambda: all(self._crd_established(n) for n in names),
            timeout=timeout,
            what=f"CRDs {names} to be Established",
        )
        return names

    def install_upstream_crds(self, *groups: str) -> list[str]:
        """Install the KServe / KEDA / prometheus-operator CRDs from `hack/fetch-crds.sh`."""
        return self.install_crds(upstream_crd_files(*groups))

    def create_service_account(self, namespace: str, name: str) -> None:
        self.create_namespace(namespace)
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        *,
        create: bool = True,
        duration_seconds: int = 3600,
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount `namespace/name` with a TokenRequest token.

        Requests made with it are authorized by RBAC exactly as an in-cluster Pod's would be.
        """
        if create:
            self.create_service_account(namespace, name)
        token = self.kubectl(
            "create", "token", name, "--namespace", namespace, f"--duration={duration_seconds}s"
        ).stdout.strip()
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_kubeconfig(self.server, self.ca_cert, {"token": token}, namespace=namespace))
        path.chmod(0o600)
        return path

    def can_i(self, verb: str, resource: str, *, namespace: str, kubeconfig: Path) -> bool:
        """`kubectl auth can-i` for the identity of `kubeconfig`."""
        result = self.kubectl(
            "auth", "can-i", verb, resource, "--namespace", namespace, kubeconfig=kubeconfig, check=False
        )
        return result.stdout.strip() == "yes"

    def add_gpu_node(
        self,
        name: str,
        *,
        gpus: int = 1,
        gpu_product: str = "NVIDIA-L4",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a Node that advertises `gpus` x `nvidia.com/gpu`, as the NVIDIA device plugin would.

        No kubelet backs it, so Pods bound to it never run; it exists for code that reads node
        capacity and GPU labels (`nvidia.com/gpu.product`, `nvidia.com/gpu.count`).
        """
        node_labels = {
            "kubernetes.io/hostname": name,
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": gpu_product,
            "nvidia.com/gpu.count": str(gpus),
            **(labels or {}),
        }
        self.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels}})
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
        status = {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake node"}],
            }
        }
        self.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        node = self.get("node", name)
        if node is None:
            raise ControlPlaneError(f"node {name} vanished right after it was created")
        return node

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A `kubernetes.client.ApiClient` for this cluster (admin unless `kubeconfig` is given)."""
        from kubernetes import config

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
