"""Compose without Docker: what each container of compose.yaml gets, rendered the
way `docker compose` renders it, and a site made by the steps of docs/deploy.md.

No Docker engine runs here, so the tests do compose's part themselves: `.env`
for the `${VAR}` placeholders, `env_file`, `environment` over both, the image's
own `ENV` underneath, secrets and bind mounts as paths, and the build context
that `.dockerignore` leaves. Only what compose.yaml uses is implemented.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.services import REPO, require_binary

PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
SECRETS_DIR = "/run/secrets"
# The official nginx image's user and group id (nginx:nginx), compose's front.
NGINX_IMAGE_ID = 101


class ComposeError(AssertionError):
    pass


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in variables
        value = variables.get(name, "")
        missing = not value if op and op.startswith(":") else not present
        if op in (":-", "-"):
            return interpolate(arg, variables) if missing else value
        if op in (":?", "?"):
            if missing:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return value
        return value

    return PLACEHOLDER.sub(replace, value)


def read_env_file(path: Path, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """An env file as compose reads it: KEY=VALUE lines, comments, optional quotes."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
            value = interpolate(value, {**(variables or {}), **values})
        values[key] = value
    return values


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of several files: mappings by key, sequences as a union."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, variables) for item in node]
    if isinstance(node, str):
        return interpolate(node, variables)
    return node


@dataclass
class Image:
    """What a Dockerfile's last stage gives its containers."""

    env: dict[str, str]
    uid: int
    workdir: str
    command: list[str]


def read_dockerfile(path: Path) -> Image:
    text = path.read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)
    last = stages[-1]
    env: dict[str, str] = {}
    workdir = "/"
    entrypoint: list[str] = []
    cmd: list[str] = []
    user = "root"
    for line in last.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                env[key] = value
        elif instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "USER":
            user = rest.strip()
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "CMD":
            cmd = json.loads(rest)
    uid = 0
    if user != "root":
        found = re.search(rf"useradd\b[^\n]*--uid (\d+)[^\n]*\s{re.escape(user)}\b", last)
        if not found:
            raise ComposeError(f"the Dockerfile's USER {user} has no `useradd --uid`")
        uid = int(found.group(1))
    return Image(env=env, uid=uid, workdir=workdir, command=entrypoint + cmd)


@dataclass
class Container:
    """One service's container: its environment, and where its paths come from on the host."""

    service: str
    env: dict[str, str]
    mounts: dict[str, Path] = field(default_factory=dict)
    image: Image | None = None
    # Container paths where compose mounts a tmpfs (memory only).
    tmpfs: list[str] = field(default_factory=list)

    def host_path(self, container_path: str) -> Path:
        """The host file behind a container path, through the longest mount that holds it."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                return self.mounts[mount] / os.path.relpath(container_path, mount)
        raise ComposeError(f"{self.service}: nothing is mounted at {container_path}")

    def secret(self, name: str) -> str:
        return self.host_path(f"{SECRETS_DIR}/{name}").read_text()

    def native_env(self, replacements: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a native process standing in for this container:
        container paths become their host paths, and each replacement (a service
        name and port, say) is applied."""
        env = {}
        for key, value in self.env.items():
            for old, new in (replacements or {}).items():
                value = value.replace(old, new)
            if value.startswith("/"):
                with contextlib.suppress(ComposeError):
                    value = str(self.host_path(value))
            env[key] = value
        return env


def mount_options(volume: Mapping[str, Any]) -> dict[str, str]:
    """A local volume's mount options (driver_opts `o`), such as a tmpfs's uid, gid and mode."""
    options = str((volume.get("driver_opts") or {}).get("o", ""))
    return dict(option.partition("=")[::2] for option in options.split(",") if option)


class Project:
    """compose.yaml (and override files) in a directory, with that directory's `.env`."""

    def __init__(self, directory: Path, files: tuple[str, ...] = ("compose.yaml",)) -> None:
        self.dir = directory
        env_path = directory / ".env"
        # Compose reads .env for its placeholders; the shell's variables would win, and there are none here.
        self.variables = read_env_file(env_path) if env_path.exists() else {}
        merged: dict[str, Any] = {}
        for name in files:
            merged = merge(merged, yaml.safe_load((directory / name).read_text()))
        self.config: dict[str, Any] = interpolate_tree(merged, self.variables)

    @property
    def services(self) -> dict[str, Any]:
        return self.config["services"]

    def local_path(self, path: str) -> Path:
        return (self.dir / path).resolve() if not path.startswith("/") else Path(path)

    def is_tmpfs_volume(self, name: str) -> bool:
        return self.volume_driver_opts(name).get("type") == "tmpfs"

    def volume_driver_opts(self, name: str) -> dict[str, str]:
        definition = (self.config.get("volumes") or {}).get(name) or {}
        return {key: str(value) for key, value in (definition.get("driver_opts") or {}).items()}

    def volume_mount_options(self, name: str) -> dict[str, str]:
        return mount_options((self.config.get("volumes") or {}).get(name) or {})

    def container(self, name: str, named_volumes: Mapping[str, Path] | None = None) -> Container:
        service = self.services[name]
        image = read_dockerfile(self.dir / "Dockerfile") if "build" in service else None
        env: dict[str, str] = dict(image.env) if image else {}
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            env.update(read_env_file(self.local_path(path), self.variables))
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        env.update({key: "" if value is None else str(value) for key, value in environment.items()})

        mounts: dict[str, Path] = {}
        tmpfs = [item.split(":")[0] for item in service.get("tmpfs", [])]
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):  # the long syntax
                if volume["type"] == "tmpfs":
                    tmpfs.append(volume["target"])
                    continue
                source, target = volume["source"], volume["target"]
            else:
                source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts[target] = self.local_path(source)
                continue
            if self.is_tmpfs_volume(source):
                tmpfs.append(target)
            if named_volumes and source in named_volumes:
                mounts[target] = named_volumes[source]
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            target = source if isinstance(secret, str) else secret.get("target", source)
            definition = self.config["secrets"][source]
            mounts[f"{SECRETS_DIR}/{target}"] = self.local_path(definition["file"])
        return Container(service=name, env=env, mounts=mounts, image=image, tmpfs=tmpfs)


# --- The Orthanc Team image's configuration rules (docs: orthancteam/orthanc Docker images) ---


# The image's names that do not follow its rule (env-var-non-standards.json), those compose.yaml uses.
ORTHANC_NON_STANDARD = {
    f"ORTHANC__POSTGRESQL__{name.upper()}": ["PostgreSQL", name.replace("_", "")]
    for name in ("Enable_Index", "Enable_Storage", "Host", "Port", "Database", "Username", "Password", "Lock")
}


def orthanc_setting_path(variable: str) -> list[str]:
    """ORTHANC__DICOM_WEB__ROOT -> ["DicomWeb", "Root"]: each word's first letter kept, the rest lowered."""
    if variable in ORTHANC_NON_STANDARD:
        return ORTHANC_NON_STANDARD[variable]
    tokens = variable.removeprefix("ORTHANC__").split("__")
    return ["".join(word[:1] + word[1:].lower() for word in token.split("_")) for token in tokens]


def orthanc_value(raw: str) -> Any:
    try:
        return json.loads(raw)  # numbers, booleans and JSON; anything else stays a string
    except ValueError:
        return raw


def orthanc_configuration(container: Container) -> dict[str, Any]:
    """The configuration the image builds from ORTHANC__* variables and NAME_SECRET=file secrets."""
    config: dict[str, Any] = {}

    def put(path: list[str], value: Any) -> None:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    secret_files: dict[str, str] = {}
    for key, value in container.env.items():
        if key.endswith("_SECRET"):
            secret_files[value] = key.removesuffix("_SECRET")
        elif key.startswith("ORTHANC__"):
            put(orthanc_setting_path(key), orthanc_value(value))
    for mount in container.mounts:
        name = mount.removeprefix(f"{SECRETS_DIR}/")
        if mount.startswith(f"{SECRETS_DIR}/") and name in secret_files:
            content = container.host_path(mount).read_text().rstrip("\n")
            put(orthanc_setting_path(secret_files[name]), orthanc_value(content))
    return config


# --- The build context: what `COPY . .` sees through .dockerignore ---


def dockerignore_patterns(directory: Path) -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    path = directory / ".dockerignore"
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def is_ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, pattern in patterns:
        if any(pattern.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def build_context(directory: Path) -> Iterator[str]:
    """Relative paths of the files the image build receives."""
    patterns = dockerignore_patterns(directory)
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(root, name), directory)
            if not is_ignored(relative, patterns):
                yield relative


def copy_build_context(directory: Path, destination: Path) -> None:
    for relative in build_context(directory):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(directory / relative, target)


# --- A site made by docs/deploy.md ---


def markdown_section(markdown: str, heading: str) -> str:
    """The text under a `##`/`###` heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", markdown, re.MULTILINE)
    if not match:
        raise ComposeError(f"docs/deploy.md has no section {heading!r}")
    level = len(match.group(1))
    rest = markdown[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def shell_blocks(heading: str, markdown: str | None = None) -> list[str]:
    text = markdown if markdown is not None else (REPO / "docs" / "deploy.md").read_text()
    return re.findall(r"^```sh\n(.*?)^```", markdown_section(text, heading), re.MULTILINE | re.DOTALL)


def without_docker(script: str) -> str:
    """The block minus its `docker ...` commands: this machine has no Docker engine."""
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("docker "))


def run_documented(script: str, directory: Path, replacements: Mapping[str, str] | None = None) -> None:
    for placeholder, value in (replacements or {}).items():
        if placeholder not in script:
            raise ComposeError(f"the documented steps no longer mention {placeholder}")
        script = script.replace(placeholder, value)
    result = subprocess.run(
        ["sh", "-eu"], input=without_docker(script), cwd=directory, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise ComposeError(f"the documented steps failed in {directory}:\n{script}\n{result.stderr}")


def hard_password() -> str:
    """A base64 password with `/`, `+` and `=` in it, as other generators make them."""
    while True:
        value = base64.b64encode(os.urandom(35)).decode()  # 35 bytes: one `=` of padding
        if "/" in value and "+" in value:
            return value


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    openssl = require_binary("openssl", "apt-get install openssl")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def make_site(directory: Path, host: str = "pacs.hospital.example") -> Path:
    """A checkout set up by the install steps of docs/deploy.md, run as written, with
    a self-signed certificate for `host` where the steps name the site's own. The
    database and Orthanc passwords are then redrawn to contain `/`, `+` and `=`."""
    checkout = directory / "pacsportal"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for relative in filter(None, tracked):
        if (REPO / relative).is_file():
            (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, checkout / relative)
    checkout.chmod(0o755)  # a checkout such as /opt/pacsportal; mkdtemp made its parent 0700
    directory.chmod(0o755)
    cert, key = self_signed_certificate(directory, host)
    install = shell_blocks("Install (compose)")[0]
    run_documented(install, checkout, {"/path/to/fullchain.pem": str(cert), "/path/to/privkey.pem": str(key)})
    for name in ("postgres_password", "portal_db_password", "orthanc_db_password", "orthanc_password"):
        path = checkout / "secrets" / name
        if path.exists():
            path.write_text(hard_password() + "\n")
    return checkout


def set_env(checkout: Path, **values: str) -> None:
    """Edit `.env` as an admin would: replace the line of each variable, or add it."""
    path = checkout / ".env"
    lines = path.read_text().splitlines()
    for name, value in values.items():
        for i, line in enumerate(lines):
            if line.startswith(f"{name}="):
                lines[i] = f"{name}={value}"
                break
        else:
            lines.append(f"{name}={value}")
    path.write_text("\n".join(lines) + "\n")
