"""`import models` stays cheap: the farm's API and dispatcher import it without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import models
from models import guidance

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers")


def test_the_package_and_its_torch_free_modules_load_no_ml_framework():
    code = (
        "import sys; import models, models.probe, models.specs, models.guidance, models.errors; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []  # names the heavy modules that were loaded, if any


def test_the_lazy_names_resolve_to_the_pipelines_own():
    from models import pipeline

    assert models.Pipeline is pipeline.Pipeline
    assert models.RenderResult is pipeline.RenderResult
    assert models.OnStep is pipeline.OnStep
    assert all(hasattr(models, name) for name in models.__all__)
    assert set(models.__all__) <= set(dir(models))
    try:
        models.Pipelines  # noqa: B018
    except AttributeError as exc:
        assert "has no attribute 'Pipelines'" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_guidance_does_not_import_specs():
    """specs -> guidance only: guidance states what it needs of a spec as a Protocol (GuidedSpec)."""
    tree = ast.parse(Path(guidance.__file__).read_text())
    names = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert names and not any(name.split(".")[-1] == "specs" for name in names)
