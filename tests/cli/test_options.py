"""Every stage command derives its options from its stage's parameter model, is a named
function, and the command line starts without importing the heavy stack."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from importlib import import_module

import pytest

from cryoflow.cli.main import COMMAND_MODULES


def _field_options(func):
    """(parameter, model, field, default) of every option built by ``cli.options.param``."""
    hints = typing.get_type_hints(func, include_extras=True)
    for name, p in inspect.signature(func).parameters.items():
        for meta in getattr(hints.get(name), "__metadata__", ()):
            if hasattr(meta, "cryoflow_field"):
                model, field = meta.cryoflow_field
                yield name, model, field, p.default


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_commands_are_named_functions_whose_defaults_are_the_models(module) -> None:
    mod = import_module(f"cryoflow.cli.{module}")
    func = getattr(mod, module)
    assert inspect.isfunction(func) and func.__module__ == mod.__name__
    for name, model, field, default in _field_options(func):
        info = model.model_fields[field]
        if info.is_required():
            assert default is inspect.Parameter.empty, (module, name)
        else:
            assert default == model.default(field), (module, name, field)


def test_stage_commands_take_every_field_they_expose() -> None:
    """The parameter-model options of a stage command cover the model's own fields."""
    from cryoflow.cli import edges, lift, localize, reconstruct
    from cryoflow.pipelines.stages.edges import EdgesParams
    from cryoflow.pipelines.stages.lift import LiftParams
    from cryoflow.pipelines.stages.localize import LocalizeParams
    from cryoflow.pipelines.stages.reconstruct import ReconstructParams

    cases = [
        (edges.edges, EdgesParams, set()),
        (lift.lift, LiftParams, {"classes"}),  # a comma-separated text option
        (localize.localize, LocalizeParams, {"boxes", "classes"}),  # --boxes FILE | --from-truth
        (reconstruct.reconstruct, ReconstructParams, {"source"}),  # a pipeline's bin results
    ]
    for func, model, elsewhere in cases:
        seen = {field for _, _, field, _ in _field_options(func)}
        assert seen | elsewhere == set(model.model_fields), func.__name__


def test_command_line_starts_without_the_heavy_stack() -> None:
    code = (
        "import sys, cryoflow.cli.main; "
        "print(sorted(m for m in ('torch', 'dask.array', 'zarr', 'pandas', 'xarray', "
        "'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_command_is_callable_as_a_function(tmp_path, capsys) -> None:
    from cryoflow.cli.verify import verify
    from cryoflow.io.layout import create_dataset

    create_dataset(tmp_path / "d.zarr")
    verify(str(tmp_path / "d.zarr"))
    assert "is clean" in capsys.readouterr().out


def test_cli_imports_stages_and_cluster_options_only() -> None:
    """No command module imports models, io, kernels, graph, geometry or simulate."""
    import ast
    from pathlib import Path

    import cryoflow.cli

    below = ("cryoflow.models", "cryoflow.io", "cryoflow.kernels", "cryoflow.graph",
             "cryoflow.geometry", "cryoflow.simulate")
    for path in Path(cryoflow.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith(below), f"{path.name} imports {name}"
