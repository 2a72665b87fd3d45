"""The GitHub workflows: valid against GitHub's workflow schema, clean under zizmor, and doing
what the README promises (tests on pull requests; the book built and deployed from main, with
the run cache kept between runs). Both linters run offline from the venv."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def _load(name: str) -> dict:
    text = (ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _uses(workflow: dict, action: str) -> list[dict]:
    return [s for s in _steps(workflow) if s.get("uses", "").split("@")[0] == action]


def _lint(*command) -> None:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True)
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"


def test_workflows_exist():
    assert [w.name for w in WORKFLOWS] == ["book.yml", "test.yml"]


def test_workflows_match_githubs_schema():
    _lint("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))


def test_workflows_pass_zizmor():
    _lint("zizmor", "--offline", "--no-progress", str(ROOT / ".github" / "workflows"))


def test_every_action_is_pinned_to_a_commit():
    for path in WORKFLOWS:
        for step in _steps(yaml.safe_load(path.read_text(encoding="utf-8"))):
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), (path.name, step["uses"])


def test_pull_requests_run_make_test():
    workflow = _load("test.yml")
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    assert any(s.get("run", "").startswith("make test") for s in _steps(workflow))


def test_main_builds_the_book_and_deploys_it_with_the_run_cache_kept():
    workflow = _load("book.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    cache_dir = workflow["env"]["IBUTILS_CACHE_DIR"].split("}}/")[-1]
    restored = _uses(workflow, "actions/cache/restore")
    saved = _uses(workflow, "actions/cache/save")
    assert restored and saved
    assert restored[0]["with"]["path"] == saved[0]["with"]["path"] == cache_dir
    build = [s["run"] for s in _steps(workflow) if "run" in s]
    assert build == ["make book"]
    assert _uses(workflow, "actions/upload-pages-artifact")[0]["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["permissions"]["pages"] == "write"
    assert _uses({"jobs": {"deploy": deploy}}, "actions/deploy-pages")


@pytest.mark.parametrize("name", ["book.yml", "test.yml"])
def test_python_matches_the_projects(name):
    (setup,) = _uses(_load(name), "actions/setup-python")
    assert setup["with"]["python-version"] == "3.11"
