"""What the deployment files may refer to: the repository's real commands, settings and metrics."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]


class _Parsed(Exception):
    pass


def check_command(argv: list[str]) -> str:
    """Parse argv with the repository's own argument parsers; returns what it runs.

    `farm ...` goes through farm.cli's parser (the chosen command is not run), `python -m
    workers ...` through the worker's (stopped before it loads a model)."""
    argv = list(argv)
    if argv[:1] == ["farm"]:
        from farm import cli

        chosen: list[str] = []
        stubs = {name: (lambda args, name=name: chosen.append(name) or 0)
                 for name in dir(cli) if name.startswith("cmd_")}
        with mock.patch.multiple(cli, **stubs):
            try:
                code = cli.main(argv[1:])
            except SystemExit as exc:
                raise AssertionError(f"{' '.join(argv)}: not a command of farm.cli "
                                     f"(argparse exit {exc.code})") from None
        assert code == 0 and len(chosen) == 1, argv
        return chosen[0]
    if argv[:3] in (["python", "-m", "workers"], ["python3", "-m", "workers"]):
        from farm.settings import get_settings

        get_settings.cache_clear()
        with mock.patch.dict("os.environ", {"FARM_DATA_DIR": str(ROOT / ".farm" / "infra-tests")}):
            import workers.__main__ as worker_main  # workers.app builds its Celery app from the settings

            def parsed(pool):
                raise _Parsed(pool)

            try:
                with mock.patch.object(worker_main, "start_runtime", parsed):
                    worker_main.main(argv[3:])
            except _Parsed as pool:
                return f"worker {pool}"
            except SystemExit as exc:
                raise AssertionError(f"{' '.join(argv)}: not a command of workers (argparse exit {exc.code})") from None
            finally:
                get_settings.cache_clear()
        raise AssertionError(f"{argv}: the worker did not start")
    raise AssertionError(f"{argv}: neither `farm ...` nor `python -m workers ...`")


def setting_names() -> set[str]:
    """Every FARM_* variable farm.settings reads."""
    from farm.settings import Settings

    return {f"FARM_{name.upper()}" for name in Settings.model_fields}


def metric_names() -> set[str]:
    """The series names /metrics exposes (from a collector on an empty SQLite record)."""
    import tempfile

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from farm.db import get_engine, session_factory
    from farm.metrics import FarmCollector
    from farm.migrate import upgrade
    from farm.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/farm.db"
        upgrade(url)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FarmCollector(session_factory(url), Settings(data_dir=Path(folder))))
        text = generate_latest(registry).decode()
        get_engine(url).dispose()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        names.update(s.name for s in family.samples)
    return names
