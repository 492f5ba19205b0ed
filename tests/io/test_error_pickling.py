"""Every cryoflow error survives pickling (a task's error travels from a Dask worker to the
client), keeping its type, message and fields."""

from __future__ import annotations

import inspect
import pickle

import pytest

from cryoflow import errors

SAMPLES = {
    errors.InputFileError: errors.InputFileError("a.mrc", "truncated"),
    errors.AngleFileError: errors.AngleFileError("a.tlt", "line 3: not a number"),
    errors.InputFilesError: errors.InputFilesError(
        [errors.InputFileError("a.mrc", "x"), errors.AngleFileError("b.tlt", "y")], 5
    ),
    errors.CorruptChunkError: errors.CorruptChunkError(
        "s.zarr: array 'a' chunk (1, 2)", array="a", chunk=(1, 2), key="a/c/1/2"
    ),
}


def _all_errors() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CryoflowError) and cls.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_error_round_trips_through_pickle(cls) -> None:
    if cls in SAMPLES:
        err = SAMPLES[cls]
    elif issubclass(cls, errors.InputFileError):  # (path, problem), like its base
        err = cls("a.xf", "line 2: 5 numbers, expected 6")
    else:
        err = cls("store.zarr: something is wrong")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and str(again) == str(err)
    assert {k: str(v) for k, v in vars(again).items()} == {k: str(v) for k, v in vars(err).items()}
