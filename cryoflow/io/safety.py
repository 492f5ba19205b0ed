"""What a reader will load: the data types and codecs cryoflow accepts in a store.

Checked on the raw ``zarr.json`` before zarr parses a node, so an object data type or a
code-carrying codec (pickle and the like) is refused with :class:`UnsafeStoreError` before it
can do anything. :func:`cryoflow.io.nodes.open_node` calls these for every node it opens.
"""

from __future__ import annotations

from typing import Any

from cryoflow.errors import UnsafeStoreError

# Data types and codecs a reader accepts. Anything else (object / variable-length types,
# pickle or other code-carrying codecs) is refused with UnsafeStoreError.
SAFE_DATA_TYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "fixed_length_utf32",
    }
)
SAFE_CODECS = frozenset(
    {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "sharding_indexed"}
)


def check_safe_metadata(meta: dict[str, Any], where: str) -> None:
    """Refuse array metadata whose data type or codecs cryoflow will not load.

    Raises
    ------
    UnsafeStoreError
        Naming the node, the offending data type or codec and the allowed ones.
    """
    if meta.get("node_type") != "array":
        return
    if meta.get("zarr_format") != 3:
        raise UnsafeStoreError(
            f"{where}: only Zarr v3 arrays are read, got {meta.get('zarr_format')}"
        )
    dtype = meta.get("data_type")
    dname = dtype.get("name") if isinstance(dtype, dict) else dtype
    if dname not in SAFE_DATA_TYPES:
        raise UnsafeStoreError(
            f"{where}: refusing data type {dname!r}; allowed: {', '.join(sorted(SAFE_DATA_TYPES))}"
        )
    for codec in _codec_names(meta.get("codecs", [])):
        if codec not in SAFE_CODECS:
            raise UnsafeStoreError(
                f"{where}: refusing codec {codec!r}; allowed: {', '.join(sorted(SAFE_CODECS))}"
            )


def _codec_names(codecs: object) -> list[str]:
    names: list[str] = []
    if not isinstance(codecs, list):
        return ["<malformed codecs>"]
    for c in codecs:
        name = c.get("name") if isinstance(c, dict) else c
        names.append(str(name))
        if isinstance(c, dict) and name == "sharding_indexed":
            conf = c.get("configuration", {})
            names += _codec_names(conf.get("codecs", []))
            names += _codec_names(conf.get("index_codecs", []))
    return names
