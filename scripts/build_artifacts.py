#!/usr/bin/env python3
"""Build the Lambda artifacts that Terraform deploys, byte for byte reproducibly.

    python scripts/build_artifacts.py [--arch x86_64|arm64 ...] [--out build] [--code-only]

writes

- ``<out>/sluice-code.zip``: the ``sluice`` package from ``src/sluice`` (``.py`` files and the
  package data ``*.json`` and ``py.typed``), nothing else;
- ``<out>/sluice-layer-<arch>.zip``: ``python/`` holding the runtime dependencies pinned in
  ``layers/requirements.txt``, installed from manylinux wheels for the functions' runtime
  (CPython 3.12 on Amazon Linux 2023, glibc 2.34) and the chosen architecture. Wheels of the
  build machine are never used: pip is told the target platform and accepts binary wheels only.

Terraform hashes the zips (``source_code_hash``) to decide whether a function or layer
changed, so the same inputs must give the same bytes: entries are sorted, every entry has the
same timestamp (``SOURCE_DATE_EPOCH`` or 1980-01-01) and permissions, the compression level is
fixed, and the install-time files that carry paths or hashes of the build machine are dropped.

The layer is checked before it is written: every installed wheel must carry a tag that the
target accepts, every ELF file must be built for the target's machine, every installed
distribution must be pinned in the requirements (a new transitive dependency fails the build
instead of slipping in unpinned), and the unzipped size must fit Lambda's limit.

Both zips carry bytecode compiled by CPython 3.12, the runtime's Python, next to the sources
(``__pycache__/<module>.cpython-312.pyc``): Lambda's ``/opt`` and ``/var/task`` are read-only,
so without it every cold start compiles boto3, Powertools and sluice from source again. The
pycs are *unchecked-hash* (PEP 552): the interpreter loads them without comparing them to the
source's mtime (every zip entry has the same fixed time) and they hold no build time, so two
builds give the same bytes. Sources stay in the zips for tracebacks. The 3.12 interpreter is
``$SLUICE_LAMBDA_PYTHON``, else ``python3.12`` on ``PATH``, else the newest 3.12 that pyenv or
uv installed; without one the build fails and says how to get one (a 3.11 ``.pyc`` would be
ignored by the runtime, and shipping none would silently cost ~0.6 s per cold start).

Downloaded wheels are cached under ``<out>/cache/`` keyed by the requirements' hash and the
target, so a rebuild needs no network and takes seconds. Progress goes to stderr; stdout
gets one line per zip: path, size and sha256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "src" / "sluice"
REQUIREMENTS = REPO_ROOT / "layers" / "requirements.txt"

CODE_ZIP = "sluice-code.zip"
LAYER_ZIP = "sluice-layer-{arch}.zip"

# The Lambda python3.12 runtime: CPython 3.12 on Amazon Linux 2023, whose glibc is 2.34.
PYTHON_VERSION = (3, 12)
RUNTIME_GLIBC = (2, 34)
# Lambda rejects a function whose code and layers unzip to more than 250 MB.
LAMBDA_UNZIPPED_LIMIT = 250 * 1000 * 1000

ZIP_EPOCH_FLOOR = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
COMPRESS_LEVEL = 6
FILE_MODE = 0o644
DIR_MODE = 0o755
# Part of the cache key: bump it when the way wheels are fetched changes.
CACHE_FORMAT = "1"

ELF_MAGIC = b"\x7fELF"

# The interpreter that compiles the bytecode: this variable first, then the usual places.
LAMBDA_PYTHON_ENV = "SLUICE_LAMBDA_PYTHON"

# botocore's data for the services the functions call; the layer leaves out the other ~440
# (their models and their entries in endpoints.json). A function that creates a client for a
# service left out fails at init with UnknownServiceError; tests/unit/test_build_artifacts.py
# checks every client("...") in the code zip names one of these.
LAYER_BOTOCORE_SERVICES = (
    "dynamodb", "rekognition", "s3", "sns", "sts",  # the handlers' clients
    "sqs",  # sluice.ops (the operations commands ship in the code zip)
    "signin", "sso", "sso-oidc",  # botocore's own credential providers (login, SSO profiles)
)  # fmt: skip

# Where Lambda unpacks the code zip and the layer zip. Each pyc records its source's path
# for tracebacks (the import system corrects it if the files move), so the build records
# where the file will be, not the temporary directory it was compiled in.
CODE_ROOT_ON_LAMBDA = PurePosixPath("/var/task")
LAYER_ROOT_ON_LAMBDA = PurePosixPath("/opt")


@dataclass(frozen=True)
class Target:
    """A Lambda architecture and the names other tools give it."""

    arch: str  # Lambda's name
    machine: str  # the manylinux platform suffix
    elf_machine: int  # ELF e_machine

    @property
    def description(self) -> str:
        major, minor = PYTHON_VERSION
        glibc = ".".join(map(str, RUNTIME_GLIBC))
        return f"python{major}.{minor} on linux {self.arch} (glibc <= {glibc})"


TARGETS = {
    "x86_64": Target("x86_64", "x86_64", 62),
    "arm64": Target("arm64", "aarch64", 183),
}


class BuildError(Exception):
    """The build cannot produce a correct artifact; the message says why."""


def log(message: str) -> None:
    print(f"build_artifacts: {message}", file=sys.stderr, flush=True)


# --- reproducible zips -------------------------------------------------------------------


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """The one timestamp every entry gets: SOURCE_DATE_EPOCH when set, else 1980-01-01."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        epoch = int(raw) if raw else ZIP_EPOCH_FLOOR
    except ValueError as exc:
        raise BuildError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from exc
    # Zip times have two-second resolution and no time zone: use UTC, rounded down.
    t = time.gmtime(max(epoch, ZIP_EPOCH_FLOOR))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec - t.tm_sec % 2)


def _zip_info(
    name: str, mode: int, date_time: tuple[int, int, int, int, int, int]
) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.create_system = 3  # Unix, so that the permission bits below are honoured
    is_dir = name.endswith("/")
    file_type = 0o040000 if is_dir else 0o100000
    info.external_attr = ((file_type | mode) << 16) | (0x10 if is_dir else 0)
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return info


def write_reproducible_zip(entries: Mapping[str, Path], dest: Path) -> None:
    """Write ``entries`` (archive name -> file) to ``dest``, the same bytes for the same input.

    Directory entries are added for every parent, all entries are sorted, and the zip is
    written next to ``dest`` and renamed into place so nobody ever sees half a file.
    """
    date_time = zip_timestamp()
    names = set(entries)
    for name in entries:
        parts = name.split("/")[:-1]
        names.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
        ) as zf:
            for name in sorted(names):
                if name.endswith("/"):
                    zf.writestr(_zip_info(name, DIR_MODE, date_time), b"")
                else:
                    zf.writestr(
                        _zip_info(name, FILE_MODE, date_time),
                        entries[name].read_bytes(),
                        compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=COMPRESS_LEVEL,
                    )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def tree_entries(root: Path, prefix: str) -> dict[str, Path]:
    """Every regular file under ``root`` as ``prefix/<relative posix path>``."""
    entries: dict[str, Path] = {}
    for path in root.rglob("*"):
        if path.is_symlink():
            raise BuildError(f"{path}: symbolic links are not reproducible in a zip; refusing")
        if path.is_file():
            entries[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return entries


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- bytecode for the runtime's Python ----------------------------------------------------

# How long an interpreter may take to say what it is (a shim or a cold disk can be slow).
PROBE_TIMEOUT_SECONDS = 60
_PROBE = "import sys; print(sys.implementation.name, *sys.version_info[:3])"
# Run by the 3.12 interpreter: reads [source, path on Lambda] pairs, writes the pycs where
# that interpreter's import system looks for them, prints the failures as JSON.
_COMPILER = """
import json, py_compile, sys
failures = []
for source, shown in json.load(sys.stdin):
    try:
        py_compile.compile(source, dfile=shown, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError as exc:
        failures.append(f"{shown}: {exc.exc_type_name}: {exc.exc_value}")
json.dump(failures, sys.stdout)
"""


def python_rejection(executable: str) -> str | None:
    """Why ``executable`` cannot compile for the runtime, or None when it is CPython 3.12.

    The interpreter is run, not judged by its name: a pyenv shim called ``python3.12``
    fails when no 3.12 is selected, and a ``python3`` may be any version.
    """
    try:
        result = subprocess.run(
            [executable, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run ({exc})"
    if result.returncode != 0:
        first_line = next(iter(result.stderr.strip().splitlines()), "no message")
        return f"exits with {result.returncode} ({first_line})"
    major, minor = PYTHON_VERSION
    words = result.stdout.split()  # e.g. ["cpython", "3", "12", "1"]
    if words[:3] != ["cpython", str(major), str(minor)]:
        found = f"{words[0]} {'.'.join(words[1:])}" if words else "silent"
        return f"is {found}, not CPython {major}.{minor}"
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    """(3, 12, 7) for .../3.12.7/bin/python3.12 or .../cpython-3.12.7-linux-.../bin/..."""
    match = re.search(r"\d+(?:\.\d+)+", path.parent.parent.name)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def lambda_python_candidates(environ: Mapping[str, str]) -> list[str]:
    """Where a CPython 3.12 usually is, in the order they are tried (newest patch first).

    ``python3.12`` on ``PATH``, then pyenv's and uv's installations (often not on ``PATH``:
    pyenv's shim only runs the versions a ``.python-version`` or ``pyenv global`` selects).
    """
    major, minor = PYTHON_VERSION
    name = f"python{major}.{minor}"
    home = Path(environ.get("HOME") or Path.home())
    pyenv = Path(environ.get("PYENV_ROOT") or home / ".pyenv") / "versions"
    uv_data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "uv" / "python"
    uv = Path(environ.get("UV_PYTHON_INSTALL_DIR") or uv_data)
    on_path = shutil.which(name, path=environ.get("PATH", os.defpath))
    installed = [
        *sorted(pyenv.glob(f"{major}.{minor}.*/bin/{name}"), key=_version_key, reverse=True),
        *sorted(uv.glob(f"cpython-{major}.{minor}.*/bin/{name}"), key=_version_key, reverse=True),
    ]
    return list(dict.fromkeys([*([on_path] if on_path else []), *map(str, installed)]))


def find_lambda_python(environ: Mapping[str, str] = os.environ) -> str:
    """The CPython 3.12 that compiles the bytecode; a BuildError that says how to get one."""
    major, minor = PYTHON_VERSION
    override = environ.get(LAMBDA_PYTHON_ENV, "").strip()
    if override:
        reason = python_rejection(override)
        if reason is not None:
            raise BuildError(f"{LAMBDA_PYTHON_ENV}={override} {reason}")
        return override
    tried: list[str] = []
    for candidate in lambda_python_candidates(environ):
        reason = python_rejection(candidate)
        if reason is None:
            return candidate
        tried.append(f"{candidate} {reason}")
    looked = "; ".join(tried) or "none on PATH, in pyenv or in uv"
    raise BuildError(
        f"no CPython {major}.{minor} found to compile the bytecode that Lambda's "
        f"python{major}.{minor} runtime loads ({looked})."
        f" Install one (`uv python install {major}.{minor}`, `pyenv install {major}.{minor}`"
        f" or your system's python{major}.{minor} package) or set {LAMBDA_PYTHON_ENV} to its path."
    )


def compile_bytecode(python: str, root: Path, root_on_lambda: PurePosixPath) -> int:
    """Compile every ``.py`` under ``root`` into ``__pycache__`` beside it; the count.

    ``python`` (CPython 3.12) names the files (``<module>.cpython-312.pyc``) and writes
    unchecked-hash pycs that record ``root_on_lambda/<relative path>`` as their source. A
    file it cannot compile fails the build: the runtime could not import it either.
    """
    sources = sorted(path for path in root.rglob("*.py") if path.is_file())
    jobs = [
        [str(path), str(root_on_lambda / path.relative_to(root).as_posix())] for path in sources
    ]
    result = subprocess.run(
        [python, "-I", "-c", _COMPILER],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"{python} could not compile bytecode ({result.returncode}):\n{result.stderr}"
        )
    failures: list[str] = json.loads(result.stdout)
    if failures:
        raise BuildError(f"{python} cannot compile:\n  " + "\n  ".join(failures))
    return len(sources)


# --- function code -----------------------------------------------------------------------


def is_package_file(relative: Path) -> bool:
    """The files the ``sluice`` package ships: modules and package data, no caches."""
    if "__pycache__" in relative.parts or any(p.startswith(".") for p in relative.parts):
        return False
    return relative.suffix in {".py", ".json"} or relative.name == "py.typed"


DEVELOPER_ONLY = ("local", "cli.py")
"""Parts of the package that never run in Lambda: the local stack and runner
(``sluice.local``) and the ``sluice`` command line. Left out of the function zip, they
cost neither its size nor a cold start's directory scan; the test suite checks that no
module in the zip imports them."""


def is_function_file(relative: Path) -> bool:
    """A package file the Lambda functions ship (not developer-only)."""
    return is_package_file(relative) and relative.parts[0] not in DEVELOPER_ONLY


def code_entries(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    if not (package_dir / "__init__.py").is_file():
        raise BuildError(f"{package_dir} is not the sluice package (no __init__.py)")
    return {
        f"sluice/{relative.as_posix()}": path
        for path in package_dir.rglob("*")
        if path.is_file() and is_function_file(relative := path.relative_to(package_dir))
    }


def build_code_zip(
    out_dir: Path, package_dir: Path = PACKAGE_DIR, python: str | None = None
) -> Path:
    """The package and its 3.12 bytecode, compiled in a copy (the source tree stays clean)."""
    python = python or find_lambda_python()
    with tempfile.TemporaryDirectory(prefix="sluice-code-") as staging:
        root = Path(staging)
        for name, path in code_entries(package_dir).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, root / name)
        compile_bytecode(python, root, CODE_ROOT_ON_LAMBDA)
        dest = out_dir / CODE_ZIP
        write_reproducible_zip(tree_entries(root / "sluice", "sluice"), dest)
    return dest


# --- wheel tags --------------------------------------------------------------------------

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _platform_rejection(platform: str, target: Target) -> str | None:
    if platform == "any":
        return None
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if match:
        glibc, machine = (int(match[1]), int(match[2])), match[3]
    else:
        legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", platform)
        if not legacy:
            return f"platform {platform} is not a manylinux platform (Lambda needs manylinux)"
        glibc, machine = _LEGACY_MANYLINUX[legacy[1]], legacy[2]
    if machine != target.machine:
        return f"platform {platform} is for {machine}, not {target.machine}"
    if glibc > RUNTIME_GLIBC:
        needed, runtime = ".".join(map(str, glibc)), ".".join(map(str, RUNTIME_GLIBC))
        return f"platform {platform} needs glibc {needed}, the runtime has {runtime}"
    return None


def _python_rejection(interpreter: str, abi: str) -> str | None:
    major, minor = PYTHON_VERSION
    version = re.fullmatch(r"(py|cp)(\d)(\d*)", interpreter)
    if not version:
        return f"interpreter {interpreter} is not CPython"
    kind, want_major = version[1], int(version[2])
    want_minor = int(version[3]) if version[3] else None
    if want_major != major:
        return f"interpreter {interpreter} is not Python {major}"
    if abi == "none":
        # py3 / py3X wheels run on any later 3.x; a cp3X wheel without ABI is still 3.X only.
        if kind == "py" and (want_minor is None or want_minor <= minor):
            return None
        if kind == "cp" and want_minor == minor:
            return None
        return f"{interpreter}-{abi} does not run on Python {major}.{minor}"
    if abi == "abi3":
        # The stable ABI: built for 3.X, runs on every later CPython 3.
        if kind == "cp" and want_minor is not None and want_minor <= minor:
            return None
        return f"{interpreter}-abi3 does not run on CPython {major}.{minor}"
    if abi == f"cp{major}{minor}" and interpreter == abi:
        return None
    return f"ABI {abi} is not CPython {major}.{minor}'s (cp{major}{minor})"


def tag_rejection(tag: str, target: Target) -> str | None:
    """Why the wheel tag ``tag`` cannot run on ``target``, or None when it can.

    A compressed tag (``py2.py3-none-any``) runs when any of its expansions does.
    """
    parts = tag.strip().split("-")
    if len(parts) != 3 or not all(parts):
        return f"malformed wheel tag {tag!r}"
    reasons: list[str] = []
    for interpreter in parts[0].split("."):
        for abi in parts[1].split("."):
            for platform in parts[2].split("."):
                reason = _python_rejection(interpreter, abi)
                reason = reason or _platform_rejection(platform, target)
                if reason is None:
                    return None
                reasons.append(reason)
    return "; ".join(dict.fromkeys(reasons))


def wheel_tags(wheel_metadata: str) -> list[str]:
    """The ``Tag:`` values of a ``*.dist-info/WHEEL`` file."""
    return [
        line.split(":", 1)[1].strip()
        for line in wheel_metadata.splitlines()
        if line.lower().startswith("tag:")
    ]


def check_wheel_tags(site_dir: Path, target: Target) -> list[str]:
    """One problem per installed distribution that no tag of its wheel allows on ``target``.

    A wheel's tags are alternatives (pip installs it when any one matches), so a wheel is
    acceptable when at least one of its tags is.
    """
    problems: list[str] = []
    dist_infos = sorted(site_dir.glob("*.dist-info"))
    if not dist_infos:
        problems.append(f"{site_dir}: no *.dist-info found; nothing was installed")
    for dist_info in dist_infos:
        wheel_file = dist_info / "WHEEL"
        if not wheel_file.is_file():
            problems.append(f"{dist_info.name}: no WHEEL file, so not installed from a wheel")
            continue
        tags = wheel_tags(wheel_file.read_text(encoding="utf-8"))
        if not tags:
            problems.append(f"{dist_info.name}: WHEEL has no Tag lines")
            continue
        rejections = [(tag, tag_rejection(tag, target)) for tag in tags]
        if all(reason is not None for _, reason in rejections):
            detail = "; ".join(f"{tag}: {reason}" for tag, reason in rejections)
            problems.append(f"{dist_info.name}: no tag runs on {target.description} ({detail})")
    return problems


# --- native code -------------------------------------------------------------------------


def elf_machine(header: bytes) -> int | None:
    """The e_machine of an ELF header, or None when ``header`` is not ELF."""
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    if header[5] == 1:
        return int.from_bytes(header[18:20], "little")
    if header[5] == 2:
        return int.from_bytes(header[18:20], "big")
    return None


def check_elf_machines(site_dir: Path, target: Target) -> list[str]:
    """One problem per ELF file (or ``.so`` file that is not ELF) not built for ``target``."""
    problems: list[str] = []
    for path in sorted(p for p in site_dir.rglob("*") if p.is_file()):
        with path.open("rb") as f:
            header = f.read(20)
        machine = elf_machine(header)
        relative = path.relative_to(site_dir).as_posix()
        if machine is None:
            if re.search(r"\.so(\.|$)", path.name):
                problems.append(f"{relative}: a shared library that is not an ELF file")
        elif header[4] != 2:
            problems.append(f"{relative}: 32-bit ELF, Lambda runs 64-bit code")
        elif machine != target.elf_machine:
            problems.append(
                f"{relative}: built for ELF machine {machine}, "
                f"{target.arch} needs {target.elf_machine}"
            )
    return problems


# --- layer -------------------------------------------------------------------------------


def pip_target_args(target: Target) -> list[str]:
    """pip options that select wheels for the Lambda runtime instead of this machine.

    pip does not widen ``manylinux_2_X`` to older glibc versions by itself, so every
    version the runtime can load is listed, newest first (pip prefers earlier tags).
    """
    major, minor = PYTHON_VERSION
    args: list[str] = []
    for glibc_minor in range(RUNTIME_GLIBC[1], 16, -1):
        args += ["--platform", f"manylinux_2_{glibc_minor}_{target.machine}"]
    # Expands to manylinux2010 and manylinux1 where those exist.
    args += ["--platform", f"manylinux2014_{target.machine}"]
    args += [
        "--implementation", "cp",
        "--python-version", f"{major}.{minor}",
        "--abi", f"cp{major}{minor}",
        "--only-binary=:all:",
    ]  # fmt: skip
    return args


_PIN = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.!+_-]+)((?:\s+--hash=sha256:[0-9a-f]{64})*)"
)


def pinned_requirements(text: str, *, hashed: bool = True) -> dict[str, str]:
    """Normalised name -> version of every pin; anything else is refused.

    A pin is ``name==version``, and with ``hashed`` (the layer's requirements.txt, which
    pip installs with ``--require-hashes``) it must carry at least one ``--hash=sha256:``.
    Backslash continuations join a pin's lines; ``#`` starts a comment.
    """
    pins: dict[str, str] = {}
    logical = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for number, raw in enumerate(logical.replace("\\\n", " ").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _PIN.fullmatch(line)
        if not match:
            raise BuildError(f"requirements entry {number}: {line[:80]!r} is not 'name==version'")
        if hashed and not match[3]:
            raise BuildError(f"requirements entry {number}: {match[1]}=={match[2]} has no hash")
        pins[normalise_name(match[1])] = match[2]
    if not pins:
        raise BuildError("the requirements pin nothing")
    return pins


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(site_dir: Path) -> dict[str, str]:
    """Normalised name -> version of each ``*.dist-info`` (its METADATA, not the dir name)."""
    found: dict[str, str] = {}
    for dist_info in site_dir.glob("*.dist-info"):
        fields: dict[str, str] = {}
        for line in (dist_info / "METADATA").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                break  # the body (long description) starts after the first blank line
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        found[normalise_name(fields["name"])] = fields["version"]
    return found


def check_pins(site_dir: Path, pins: Mapping[str, str]) -> list[str]:
    problems = []
    for name, version in sorted(installed_distributions(site_dir).items()):
        if name not in pins:
            problems.append(f"{name}=={version} is installed but not pinned in the requirements")
        elif pins[name] != version:
            problems.append(f"{name}: pinned {pins[name]}, installed {version}")
    return problems


def cache_key(requirements: bytes, target: Target) -> str:
    digest = hashlib.sha256()
    for part in (CACHE_FORMAT.encode(), requirements, *map(str.encode, pip_target_args(target))):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:16]


def _run_pip(args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"pip failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def download_wheels(requirements: Path, target: Target, cache_root: Path) -> Path:
    """The directory of wheels for ``requirements`` on ``target``, downloading only once."""
    key = cache_key(requirements.read_bytes(), target)
    wheel_dir = cache_root / f"wheels-{target.arch}-{key}"
    if wheel_dir.is_dir():
        log(f"{target.arch}: wheels from cache {wheel_dir}")
        return wheel_dir
    cache_root.mkdir(parents=True, exist_ok=True)
    for stale in cache_root.glob(f"wheels-{target.arch}-*"):
        if stale != wheel_dir:  # a concurrent build may have just filled it
            shutil.rmtree(stale, ignore_errors=True)
    log(f"{target.arch}: downloading wheels for {target.description}")
    partial = Path(tempfile.mkdtemp(prefix=f".wheels-{target.arch}-", dir=cache_root))
    try:
        _run_pip(["download", "--quiet", "--dest", str(partial), *pip_target_args(target),
                  "--require-hashes", "--requirement", str(requirements)])  # fmt: skip
        try:
            partial.rename(wheel_dir)  # only a complete download becomes the cache entry
        except OSError:
            if not wheel_dir.is_dir():  # else a concurrent build filled it first: use that
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return wheel_dir


def hermetic_pip_env() -> dict[str, str]:
    """The environment without pip configuration, so only the cached wheels are seen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def install_layer_tree(requirements: Path, target: Target, wheel_dir: Path, site_dir: Path) -> None:
    _run_pip(
        ["install", "--quiet", "--no-index", "--find-links", str(wheel_dir),
         "--target", str(site_dir), "--no-compile", *pip_target_args(target),
         "--require-hashes", "--requirement", str(requirements)],
        env=hermetic_pip_env(),
    )  # fmt: skip


def prune_install_residue(site_dir: Path) -> None:
    """Drop what pip writes that is useless in Lambda and differs between build machines.

    ``bin/`` holds console scripts with this machine's interpreter path in their shebang;
    ``RECORD`` lists those scripts' hashes; ``direct_url.json`` names the local wheel path.
    The rest of each ``*.dist-info`` (METADATA, WHEEL, licences, entry points) stays, so
    ``importlib.metadata`` still finds versions and entry points.
    """
    shutil.rmtree(site_dir / "bin", ignore_errors=True)
    for residue in [
        *site_dir.rglob("__pycache__"),
        *site_dir.rglob("*.pyc"),
        *site_dir.glob("*.dist-info/RECORD"),
        *site_dir.glob("*.dist-info/direct_url.json"),
    ]:
        if residue.is_dir():
            shutil.rmtree(residue)
        else:
            residue.unlink(missing_ok=True)


def prune_botocore_data(site_dir: Path, services: Iterable[str] = LAYER_BOTOCORE_SERVICES) -> int:
    """Keep botocore's data for ``services`` only; returns how many service folders went.

    Why: every first client of a cold start lists every service folder (``Loader.
    list_available_services``, ~900 directory reads for ~440 services) and parses all of
    ``endpoints.json`` (1.25 MB, every service in every partition), ~35 ms of CPU together on
    a 280 ms init; the folders are also 26 of the layer's 58 MB unzipped. ``endpoints.json``
    keeps every partition's own data and the kept services' entries as they were. Every JSON
    file left is then rewritten minified (:func:`minify_json`) with ``json.dumps``: the same
    data, and the same input gives the same bytes, so the layer stays reproducible.
    """
    keep = set(services)
    data = site_dir / "botocore" / "data"
    missing = sorted(name for name in keep if not (data / name).is_dir())
    if missing:
        raise BuildError(f"botocore has no data for {', '.join(missing)}: not a service name?")
    dropped = [
        entry for entry in sorted(data.iterdir()) if entry.is_dir() and entry.name not in keep
    ]
    for entry in dropped:
        shutil.rmtree(entry)
    endpoints = data / "endpoints.json"
    document = json.loads(endpoints.read_text(encoding="utf-8"))
    for partition in document["partitions"]:
        partition["services"] = {
            name: entry for name, entry in partition["services"].items() if name in keep
        }
    endpoints.write_text(json.dumps(document), encoding="utf-8")
    for path in sorted(data.rglob("*.json*")):
        minify_json(path)
    return len(dropped)


def minify_json(path: Path) -> None:
    """Rewrite a botocore ``.json`` or ``.json.gz`` as the same data in minified ``.json``.

    botocore's loader reads ``<name>.json``, else ``<name>.json.gz``, and parses the whole
    file at the first client of each service: the S3 model is 1.4 MB of indented JSON, its
    endpoint rules 0.9 MB. Without the indentation and the gzip layer, the first S3, DynamoDB
    and STS clients parse in 14 ms instead of 21 (the layer zip deflates the files anyway).
    """
    plain = path.with_name(path.name.removesuffix(".gz"))
    if path.suffix == ".gz" and plain.exists():  # botocore reads the .json, never this
        path.unlink()
        return
    text = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    minified = json.dumps(
        json.loads(text.decode("utf-8")), ensure_ascii=False, separators=(",", ":")
    )
    path.unlink()
    plain.write_text(minified, encoding="utf-8")


def build_layer_zip(
    out_dir: Path,
    target: Target,
    requirements: Path = REQUIREMENTS,
    cache_root: Path | None = None,
    python: str | None = None,
) -> Path:
    python = python or find_lambda_python()
    pins = pinned_requirements(requirements.read_text(encoding="utf-8"))
    wheel_dir = download_wheels(requirements, target, cache_root or out_dir / "cache")
    with tempfile.TemporaryDirectory(prefix=f"sluice-layer-{target.arch}-") as staging:
        site_dir = Path(staging) / "python"
        install_layer_tree(requirements, target, wheel_dir, site_dir)
        prune_install_residue(site_dir)
        dropped = prune_botocore_data(site_dir)
        log(f"{target.arch}: botocore data of {dropped} services left out")
        compiled = compile_bytecode(python, site_dir, LAYER_ROOT_ON_LAMBDA / site_dir.name)
        log(f"{target.arch}: {compiled} modules compiled to bytecode")
        problems = [
            *check_wheel_tags(site_dir, target),
            *check_elf_machines(site_dir, target),
            *check_pins(site_dir, pins),
        ]
        if problems:
            raise BuildError(
                f"the {target.arch} layer is not fit for {target.description}:\n  "
                + "\n  ".join(problems)
            )
        entries = tree_entries(site_dir, "python")
        unzipped = sum(path.stat().st_size for path in entries.values())
        if unzipped > LAMBDA_UNZIPPED_LIMIT:
            raise BuildError(
                f"the {target.arch} layer unzips to {unzipped / 1e6:.1f} MB; Lambda allows "
                f"{LAMBDA_UNZIPPED_LIMIT / 1e6:.0f} MB for code and layers together"
            )
        log(f"{target.arch}: {len(entries)} files, {unzipped / 1e6:.1f} MB unzipped")
        dest = out_dir / LAYER_ZIP.format(arch=target.arch)
        write_reproducible_zip(entries, dest)
    return dest


# --- command line ------------------------------------------------------------------------


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")


def report(path: Path) -> str:
    size = path.stat().st_size
    return f"{path}\t{human_size(size)}\t{size}\tsha256={sha256_file(path)}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build_artifacts.py",
        description="Build the sluice function zip and dependency layer zips reproducibly.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--arch",
        action="extend",
        nargs="+",
        choices=sorted(TARGETS),
        help="layer architecture(s): --arch x86_64 arm64 or repeated (default: x86_64)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build", help="output directory")
    parser.add_argument(
        "--requirements", type=Path, default=REQUIREMENTS, help="pinned layer requirements"
    )
    parser.add_argument("--cache-dir", type=Path, help="wheel cache (default: <out>/cache)")
    parser.add_argument(
        "--code-only", action="store_true", help="build only the function zip (no layer)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    built: list[Path] = []
    try:
        python = find_lambda_python()
        log(f"bytecode: compiled by {python}")
        built.append(build_code_zip(args.out, python=python))
        if not args.code_only:
            arches: Iterable[str] = dict.fromkeys(args.arch or ["x86_64"])
            for arch in arches:
                built.append(
                    build_layer_zip(
                        args.out, TARGETS[arch], args.requirements, args.cache_dir, python
                    )
                )
    except BuildError as exc:
        print(f"build_artifacts: error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(report(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
