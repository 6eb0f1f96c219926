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


def test_the_default_rank_is_the_policys() -> None:
    from wulf.policy.rank import DEFAULT_RANK

    assert Config().scheduler.rank == DEFAULT_RANK


def test_wulf_config_prints_toml_that_reads_back_the_same(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from wulf.config import parse_config

    cfg = tmp_path / "wulf.toml"
    cfg.write_text('[limits]\ngroups = { staff = 8 }\n[nodes.features]\nnode7 = ["bigmem"]\n"n.8" = ["a b"]\n'
                   '[mail]\nfrom = "x@y"\n[windows]\nweekends = ["Fri"]\n')
    wulf = Path(sys.executable).parent / "wulf"
    out = subprocess.run([str(wulf), "config"], capture_output=True, text=True, check=True,
                         env={**os.environ, "WULF_CONFIG": str(cfg)}).stdout
    assert dataclasses.replace(parse_config(out), path="") == dataclasses.replace(load_config(cfg), path="")
    cfg.write_text('[scheduler]\nrank = "bogus * 2"\n')
    bad = subprocess.run([str(wulf), "config"], capture_output=True, text=True,
                         env={**os.environ, "WULF_CONFIG": str(cfg)})
    assert bad.returncode == 2 and "bogus" in bad.stderr and bad.stderr.count("\n") == 1


def test_the_store_is_sqlite_or_a_postgresql_url() -> None:
    import pytest

    from wulf.config import parse_config
    from wulf.errors import ConfigError

    assert parse_config("").store.url == ""
    url = "postgresql://wulf@db:5432/wulf?sslmode=require"
    assert parse_config(f'[store]\nurl = "{url}"\n').store.url == url
    with pytest.raises(ConfigError, match=r"store.url must be \"\" \(SQLite\) or a postgresql:// URL, not 'mysql://x'"):
        parse_config('[store]\nurl = "mysql://x"\n')


def test_workstations_and_migrate_settings_are_read_and_checked() -> None:
    import pytest

    from wulf.config import parse_config
    from wulf.errors import ConfigError
    from wulf.policy.settings import Policy

    cfg = parse_config('[nodes]\nfeatures = { ws7 = ["bigmem"] }\nowners = { ws7 = "alice", ws8 = "bob" }\n'
                       '[migrate]\nbusy_cpu = 1\nbusy_seconds = 10\ngrace_seconds = 60\naway_seconds = 20\n')
    policy = Policy.from_config(cfg)
    assert policy.owners == {"ws7": "alice", "ws8": "bob"}
    m = policy.migrate
    assert (m.busy_cpu, m.busy_seconds, m.grace_seconds, m.away_seconds) == (1.0, 10.0, 60.0, 20.0)
    assert policy.features["ws7"] == {"bigmem", "workstation"} and policy.features["ws8"] == {"workstation"}
    for bad, said in (('[nodes]\nowners = { ws7 = 3 }\n', "must be a string"),
                      ('[nodes]\nowners = { ws7 = "" }\n', "must name a user"),
                      ('[migrate]\nbusy_cpu = 0\n', "migrate.busy_cpu"),
                      ('[migrate]\nbusy_seconds = -1\n', "migrate.busy_seconds"),
                      ('[migrate]\naway_seconds = -1\n', "migrate.away_seconds"),
                      ('[migrate]\ngrace_seconds = "2m"\n', "migrate.grace_seconds"),
                      ('[migrate]\nbusy = 1\n', "unknown key migrate.busy")):
        with pytest.raises(ConfigError, match=said):
            parse_config(bad)
