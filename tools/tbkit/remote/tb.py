"""Run the installed `tb` CLI (Tinybird Forward): formatting checks, deploys and tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from dotenv import dotenv_values

from ..errors import TbCommandError
from ..project import tinybird_adapter

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tb_executable() -> str:
    """The `tb` next to this Python (the one this package installed), or the first on PATH."""
    beside = Path(sys.executable).parent / "tb"
    if beside.is_file():
        return str(beside)
    found = shutil.which("tb")
    if not found:
        raise TbCommandError(
            "the Tinybird CLI `tb` is not installed: run `pip install tinybird` (it comes with tbkit's "
            "dependencies; `make check` sets it up in .venv)"
        )
    return found


def tb_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `tb` runs with: telemetry off, plus `extra`."""
    env = dict(os.environ)
    env["TB_CLI_TELEMETRY_OPTOUT"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class FormatProblem:
    """A datafile that `tb fmt --diff` would change, with the diff."""

    path: Path
    diff: str


def fmt_diff(paths: list[Path], cwd: Path | None = None) -> list[FormatProblem]:
    """Run `tb fmt --diff` once over the datafiles; the files it would reformat, with their diffs."""
    if not paths:
        return []
    run = subprocess.run(
        [tb_executable(), "fmt", "--diff", *map(str, paths)],
        capture_output=True,
        text=True,
        env=tb_environment(),
        cwd=cwd,
        timeout=300,
    )
    if run.returncode == 0:
        return []
    output = _ANSI.sub("", run.stdout + run.stderr)
    # tb prints one diff per file, each headed `--- <file name> local`.
    sections = re.split(r"^--- (\S+) local$", output, flags=re.M)
    diffs = dict(zip(sections[1::2], sections[2::2], strict=False))
    problems = [
        FormatProblem(p, ("--- " + p.name + " local" + diffs[p.name]).strip()) for p in paths if p.name in diffs
    ]
    if not problems:  # not a diff: tb could not parse a file; report its message against every file given
        problems = [FormatProblem(p, output.strip()) for p in paths]
    return problems


# -- deploying ------------------------------------------------------------------------------------------

LOCAL_DEFAULT = "localhost:7181"


def read_env_files(*folders: Path) -> dict[str, str]:
    """TB_* settings from `.env` then `.env.local` in each folder (later files win), as `tb` reads them."""
    values: dict[str, str] = {}
    for folder in folders:
        for name in (".env", ".env.local"):
            path = Path(folder) / name
            if path.is_file():
                values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return values


def local_address(env: dict[str, str] | None = None) -> str:
    """Tinybird Local's address from TB_LOCAL_HOST and TB_LOCAL_PORT, as `tb` computes it."""
    env = env if env is not None else dict(os.environ)
    host = re.sub(r"^https?://", "", env.get("TB_LOCAL_HOST", "localhost"))
    return f"http://{host}:{int(env.get('TB_LOCAL_PORT', '7181'))}"


def local_tokens(address: str) -> dict[str, str]:
    """Tinybird Local's tokens (`GET /tokens`); a clear error when nothing answers there."""
    try:
        response = requests.get(f"{address}/tokens", timeout=10)
        response.raise_for_status()
        return response.json()
    except (requests.ConnectionError, requests.Timeout):
        raise TbCommandError(
            f"Tinybird Local is not running at {address}: start it with `tb local start` (needs Docker), or "
            "serve this project without Docker with `tbkit serve --local-api`; set TB_LOCAL_HOST and "
            "TB_LOCAL_PORT if it listens elsewhere"
        ) from None
    except (requests.HTTPError, ValueError) as e:
        raise TbCommandError(
            f"{address} answered GET /tokens with an error, so it is not Tinybird Local: {e}"
        ) from None


def cloud_credentials(project_dir: Path, token: str | None = None) -> tuple[str, str]:
    """TB_HOST and TB_TOKEN (unless `token` is given) for Tinybird Cloud from the environment, else `.env` /
    `.env.local`."""
    values = {**read_env_files(Path("."), project_dir), **os.environ}
    host, token = values.get("TB_HOST"), token or values.get("TB_TOKEN")
    missing = [name for name, value in (("TB_HOST", host), ("TB_TOKEN", token)) if not value]
    if missing:
        raise TbCommandError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: Tinybird Cloud needs the API "
            "host of your region (e.g. TB_HOST=https://api.europe-west2.gcp.tinybird.co) and a workspace admin "
            "token (TB_TOKEN), in the environment or in .env / .env.local"
        )
    return host, token


def git_branch(folder: Path, env: dict[str, str]) -> str | None:
    """The git branch `tb` sees from `folder`: the checked-out one, else the CI's (a detached checkout)."""
    for command in (["git", "symbolic-ref", "--short", "HEAD"], ["git", "rev-parse", "--abbrev-ref", "HEAD"]):
        try:
            found = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            break  # no git: no branch
        branch = found.stdout.strip() if found.returncode == 0 else ""
        if branch and branch != "HEAD":
            return branch
    for name in (*_CI_BRANCH_VARIABLES, "GITHUB_HEAD_REF", "GITHUB_REF_NAME"):
        if env.get(name):
            return env[name]
    return env["GIT_BRANCH"].replace("origin/", "", 1) if env.get("GIT_BRANCH") else None


_CI_BRANCH_VARIABLES = (
    "VERCEL_GIT_COMMIT_REF",
    "CI_COMMIT_BRANCH",
    "CIRCLE_BRANCH",
    "BUILD_SOURCEBRANCHNAME",
    "BITBUCKET_BRANCH",
    "TRAVIS_BRANCH",
)


def local_workspace_name(project_dir: Path, env: dict[str, str] | None = None) -> str:
    """The Tinybird Local workspace `tb --local deploy` run from `project_dir` deploys to, by `tb`'s own rule.

    `tb` (tinybird/tb/modules/cli.py and local_common.get_tinybird_local_config) uses, first to apply: the
    git branch, sanitized, when it is not main or master and no token is given (TB_TOKEN); the `name` in
    the folder's `.tinyb` (which `tb --host ... --token ...` writes: the workspace of that token); else
    `Tinybird_Local_Build_` and a hash of the folder's path.
    """
    env = dict(os.environ) if env is None else env
    project_dir = Path(project_dir)
    if not env.get("TB_TOKEN"):
        branch = git_branch(project_dir, env)
        if branch and branch not in ("main", "master"):
            name = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", branch)).strip("_")
            if name and (name[0].isdigit() or name.startswith("d_")):
                name = f"branch_{name}"
            if name:
                return name
    tinyb = project_dir / ".tinyb"
    if tinyb.is_file():
        try:
            name = json.loads(tinyb.read_text(encoding="utf-8")).get("name")
        except (ValueError, AttributeError):
            name = None  # tb ignores a .tinyb it cannot read
        if name:
            return name
    return tinybird_adapter.local_build_workspace_name(project_dir)


def local_workspace_token(project_dir: Path, address: str) -> str:
    """The token of the workspace `tb --local deploy` uses for `project_dir` (see local_workspace_name)."""
    name = local_workspace_name(project_dir)
    admin = local_tokens(address)["admin_token"]
    listing = requests.get(f"{address}/v1/user/workspaces", params={"token": admin}, timeout=10).json()
    for workspace in listing.get("workspaces", []):
        if workspace.get("name") == name:
            return workspace["token"]
    raise TbCommandError(f"Tinybird Local at {address} has no workspace '{name}': deploy first (tbkit deploy)")


def deploy(
    target: str,
    project_dir: Path,
    check: bool = False,
    allow_destructive: bool = False,
    on_output: Callable[[str], object] = print,
    token: str | None = None,
) -> None:
    """Run `tb deploy` from the project folder, streaming its output: `local` (`tb --local deploy`), `cloud`
    (`tb --cloud deploy` with TB_HOST and TB_TOKEN, or `token`) or the URL of a Tinybird API (`tb --cloud --host
    URL deploy` with `token`)."""
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise TbCommandError(f"project folder not found: {project_dir}")
    tb = tb_executable()
    env = tb_environment()
    if target == "local":
        env.update({k: v for k, v in read_env_files(Path("."), project_dir).items() if k.startswith("TB_LOCAL_")})
        local_tokens(local_address(env))
        command, shown = [tb, "--local", "deploy"], "tb --local deploy"
    elif target == "cloud" or target.startswith(("http://", "https://")):
        if target == "cloud":
            host, token = cloud_credentials(project_dir, token)
        elif not token:
            raise TbCommandError(f"a token is needed to deploy to {target}: pass --token or set TB_TOKEN")
        else:
            host = target
        command, shown = [tb, "--cloud", "--host", host, "--token", token, "deploy"], f"tb --cloud --host {host} deploy"
    else:
        raise TbCommandError(f"unknown deploy target '{target}': use local, cloud or the URL of a Tinybird API")
    flags = (["--check"] if check else []) + (["--allow-destructive-operations"] if allow_destructive else [])
    lines = _stream([*command, *flags], project_dir, env, on_output)
    if lines is not None:
        errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower() or ".pipe" in line]
        detail = "; ".join(errors[-4:]) or (lines[-1] if lines else "no output")
        raise TbCommandError(f"`{' '.join([shown, *flags])}` failed: {detail}")


def _stream(command: list[str], cwd: Path, env: dict[str, str], on_output: Callable[[str], object]) -> list[str] | None:
    """Run a command, passing each output line on; None on success, else the lines it printed."""
    seen: list[str] = []
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            line = _ANSI.sub("", line.rstrip("\n"))
            seen.append(line)
            on_output(line)
    return None if process.returncode == 0 else [line for line in seen if line.strip()]
