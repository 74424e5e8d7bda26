"""Strict reading of the hand-edited lab YAML files (inventory, device profiles).

PyYAML's safe loader lets the last of two equal keys win silently and turns `yes:` or `1:` into
non-text keys. A lab file is a contract, so here a duplicate key (at any depth) or a key that is not
text is an error naming the file, line and key, and every failure to read the file (missing, a
directory, not UTF-8, malformed) is a one-line `ConfigError` instead of a traceback.

The loader also records where every key and text value sits (`YamlDoc.keys`, `YamlDoc.strings`), so
that checks on the loaded data (secrets in the file, say) can point at a line without echoing values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.errors import ConfigError

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
_TAG_NAMES = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "empty (null)",
    "tag:yaml.org,2002:timestamp": "a date",
}


@dataclass(frozen=True)
class Located:
    """A key or a text value of the document: its path (`devices[0].transport.host`) and line."""

    path: str
    line: int
    text: str


@dataclass
class YamlDoc:
    data: Any
    keys: list[Located] = field(default_factory=list)  # every mapping key; path includes the key
    strings: list[Located] = field(default_factory=list)  # every text value (not keys)


class StrictYamlError(yaml.MarkedYAMLError):
    """A duplicate or non-text key: the file parses, but it does not say one thing."""


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keys that are not text, at any nesting level
    (merge keys `<<: *anchor` may be overridden, as YAML intends), and records every key and text value
    with its path and line in `self.keys` / `self.strings`."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.keys: list[Located] = []
        self.strings: list[Located] = []

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check_tree(node)
        return self.construct_document(node)

    def _check_tree(self, root: Node) -> None:
        seen: set[int] = set()  # an alias points at a node already walked (also stops cycles)
        stack: list[tuple[Node, str]] = [(root, "")]
        while stack:
            node, path = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, ScalarNode):
                if node.tag == STR_TAG and path:
                    self.strings.append(Located(path, node.start_mark.line + 1, str(node.value)))
            elif isinstance(node, SequenceNode):
                stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node.value))))
            elif isinstance(node, MappingNode):
                first: dict[str, int] = {}
                children: list[tuple[Node, str]] = []
                for key_node, value_node in node.value:
                    if key_node.tag == MERGE_TAG:
                        children.append((value_node, path))
                        continue
                    key = self._text_key(key_node, path)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        where = f" in {path}" if path else " at the top level"
                        raise StrictYamlError(
                            problem=f"duplicate key '{key}'{where} (first on line {first[key]}); "
                            f"each key may appear once",
                            problem_mark=key_node.start_mark,
                        )
                    first[key] = line
                    self.keys.append(Located(_child(path, key), line, key))
                    children.append((value_node, _child(path, key)))
                stack.extend(reversed(children))

    @staticmethod
    def _text_key(key_node: Node, path: str) -> str:
        where = f" in {path}" if path else ""
        if not isinstance(key_node, ScalarNode):
            kind = "a list" if isinstance(key_node, SequenceNode) else "a mapping"
            raise StrictYamlError(
                problem=f"a key{where} is {kind}; keys must be text", problem_mark=key_node.start_mark
            )
        if key_node.tag == "tag:yaml.org,2002:null" and key_node.value in ("", "~", "null", "Null", "NULL"):
            raise StrictYamlError(problem=f"a key{where} is empty; keys must be text", problem_mark=key_node.start_mark)
        if key_node.tag != STR_TAG:
            what = _TAG_NAMES.get(key_node.tag, f"not text ({key_node.tag})")
            raise StrictYamlError(
                problem=f"key '{key_node.value}'{where} is read as {what}; keys must be text "
                f'(quote it: "{key_node.value}")',
                problem_mark=key_node.start_mark,
            )
        return str(key_node.value)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line} column {column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def read_yaml(path: Path, what: str = "YAML file") -> YamlDoc:
    """Read and parse one lab file strictly; every failure is a one-line ConfigError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    text = _decode(path, raw)
    loader: StrictLoader | None = None
    try:
        loader = StrictLoader(text)  # checks for characters YAML does not allow
        data = loader.get_single_data()
    except StrictYamlError as exc:
        mark = exc.problem_mark
        assert mark is not None
        raise ConfigError(f"{path}: line {mark.line + 1} column {mark.column + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}:" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        if exc.context and problem.startswith("but "):  # "expected a single document ..., but found ..."
            problem = f"{exc.context}, {problem}"
        raise ConfigError(f"{path}:{where} malformed YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character PyYAML does not accept
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}: line {line}: malformed YAML: character #x{exc.character:04x} is not allowed in YAML"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(data, loader.keys, loader.strings)
