from __future__ import annotations

import dataclasses
from pathlib import Path

from wulf.config import Config, load_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "wulf.toml"


def test_example_config_documents_every_key_with_its_default() -> None:
    example = load_config(EXAMPLE)
    assert dataclasses.replace(example, path="") == Config()
    text = EXAMPLE.read_text()
    for section in dataclasses.fields(Config):
        if section.name == "path":
            continue
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(Config(), section.name)):
            name = key.metadata.get("key", key.name)
            assert f"\n{name} = " in text, f"{section.name}.{key.name} is not in examples/wulf.toml"
