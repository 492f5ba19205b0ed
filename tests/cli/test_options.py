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
from cryoflow.cli.options import names_list


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
        elif isinstance(model.default(field), tuple) and default in (None, ""):
            # a comma-separated list option: not given means the model's (empty) default
            assert names_list(default) == model.default(field) == (), (module, name)
        else:
            assert default == model.default(field), (module, name, field)


def test_stage_commands_take_every_field_of_their_model() -> None:
    """A stage command has an option for every field of its parameter model, except those it
    sets from options of its own (``localize --boxes/--from-truth``, ``train --from-truth``)."""
    from cryoflow.cli import (
        annotate,
        detect,
        edges,
        ingest,
        lift,
        localize,
        reconstruct,
        simulate,
        train,
    )

    cases = [
        (edges.edges, set()),
        (lift.lift, set()),
        (localize.localize, {"boxes"}),
        (reconstruct.reconstruct, {"source"}),  # the bin stage's results: cryoflow run only
        (annotate.annotate, set()),
        (detect.detect, set()),
        (simulate.simulate, set()),
        (ingest.ingest, {"max_expanded_bytes"}),  # --max-expanded-gib
        (train.train, {"source", "network"}),  # --from-truth/--labels/--boxes, --arch/--steps
    ]
    for func, elsewhere in cases:
        found = list(_field_options(func))
        assert found, func.__name__
        model = found[0][1]
        seen = {field for _, _, field, _ in found}
        assert seen | elsewhere == set(model.model_fields), func.__name__


def test_field_options_build_the_model(tmp_path) -> None:
    """Calling a command with field values builds the model (and its errors name options)."""
    from cryoflow.cli.lift import lift
    from cryoflow.errors import ConfigError

    with pytest.raises(ConfigError, match="--chunk must be greater than or equal to 8"):
        lift(str(tmp_path), chunk=2)
    with pytest.raises(ConfigError, match="invalid class name '../x'"):
        lift(str(tmp_path), classes="a,../x")


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
