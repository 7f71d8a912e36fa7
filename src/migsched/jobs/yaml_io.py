"""Reading job and task files safely: bounded size, UTF-8 with a byte offset, strict YAML and JSON.

* `read_text` reads at most `MAX_FILE_BYTES`, refuses binary (NUL) and non-UTF-8 files with one
  line naming the path and the byte offset.
* `parse_document` parses YAML or JSON and raises `JobFileError` — never a parser's own
  exception — naming the path, for: a syntax error; a key given twice in one mapping (YAML names
  the line; PyYAML and `json` would silently keep the last); an integer too long to convert;
  nesting too deep; an alias expansion beyond `MAX_DOCUMENT_NODES` ("billion laughs").
* YAML numbers follow YAML 1.2: `1e9` is a float, as in JSON (PyYAML's YAML 1.1 reads it as the
  string "1e9", which would then have to be accepted as a number and let `"10"` through too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from migsched.errors import JobFileError
from migsched.limits import MAX_DOCUMENT_NODES, MAX_FILE_BYTES


def read_text(path: Path, kind: str) -> str:
    """The file as text, or JobFileError naming it when missing, too large, binary or not UTF-8."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise JobFileError(f"cannot read {kind} {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise JobFileError(f"{kind} {str(path)!r} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit "
                           "(docs/job-file.md, Limits); split the batch")
    if b"\0" in data:
        raise JobFileError(f"{kind} {str(path)!r} is not a text file (it has a NUL byte at offset {data.index(0)}); "
                           "give a text file with one command per line or a YAML/JSON job file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileError(f"{kind} {str(path)!r} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                           f"{exc.start}); save it as UTF-8") from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that names a key twice (raised by `StrictLoader`)."""


# libyaml's parser when PyYAML was built with it: ~10x faster on a 100,000-job file. The resolver
# and constructor (and so the rules below) are the same Python classes either way.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """PyYAML's SafeLoader with YAML 1.2 floats and an error for a key given twice in a mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by explicit keys, as YAML intends
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not None:
                raise DuplicateKeyError(None, None, f"key {key!r} is given twice in one mapping (first on line "
                                        f"{first}); remove one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# Copy the resolver table before changing it: it is a class attribute shared with SafeLoader.
StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in _BaseLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if done:
            sizes[id(node)] = min(MAX_DOCUMENT_NODES + 1, 1 + sum(sizes.get(id(c), 0) for c in children))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _load_yaml(text: str) -> Any:
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_DOCUMENT_NODES:
            raise JobFileError(f"expands to more than {MAX_DOCUMENT_NODES:,} values (through YAML aliases); "
                               "the limit keeps a file's size bounded (docs/job-file.md, Limits)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise JobFileError(f"key {k!r} is given twice in one object; remove one")
        out[k] = v
    return out


def parse_document(text: str, path: Path, kind: str = "job file") -> Any:
    """Parse `text` (the file `path`) as JSON when it ends in `.json`, else as YAML.

    Raises:
        JobFileError: syntax error, duplicate key, over-long integer, too deep nesting or too
            many aliased values; the message names the path (and, for YAML, the line).
    """
    is_json = path.suffix.lower() == ".json"
    where = f"{kind} {str(path)!r}"
    lang = "JSON" if is_json else "YAML"
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_json_pairs)
        return _load_yaml(text)
    except JobFileError as exc:
        raise JobFileError(f"{where}: {exc}") from None
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else "?"
        raise JobFileError(f"{where} line {line}: {exc.problem}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise JobFileError(f"{where} is not valid {lang}: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise JobFileError(f"{where} is nested too deeply to be a job file (lists or mappings inside each other "
                           "hundreds of levels deep)") from None
    except (ValueError, OverflowError):  # int("9" * 5000): Python's limit on integer digits
        raise JobFileError(f"{where} holds a number with thousands of digits; no field accepts one "
                           "(docs/job-file.md, Limits)") from None
