"""What every ``kiln`` command is made of: its place on the command line, its arguments,
and the function that runs it; and the helpers several command groups share.

A command module (``serving.cli.serve``, ``…accounts``, ``…styles``, …) lists its
commands as ``Command``s, grouped under one word by ``Group`` (``kiln styles import``);
``serving.cli.make_parser`` registers them all. A command's function takes the parsed
arguments and the settings and returns the exit status; a known, user-facing failure is
``CommandFailed`` (``kiln: <message>``, exit status 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.core.settings import Settings

# A command's function: (parsed arguments, settings) -> exit status.
Run = Callable[[argparse.Namespace, Settings], int]
# Adds a command's arguments to its parser.
Arguments = Callable[[argparse.ArgumentParser], None]

# argparse's type of ``add_subparsers()``'s result (private in argparse).
Subparsers = Any


class CommandFailed(Exception):
    """A known, user-facing failure of a command: ``kiln: <message>``, exit status 1."""


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a command that takes none."""


@dataclass(frozen=True)
class Command:
    """One command: ``name`` on the command line, its ``help``, ``arguments`` (adds them to
    its parser) and ``run``, the function it calls."""

    name: str
    help: str
    run: Run
    arguments: Arguments = no_arguments

    def register(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        """Add this command to ``subparsers``; the parsed arguments carry ``func=run``."""
        parser = subparsers.add_parser(self.name, help=self.help)
        self.arguments(parser)
        parser.set_defaults(func=self.run)
        return parser


@dataclass(frozen=True)
class Group:
    """Commands under one word: ``kiln <name> <command> …`` (one of them is required)."""

    name: str
    help: str
    commands: tuple[Command, ...]

    def register(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help=self.help)
        commands = parser.add_subparsers(dest=f"{self.name}_command", required=True)
        for command in self.commands:
            command.register(commands)
        return parser


def load_catalog(settings: Settings) -> Any:
    """The catalog at ``KILN_CATALOG`` (or ``KILN_HOME``'s)."""
    from weights.catalog import load_catalog

    return load_catalog(settings.home, settings.catalog_path)


def check_sources(catalog: Any) -> None:
    """Refuse, before anything starts, a model whose files can be told wrong without
    loading them (``pipelines.families.check_source``: a FLUX transformer file of another
    architecture, or without its ``config`` folder)."""
    from pipelines.families import check_source
    from weights.checks import ModelLoadError

    for spec in catalog:
        try:
            check_source(spec)
        except ModelLoadError as exc:
            raise CommandFailed(str(exc)) from exc


def build_tiny(catalog: Any) -> list[Any]:
    """Build the catalog's missing tiny models and tiny components."""
    from weights.tiny import ensure_tiny_components, ensure_tiny_models

    return ensure_tiny_models(catalog) + ensure_tiny_components(catalog.components.values())


def build_tiny_model(spec: Any) -> None:
    """Build one model's tiny weights if the catalog entry has them and they are missing."""
    from weights.tiny import ensure_tiny_models

    ensure_tiny_models([spec])
