"""scripts/build_artifacts.py: reproducible zips, the wheel-tag and ELF checks, a real layer.

Everything here is offline except ``test_real_x86_64_layer_build_from_pypi``, which
downloads the layer's wheels once into build/cache/ (later runs reuse the cache). The
builds compile bytecode with a CPython 3.12, which the build finds as it would on any
machine (``SLUICE_LAMBDA_PYTHON``, ``python3.12`` on PATH, pyenv, uv).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "build_artifacts.py"
PACKAGE_DIR = REPO_ROOT / "src" / "sluice"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_artifacts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


ba = _load_script()
X86 = ba.TARGETS["x86_64"]
ARM = ba.TARGETS["arm64"]
# importlib.util.MAGIC_NUMBER of every CPython 3.12 (3531, stable across 3.12.x): the
# header of a pyc that the Lambda runtime loads. Written out so that a build that compiled
# with the wrong interpreter cannot agree with itself.
MAGIC_312 = (3531).to_bytes(2, "little") + b"\r\n"
# PEP 552 flags word: bit 0 hash-based, bit 1 check_source. Unchecked-hash is 0b01.
UNCHECKED_HASH_FLAGS = 0b01


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pyc_name(source: str) -> str:
    folder, _, module = source.rpartition("/")
    return f"{folder}/__pycache__/{module.removesuffix('.py')}.cpython-312.pyc"


# Run by CPython 3.12 over a zip: each pyc's hash is its source's, and it names the path the
# source has on Lambda (argv[2] is where the zip is unpacked) for tracebacks.
_PYC_AUDIT = """
import importlib.util, json, marshal, sys, zipfile
problems = []
with zipfile.ZipFile(sys.argv[1]) as zf:
    for name in zf.namelist():
        if not name.endswith(".py"):
            continue
        pyc = zf.read(importlib.util.cache_from_source(name))
        if pyc[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"{name}: magic {pyc[:4]!r}")
        if pyc[8:16] != importlib.util.source_hash(zf.read(name)):
            problems.append(f"{name}: the pyc is not this source's")
        if marshal.loads(pyc[16:]).co_filename != f"{sys.argv[2]}/{name}":
            problems.append(f"{name}: the pyc names {marshal.loads(pyc[16:]).co_filename}")
print(json.dumps(problems))
"""


def _bytecode_problems(archive: Path, root_on_lambda: str) -> list[str]:
    """What is wrong with the zip's bytecode: every .py needs its 3.12 unchecked-hash pyc."""
    with zipfile.ZipFile(archive) as zf:
        names = [name for name in zf.namelist() if not name.endswith("/")]
        pycs = {name: zf.read(name) for name in names if name.endswith(".pyc")}
    sources = [name for name in names if name.endswith(".py")]
    problems = [f"{name}: no pyc" for name in sources if _pyc_name(name) not in pycs]
    problems += [f"{name}: no source" for name in pycs.keys() - set(map(_pyc_name, sources))]
    for name, data in pycs.items():
        if data[:4] != MAGIC_312:
            problems.append(f"{name}: magic {data[:4]!r} is not CPython 3.12's")
        if int.from_bytes(data[4:8], "little") != UNCHECKED_HASH_FLAGS:
            problems.append(f"{name}: flags {data[4:8]!r}, not unchecked-hash")
    audit = subprocess.run(
        [ba.find_lambda_python(), "-I", "-c", _PYC_AUDIT, str(archive), root_on_lambda],
        capture_output=True,
        text=True,
        check=True,
    )
    return problems + json.loads(audit.stdout)


# --- function code zip -------------------------------------------------------------------


def test_code_zip_is_byte_identical_when_built_twice(tmp_path: Path) -> None:
    first = ba.build_code_zip(tmp_path / "one")
    second = ba.build_code_zip(tmp_path / "two")
    assert first.name == second.name == "sluice-code.zip"
    assert first.read_bytes() == second.read_bytes()


def test_code_zip_ignores_file_times_and_permissions(tmp_path: Path) -> None:
    package = tmp_path / "src" / "sluice"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = ba.build_code_zip(tmp_path / "before", package).read_bytes()
    for path in package.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        path.chmod(0o600)
    after = ba.build_code_zip(tmp_path / "after", package).read_bytes()
    assert before == after


def test_code_zip_holds_exactly_the_package(tmp_path: Path) -> None:
    package = tmp_path / "src" / "sluice"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    # What a working tree accumulates and a function must never ship.
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "config.cpython-312.pyc").write_bytes(b"\0")
    (package / "notes.txt").write_text("scratch")
    (package / ".DS_Store").write_bytes(b"\0")
    (package / "config.py~").write_text("backup")
    (package / "schemas_extra").mkdir()
    (package / "schemas_extra" / "extra.json").write_text("{}")

    with zipfile.ZipFile(ba.build_code_zip(tmp_path / "out", package)) as zf:
        files = {name for name in zf.namelist() if not name.endswith("/")}
        shipped_pyc = zf.read("sluice/__pycache__/config.cpython-312.pyc")

    package_files = {
        "sluice/" + path.relative_to(PACKAGE_DIR).as_posix()
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and (path.suffix in {".py", ".json"} or path.name == "py.typed")
        and path.relative_to(PACKAGE_DIR).parts[0] not in ("local", "cli.py")
    } | {"sluice/schemas_extra/extra.json"}
    bytecode = {_pyc_name(name) for name in package_files if name.endswith(".py")}
    assert files == package_files | bytecode
    assert shipped_pyc.startswith(MAGIC_312)  # compiled by the build, not the stale one
    assert "sluice/__init__.py" in files
    assert "sluice/py.typed" in files
    assert all(name.startswith("sluice/") for name in files)


def test_code_zip_entries_have_fixed_times_and_modes(tmp_path: Path) -> None:
    with zipfile.ZipFile(ba.build_code_zip(tmp_path)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        mode = info.external_attr >> 16
        if info.filename.endswith("/"):
            assert mode == 0o040755, info.filename
        else:
            assert mode == 0o100644, info.filename
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_code_zip_honours_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")  # 2023-11-14T22:13:21Z
    with zipfile.ZipFile(ba.build_code_zip(tmp_path)) as zf:
        times = {info.date_time for info in zf.infolist()}
    assert times == {(2023, 11, 14, 22, 13, 20)}  # zip times have two-second resolution


def test_code_zip_is_small_and_importable(tmp_path: Path) -> None:
    code_zip = ba.build_code_zip(tmp_path)
    with zipfile.ZipFile(code_zip) as zf:
        infos = zf.infolist()
    # sluice alone: a dependency that slipped in would break the sources' budget. The
    # bytecode beside them compresses to about twice their size (pycs compress less than
    # text), so the whole zip has its own bound (sizes: docs/benchmarks.md, cold start).
    # The developer tools (sluice.local, the CLI) stay out of it.
    source_bytes = sum(i.compress_size for i in infos if not i.filename.endswith(".pyc"))
    # Issue 11's handler skeleton moved each handler's logic into modules of its own: more
    # files compress less well together.
    # 181 KB now (the doubles path and the gate: +9 KB; issue 11's owners; issue 16's
    # init_phase and file_formats: +1.5 KB)
    assert source_bytes < 186 * 1024
    assert code_zip.stat().st_size < 565 * 1024  # 560 KB now (tools took 453 KB to 621)
    # Lambda puts the zip's root on sys.path: `sluice.handlers.<name>.handler` must resolve.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sluice, sluice.handlers; "
        "assert sluice.__file__.startswith(sys.argv[1]), sluice.__file__"
    )
    subprocess.run([sys.executable, "-I", "-c", probe, str(code_zip)], check=True)


def test_code_zip_carries_unchecked_hash_bytecode_of_cpython_312_for_every_module(
    tmp_path: Path,
) -> None:
    code_zip = ba.build_code_zip(tmp_path)
    assert _bytecode_problems(code_zip, "/var/task") == []
    with zipfile.ZipFile(code_zip) as zf:
        assert "sluice/handlers/__pycache__/transform.cpython-312.pyc" in zf.namelist()
        assert "sluice/handlers/transform.py" in zf.namelist()  # sources stay, for tracebacks


def test_code_zip_bytecode_is_what_cpython_312_imports_whatever_the_source_says(
    tmp_path: Path,
) -> None:
    # Unchecked-hash pycs are loaded without looking at the source or its mtime: the
    # import below runs the shipped bytecode, not the edited (newer) source.
    with zipfile.ZipFile(ba.build_code_zip(tmp_path / "out")) as zf:
        zf.extractall(tmp_path / "task")
    (tmp_path / "task" / "sluice" / "keys.py").write_text('raise AssertionError("compiled")\n')
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import sluice.keys"
    subprocess.run(
        [ba.find_lambda_python(), "-I", "-S", "-B", "-c", probe, str(tmp_path / "task")],
        check=True,
    )


def test_cli_code_only_builds_no_layer(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--code-only", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sluice-code.zip"]
    code_zip = tmp_path / "sluice-code.zip"
    assert f"sha256={_digest(code_zip)}" in result.stdout
    assert str(code_zip.stat().st_size) in result.stdout


# --- the CPython 3.12 that compiles ------------------------------------------------------


def _shell_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _bare_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A PATH, HOME (so pyenv and uv) with no CPython 3.12 but a pyenv-like shim that refuses.

    That is this development machine: pyenv's ``python3.12`` shim is on PATH but fails
    because ``pyenv global`` selects 3.11; the 3.12 itself is under ~/.pyenv/versions.
    """
    refusing = "echo 'pyenv: python3.12: command not found' >&2; exit 127"
    _shell_script(tmp_path / "bin" / "python3.12", refusing)
    return {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home"), **extra}


def _install_pyenv_312(home: Path, version: str) -> Path:
    """A pyenv-style installation of ``version`` that is this machine's real CPython 3.12."""
    executable = home / ".pyenv" / "versions" / version / "bin" / "python3.12"
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.symlink_to(Path(ba.find_lambda_python()).resolve())
    return executable


def test_lambda_python_candidates_are_path_then_pyenv_then_uv_newest_first(
    tmp_path: Path,
) -> None:
    env = _bare_environ(tmp_path)
    home = Path(env["HOME"])
    for folder in (
        ".pyenv/versions/3.12.9",
        ".pyenv/versions/3.12.10",
        ".pyenv/versions/3.11.7",
        ".local/share/uv/python/cpython-3.12.8-linux-x86_64-gnu",
    ):
        _shell_script(home / folder / "bin" / "python3.12", "exit 1")
    assert ba.lambda_python_candidates(env) == [
        str(tmp_path / "bin" / "python3.12"),
        str(home / ".pyenv/versions/3.12.10/bin/python3.12"),  # 10 > 9: numbers, not text
        str(home / ".pyenv/versions/3.12.9/bin/python3.12"),
        str(home / ".local/share/uv/python/cpython-3.12.8-linux-x86_64-gnu/bin/python3.12"),
    ]


def test_lambda_python_is_found_in_pyenv_when_the_shim_on_path_refuses(tmp_path: Path) -> None:
    env = _bare_environ(tmp_path)
    expected = _install_pyenv_312(Path(env["HOME"]), "3.12.1")
    assert ba.find_lambda_python(env) == str(expected)


def test_without_cpython_312_the_build_fails_and_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ba.BuildError) as raised:
        ba.find_lambda_python(_bare_environ(tmp_path))
    message = str(raised.value)
    assert "no CPython 3.12 found" in message
    assert "python3.12 exits with 127 (pyenv: python3.12: command not found)" in message
    assert "uv python install 3.12" in message and "pyenv install 3.12" in message
    assert "set SLUICE_LAMBDA_PYTHON to its path" in message


def test_lambda_python_override_wins_and_must_be_cpython_312(tmp_path: Path) -> None:
    env = _bare_environ(tmp_path)
    _install_pyenv_312(Path(env["HOME"]), "3.12.1")  # never a silent fallback from a bad one
    real = ba.find_lambda_python()
    assert ba.find_lambda_python({**env, "SLUICE_LAMBDA_PYTHON": real}) == real

    older = _shell_script(tmp_path / "py311", "echo cpython 3 11 7")
    with pytest.raises(ba.BuildError, match=r"=\S+py311 is cpython 3\.11\.7, not CPython 3\.12"):
        ba.find_lambda_python({**env, "SLUICE_LAMBDA_PYTHON": str(older)})
    with pytest.raises(ba.BuildError, match=r"=/nowhere/python3\.12 does not run"):
        ba.find_lambda_python({**env, "SLUICE_LAMBDA_PYTHON": "/nowhere/python3.12"})


def test_cli_without_cpython_312_exits_1_and_writes_no_zip(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--code-only", "--out", str(tmp_path / "out")],
        env=_bare_environ(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "build_artifacts: error: no CPython 3.12 found" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out" / "sluice-code.zip").exists()


# --- wheel tags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "target"),
    [
        ("py3-none-any", X86),
        ("py2.py3-none-any", ARM),
        ("py37-none-any", X86),
        ("cp312-cp312-manylinux_2_17_x86_64", X86),
        ("cp312-cp312-manylinux2014_x86_64", X86),
        ("cp312-cp312-manylinux1_x86_64", X86),
        ("cp312-cp312-manylinux_2_28_aarch64", ARM),
        ("cp312-cp312-manylinux2014_aarch64", ARM),
        ("cp312-cp312-manylinux_2_34_x86_64", X86),
        ("cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64", X86),
        ("cp312-none-any", X86),
    ],
)
def test_tag_checker_accepts_tags_the_runtime_loads(tag: str, target: object) -> None:
    assert ba.tag_rejection(tag, target) is None


@pytest.mark.parametrize(
    ("tag", "target", "reason"),
    [
        ("cp312-cp312-macosx_11_0_arm64", ARM, "not a manylinux platform"),
        ("cp312-cp312-win_amd64", X86, "not a manylinux platform"),
        ("cp312-cp312-musllinux_1_2_x86_64", X86, "not a manylinux platform"),
        ("cp312-cp312-linux_x86_64", X86, "not a manylinux platform"),
        ("cp312-cp312-manylinux_2_17_x86_64", ARM, "for x86_64, not aarch64"),
        ("cp312-cp312-manylinux2014_aarch64", X86, "for aarch64, not x86_64"),
        ("cp312-cp312-manylinux_2_35_x86_64", X86, "needs glibc 2.35, the runtime has 2.34"),
        ("cp311-cp311-manylinux_2_17_x86_64", X86, "not CPython 3.12"),
        ("cp313-abi3-manylinux_2_17_x86_64", X86, "does not run on CPython 3.12"),
        ("py2-none-any", X86, "not Python 3"),
        ("pp310-pypy310_pp73-manylinux_2_17_x86_64", X86, "not CPython"),
        ("cp312-cp312", X86, "malformed"),
    ],
)
def test_tag_checker_rejects_tags_the_runtime_cannot_load(
    tag: str, target: object, reason: str
) -> None:
    rejection = ba.tag_rejection(tag, target)
    assert rejection is not None
    assert reason in rejection


def _fake_dist(site: Path, name: str, *tags: str) -> None:
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    lines = ["Wheel-Version: 1.0", "Generator: test", "Root-Is-Purelib: false"]
    lines += [f"Tag: {tag}" for tag in tags]
    (dist_info / "WHEEL").write_text("\n".join(lines) + "\n")
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")


def test_check_wheel_tags_names_each_unfit_distribution(tmp_path: Path) -> None:
    _fake_dist(tmp_path, "pure", "py3-none-any")
    _fake_dist(
        tmp_path,
        "native_ok",
        "cp312-cp312-manylinux_2_17_aarch64",
        "cp312-cp312-manylinux2014_aarch64",
    )
    _fake_dist(tmp_path, "mac_only", "cp312-cp312-macosx_11_0_arm64")
    _fake_dist(tmp_path, "wrong_arch", "cp312-cp312-manylinux_2_17_x86_64")
    _fake_dist(tmp_path, "too_new", "cp312-cp312-manylinux_2_39_aarch64")

    problems = ba.check_wheel_tags(tmp_path, ARM)

    assert len(problems) == 3
    assert problems[0].startswith("mac_only-1.0.dist-info: no tag runs on python3.12")
    assert problems[1].startswith("too_new-1.0.dist-info:") and "glibc 2.39" in problems[1]
    assert problems[2].startswith("wrong_arch-1.0.dist-info:") and "x86_64" in problems[2]


def test_check_wheel_tags_refuses_installs_without_wheel_metadata(tmp_path: Path) -> None:
    (tmp_path / "legacy-1.0.dist-info").mkdir()
    problems = ba.check_wheel_tags(tmp_path, X86)
    assert problems == ["legacy-1.0.dist-info: no WHEEL file, so not installed from a wheel"]
    assert ba.check_wheel_tags(tmp_path / "legacy-1.0.dist-info", X86)  # nothing installed


# --- ELF machine -------------------------------------------------------------------------


def _elf_header(machine: int, *, elf_class: int = 2, little_endian: bool = True) -> bytes:
    order = "little" if little_endian else "big"
    ident = b"\x7fELF" + bytes([elf_class, 1 if little_endian else 2, 1]) + bytes(9)
    return (
        ident + (3).to_bytes(2, order) + machine.to_bytes(2, order) + (1).to_bytes(4, order)
    ) + bytes(40)


def test_elf_machine_reads_e_machine_in_either_byte_order() -> None:
    assert ba.elf_machine(_elf_header(62)) == 62
    assert ba.elf_machine(_elf_header(183)) == 183
    assert ba.elf_machine(_elf_header(183, little_endian=False)) == 183
    assert ba.elf_machine(b"MZ\x90\x00" + bytes(60)) is None  # a Windows DLL
    assert ba.elf_machine(b"\x7fELF") is None  # truncated


def test_check_elf_machines_flags_foreign_native_code(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "good.cpython-312-aarch64-linux-gnu.so").write_bytes(_elf_header(183))
    (pkg / "libgood.so.1.2").write_bytes(_elf_header(183))
    (pkg / "bad.cpython-312-x86_64-linux-gnu.so").write_bytes(_elf_header(62))
    (pkg / "helper").write_bytes(_elf_header(62))  # an executable without .so
    (pkg / "old32.so").write_bytes(_elf_header(183, elf_class=1))
    (pkg / "fake.so").write_bytes(b"not a library")
    (pkg / "module.py").write_text("x = 1\n")

    problems = ba.check_elf_machines(tmp_path, ARM)

    assert problems == [
        "pkg/bad.cpython-312-x86_64-linux-gnu.so: built for ELF machine 62, arm64 needs 183",
        "pkg/fake.so: a shared library that is not an ELF file",
        "pkg/helper: built for ELF machine 62, arm64 needs 183",
        "pkg/old32.so: 32-bit ELF, Lambda runs 64-bit code",
    ]
    assert ba.check_elf_machines(tmp_path / "pkg", X86) != []


# --- requirements ------------------------------------------------------------------------


_HASH = "--hash=sha256:" + "ab" * 32


def test_pinned_requirements_refuses_anything_but_exact_pins() -> None:
    text = "# c\nPillow==13.0.0  # why\n\nrpds_py==1.0\n"
    assert ba.pinned_requirements(text, hashed=False) == {"pillow": "13.0.0", "rpds-py": "1.0"}
    with pytest.raises(ba.BuildError, match="entry 2: 'jsonschema>=4' is not 'name==version'"):
        ba.pinned_requirements("pillow==13.0.0\njsonschema>=4\n", hashed=False)
    with pytest.raises(ba.BuildError, match="pin nothing"):
        ba.pinned_requirements("# nothing\n")


def test_pinned_requirements_want_a_hash_on_every_pin() -> None:
    hashed = f"pillow==13.0.0 \\\n    {_HASH} \\\n    {_HASH}\n    # via x\nsix==1.17.0 {_HASH}\n"
    assert ba.pinned_requirements(hashed) == {"pillow": "13.0.0", "six": "1.17.0"}
    with pytest.raises(ba.BuildError, match=r"six==1\.17\.0 has no hash"):
        ba.pinned_requirements(f"pillow==13.0.0 {_HASH}\nsix==1.17.0\n")


def test_the_hashed_layer_requirements_pin_exactly_what_requirements_in_chooses() -> None:
    chosen = ba.pinned_requirements(
        (REPO_ROOT / "layers" / "requirements.in").read_text(), hashed=False
    )
    assert ba.pinned_requirements(ba.REQUIREMENTS.read_text()) == chosen, (
        "layers/requirements.txt is stale: run scripts/lock.sh"
    )


def test_check_pins_reports_unpinned_and_mismatched_distributions(tmp_path: Path) -> None:
    _fake_dist(tmp_path, "Pinned", "py3-none-any")
    _fake_dist(tmp_path, "sneaky_dep", "py3-none-any")
    _fake_dist(tmp_path, "drifted", "py3-none-any")
    problems = ba.check_pins(tmp_path, {"pinned": "1.0", "drifted": "2.0"})
    assert problems == [
        "drifted: pinned 2.0, installed 1.0",
        "sneaky-dep==1.0 is installed but not pinned in the requirements",
    ]


def test_layer_requirements_are_in_step_with_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = ba.pinned_requirements(ba.REQUIREMENTS.read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a runtime dependency but not in the layer"
        assert requirement.specifier.contains(pins[name]), (
            f"layer pins {name}=={pins[name]}, pyproject wants {requirement.specifier}"
        )


def test_layer_wheels_are_selected_for_the_target_not_this_machine() -> None:
    args = ba.pip_target_args(ARM)
    platforms = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_34_aarch64"  # newest the runtime loads, preferred
    assert "manylinux_2_17_aarch64" in platforms and "manylinux2014_aarch64" in platforms
    assert all(p.endswith("_aarch64") for p in platforms)
    assert "--only-binary=:all:" in args
    assert args[args.index("--python-version") + 1] == "3.12"
    assert args[args.index("--abi") + 1] == "cp312"
    assert ba.cache_key(b"a==1\n", ARM) != ba.cache_key(b"a==1\n", X86)
    assert ba.cache_key(b"a==1\n", ARM) != ba.cache_key(b"a==2\n", ARM)


# --- botocore's data: only the services the functions call --------------------------------


def _fake_botocore_data(site_dir: Path, services: list[str]) -> Path:
    data = site_dir / "botocore" / "data"
    for name in services:
        (data / name / "2020-01-01").mkdir(parents=True)
        model = json.dumps({"metadata": {"serviceId": name, "doc": "é"}}, indent=2).encode()
        (data / name / "2020-01-01" / "service-2.json.gz").write_bytes(gzip.compress(model))
    partition = {
        "partition": "aws",
        "regions": {"us-east-1": {"description": "US East (N. Virginia)"}},
        "defaults": {"hostname": "{service}.{region}.{dnsSuffix}"},
        "services": {name: {"endpoints": {"us-east-1": {}}} for name in services},
    }
    china = {**partition, "partition": "aws-cn", "services": {"s3": {"endpoints": {}}}}
    (data / "endpoints.json").write_text(
        json.dumps({"partitions": [partition, china], "version": 3})
    )
    (data / "partitions.json").write_text("{}")
    return data


def test_layer_keeps_botocore_data_of_the_listed_services_only(tmp_path: Path) -> None:
    data = _fake_botocore_data(tmp_path, ["ec2", "dynamodb", "s3", "lambda"])
    assert ba.prune_botocore_data(tmp_path, ["s3", "dynamodb"]) == 2
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["dynamodb", "s3"]
    # The same data, minified and without gzip: what botocore reads first.
    model = data / "s3" / "2020-01-01" / "service-2.json"
    assert not model.with_suffix(".json.gz").exists()
    assert model.read_text("utf-8") == '{"metadata":{"serviceId":"s3","doc":"é"}}'
    assert (data / "partitions.json").read_text() == "{}"
    endpoints = json.loads((data / "endpoints.json").read_text())
    aws, china = endpoints["partitions"]
    assert list(aws["services"]) == ["dynamodb", "s3"]  # kept entries in their order
    assert aws["regions"] and aws["defaults"] and endpoints["version"] == 3
    assert list(china["services"]) == ["s3"]


def test_pruning_botocore_data_gives_the_same_bytes_twice(tmp_path: Path) -> None:
    trees = []
    for name in ("one", "two"):
        data = _fake_botocore_data(tmp_path / name, ["ec2", "s3", "sts"])
        ba.prune_botocore_data(tmp_path / name, ["s3", "sts"])
        trees.append((data / "endpoints.json").read_bytes())
    assert trees[0] == trees[1]


def test_minifying_keeps_the_json_botocore_reads_where_both_forms_exist(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{ "read": "this" }')
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(b'{"read": "not this"}'))
    for path in sorted(tmp_path.iterdir()):
        ba.minify_json(path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").read_text() == '{"read":"this"}'


def test_pruning_refuses_a_service_botocore_does_not_know(tmp_path: Path) -> None:
    _fake_botocore_data(tmp_path, ["s3"])
    with pytest.raises(ba.BuildError, match="no data for simpledb3"):
        ba.prune_botocore_data(tmp_path, ["s3", "simpledb3"])


def _clients_created(source: str) -> set[str]:
    """Service names passed as the first argument of a call to ``client`` or ``*.client``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = node.args[0]
        if called == "client" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def test_every_client_the_code_zip_creates_has_its_botocore_data_in_the_layer() -> None:
    """A client for a service left out of the layer fails the function's init
    (UnknownServiceError): a new client("...") must add its service to the list."""
    created: dict[str, str] = {}
    for name, path in ba.code_entries().items():
        if name.endswith(".py"):
            for service in _clients_created(path.read_text(encoding="utf-8")):
                created.setdefault(service, name)
    assert {"s3", "dynamodb", "sns", "sts", "rekognition"} <= set(created)  # the scan works
    missing = {s: where for s, where in created.items() if s not in ba.LAYER_BOTOCORE_SERVICES}
    assert missing == {}


# --- the real layer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The x86_64 layer built twice from the same inputs (wheels cached in build/cache)."""
    saved = os.environ.pop("SOURCE_DATE_EPOCH", None)
    try:
        cache = REPO_ROOT / "build" / "cache"
        first = ba.build_layer_zip(tmp_path_factory.mktemp("layer1"), X86, cache_root=cache)
        second = ba.build_layer_zip(tmp_path_factory.mktemp("layer2"), X86, cache_root=cache)
        yield first, second
    finally:
        if saved is not None:
            os.environ["SOURCE_DATE_EPOCH"] = saved


def test_real_x86_64_layer_build_from_pypi(real_layer: tuple[Path, Path]) -> None:
    first, second = real_layer
    assert first.name == "sluice-layer-x86_64.zip"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        wheel_files = {n: zf.read(n).decode() for n in names if n.endswith(".dist-info/WHEEL")}
    assert all(name.startswith("python/") for name in names)
    for package in ("PIL", "jsonschema", "aws_lambda_powertools", "ijson", "fastjsonschema"):
        assert f"python/{package}/__init__.py" in names, package
    assert "python/boto3/__init__.py" in names
    assert not any(n.endswith("/RECORD") for n in names)
    assert _bytecode_problems(first, "/opt") == []
    assert "python/boto3/__pycache__/session.cpython-312.pyc" in names
    services = {n.split("/")[3] for n in names if n.count("/") > 4 and "/botocore/data/" in n}
    assert services == set(ba.LAYER_BOTOCORE_SERVICES)
    assert "python/botocore/data/s3/2006-03-01/service-2.json" in names
    assert not any(n.startswith("python/botocore/data/") and n.endswith(".gz") for n in names)
    assert not any(n.startswith("python/bin/") for n in names)
    assert len(wheel_files) == len(ba.pinned_requirements(ba.REQUIREMENTS.read_text()))
    for name, text in wheel_files.items():
        tags = ba.wheel_tags(text)
        assert any(ba.tag_rejection(tag, X86) is None for tag in tags), (name, tags)
    assert any("manylinux" in text for text in wheel_files.values())  # Pillow et al.


def test_real_layer_imports_on_cpython_312(real_layer: tuple[Path, Path], tmp_path: Path) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the x86_64 layer's native code needs an x86_64 machine")
    python312 = ba.find_lambda_python()
    with zipfile.ZipFile(real_layer[0]) as zf:
        zf.extractall(tmp_path)
    # As in Lambda: /opt/python on sys.path, the runtime's own site-packages out of the way.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        # The distributions with native code; the pure-Python rest is covered by the tags.
        "import PIL.Image, PIL.ImageOps, rpds, ijson, jsonschema; "
        "assert PIL.Image.__file__.startswith(sys.argv[1]); "
        "assert ijson.backend == 'yajl2_c', ijson.backend; "
        # Each service kept in botocore's data makes a client and resolves its endpoint.
        "import boto3; "
        "[boto3.client(s, region_name='eu-west-1', aws_access_key_id='a', "
        "aws_secret_access_key='b').meta.endpoint_url for s in sys.argv[2:]]"
    )
    subprocess.run(
        [python312, "-I", "-S", "-c", probe, str(tmp_path / "python"),
         *ba.LAYER_BOTOCORE_SERVICES],
        check=True,
    )  # fmt: skip


def test_code_zip_leaves_out_the_developer_tools_and_needs_nothing_from_them(
    tmp_path: Path,
) -> None:
    """Every ``sluice`` module a module in the zip imports is in the zip: leaving out
    ``sluice.local`` and the CLI can never break a function's import."""
    with zipfile.ZipFile(ba.build_code_zip(tmp_path)) as zf:
        names = set(zf.namelist())
        sources = {n: zf.read(n) for n in names if n.endswith(".py")}
    assert not any(n.startswith(("sluice/local/", "sluice/cli.py")) for n in names)
    assert "sluice/handlers/api.py" in names and "sluice/ops/bundle.py" in names

    def shipped(module: str) -> bool:
        path = module.replace(".", "/")
        return f"{path}.py" in names or f"{path}/__init__.py" in names

    missing: list[str] = []
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source, name)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module.startswith("sluice") and not shipped(node.module):
                    missing.append(f"{name}: {node.module}")
                missing += [f"{name}: {m}" for m in modules[1:] if m.startswith("sluice.local")]
            elif isinstance(node, ast.Import):
                missing += [
                    f"{name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("sluice") and not shipped(a.name)
                ]
    assert missing == []
