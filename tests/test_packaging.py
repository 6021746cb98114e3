"""What CI can check of the Docker image without a Docker engine: the Dockerfile's own
install steps, replayed in a clean virtualenv from a build context that honours
.dockerignore, then the installed command and its health check.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_steps() -> tuple[list[tuple[str, str]], list[str]]:
    """(COPY source, destination) pairs and RUN pip commands, in order."""
    copies = re.findall(r"^COPY\s+(.+?)\s+(\S+)\s*$", DOCKERFILE, flags=re.M)
    pairs = [(src, dest) for sources, dest in copies for src in sources.split()]
    runs = [r for r in re.findall(r"^RUN\s+(.+)$", DOCKERFILE, flags=re.M) if "pip" in r]
    return pairs, runs


def test_dockerfile_shape():
    assert re.search(r"^FROM python:3\.\d+-slim", DOCKERFILE, flags=re.M)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.M)
    assert 'VOLUME ["/data"]' in DOCKERFILE and "/healthz" in DOCKERFILE
    assert 'CMD ["imagebot", "serve", "--host", "0.0.0.0"]' in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "*.env" in ignored


@pytest.mark.timeout(600)
def test_dockerfile_install_steps_in_clean_venv(tmp_path):
    context = tmp_path / "app"
    context.mkdir()
    pairs, runs = dockerfile_steps()
    for src, _ in pairs:
        path = ROOT / src
        target = context / src
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, target)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "VIRTUAL_ENV": str(env_dir)}
    env.pop("PYTHONPATH", None)
    for command in runs:
        done = subprocess.run(command, shell=True, cwd=context, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stderr[-3000:]}"
    help_text = subprocess.run([bin_dir / "imagebot", "--help"], env=env, check=True,
                               capture_output=True, text=True, cwd=tmp_path).stdout
    assert "serve" in help_text and "doctor" in help_text
    subprocess.run([bin_dir / "python", "-c", "import adapters.slack, adapters.discord, "
                    "adapters.web, offline_gemini"], env=env, check=True, cwd=tmp_path)
    static = subprocess.run(
        [bin_dir / "python", "-c", "import adapters.web, pathlib; "
         "print(sorted(p.name for p in (pathlib.Path(adapters.web.__file__).parent / 'static')"
         ".iterdir()))"], env=env, check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "index.html" in static.stdout
    asyncio.run(_serve_and_health(bin_dir, env, tmp_path))


async def _serve_and_health(bin_dir: Path, env: dict[str, str], cwd: Path) -> None:
    env = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "SLACK_", "DISCORD_"))}
    env["DATABASE_URL"] = f"sqlite:///{cwd / 'data.sqlite3'}"
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "imagebot"), "serve", "--port", "0", env=env, cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert "OFFLINE PREVIEW" in line, line
        url = line.split()[4]
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["offline"] is True
    finally:
        proc.terminate()
        await proc.wait()


def test_docker_runs_the_python_the_tests_run_on():
    pyproject = (ROOT / "pyproject.toml").read_text()
    tested = re.search(r'^python_version = "(3\.\d+)"', pyproject, flags=re.M).group(1)
    assert re.search(rf"^FROM python:{re.escape(tested)}-slim", DOCKERFILE, flags=re.M)


def test_runtime_dependencies_are_pinned_for_docker_and_tests():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime = re.search(r"^dependencies = \[(.*?)\]", pyproject, flags=re.M | re.S).group(1)
    extras = re.findall(r'^(?:slack|discord) = \[(.*?)\]', pyproject, flags=re.M)
    for requirement in re.findall(r'"([A-Za-z0-9_.\-]+)', runtime + " ".join(extras)):
        assert re.sub(r"[-_.]+", "-", requirement).lower() in pins, requirement
    assert not {"pytest", "ruff", "mypy", "playwright"} & set(pins)
    _, runs = dockerfile_steps()
    assert runs and all("-c constraints.txt" in run for run in runs)
    assert "-c constraints.txt" in (ROOT / "scripts" / "test").read_text()


def test_compose_starts_without_an_env_file():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"env_file:\s*\n\s*- path: imagebot\.env\s*\n\s*required: false", compose)


def test_example_config_names_itself():
    example = ROOT / "config" / "imagebot.example.toml"
    for named in re.findall(r"--config (\S+)", example.read_text()):
        assert (ROOT / named.strip("`")).is_file(), named
