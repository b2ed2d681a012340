"""Every command line of the README is one its tools accept, as written.

The command lines are those of the README's fenced ``bash`` blocks (backslash continuations joined,
comments and blank lines skipped) and its inline code spans that start with ``python tools/``,
``.venv/bin/python tools/`` or ``python datasets/``. For each:

* ``[.venv/bin/]python tools/X.py ...`` / ``python datasets/X.py ...``: the script exists and its
  argument parser (``build_parser()``, else ``parse_args(argv)``, else the parser ``main(argv)``
  builds, stopped right after parsing) accepts the line's arguments; a ``--config`` names a config
  in ``configs/``, a ``--model`` a shipped model, and config overrides (``KEY VALUE`` pairs) are keys
  the config has. Nothing is run: placeholders such as ``my_images/`` are only parsed.
* ``make X``: X is a target of the Makefile.

Any other command line fails the test: check it here or keep it out of the README.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import inspect
import io
import re
import shlex
import sys
from pathlib import Path
from typing import List
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
SCRIPT = re.compile(r"^(?:\.venv/bin/)?python3?$")
INLINE = re.compile(r"`((?:\.venv/bin/)?python3? (?:tools|datasets)/[^`]+)`")
ENV_VAR = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


def join_continuations(block: str) -> List[str]:
    """The block's logical lines: a line ending in a backslash continues on the next."""
    lines, current = [], ""
    for raw in block.splitlines():
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def command_lines(text: str) -> List[str]:
    """The command lines of ``text``'s fenced bash blocks and of its inline command spans."""
    commands = []
    for language, block in FENCE.findall(text):
        if language.strip() not in ("bash", "sh", "shell", "console"):
            continue
        for line in join_continuations(block):
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    outside_blocks = FENCE.sub("", text)
    commands += [span.strip() for span in INLINE.findall(outside_blocks)]
    return commands


def readme_commands() -> List[str]:
    return command_lines(README.read_text(encoding="utf-8"))


def words(line: str) -> List[str]:
    """The line as the shell splits it; ``$VAR`` placeholders become ``1``, comments are dropped."""
    return shlex.split(ENV_VAR.sub("1", line), comments=True)


@functools.lru_cache(maxsize=None)
def makefile_targets() -> frozenset:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


@functools.lru_cache(maxsize=None)
def load_script(relative: str):
    """Import ``tools/X.py`` or ``datasets/X.py`` as a module (neither folder is a package)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"readme_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parsed(Exception):
    def __init__(self, namespace):
        super().__init__("parsed")
        self.namespace = namespace


def parse(module, argv: List[str]) -> argparse.Namespace:
    """The script's own parser applied to ``argv``; SystemExit (argparse's error) passes through."""
    if hasattr(module, "build_parser"):
        return module.build_parser().parse_args(argv)
    if hasattr(module, "parse_args"):
        return module.parse_args(argv)
    original = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop_after_parsing):
        try:
            if inspect.signature(module.main).parameters:
                module.main(argv)
            else:
                with mock.patch.object(sys, "argv", [module.__file__] + argv):
                    module.main()
        except _Parsed as parsed:
            return parsed.namespace
    raise AssertionError(f"{module.__file__}: main() returned without parsing its arguments")


def config_of(args: argparse.Namespace):
    """The config a parsed command names (train_net keeps Detectron2's ``config_file`` for ``--config``)."""
    return getattr(args, "config", None) or getattr(args, "config_file", None)


def script_problems(script: str, argv: List[str]) -> List[str]:
    if not (REPO / script).is_file():
        return [f"{script} does not exist"]
    module = load_script(script)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = parse(module, argv)
        except SystemExit as exit_:
            return [f"{script} refuses its arguments (exit {exit_.code}): {stderr.getvalue().strip()}"]
    problems = []
    opts = list(getattr(args, "opts", None) or [])
    swallowed = [o for o in opts if o.startswith("-")]
    if swallowed:
        problems.append(f"{swallowed} come after the config overrides, where they are read as overrides, not flags")
    config = config_of(args)
    model = getattr(args, "model", None)
    from maskrcnnpp import model_zoo
    from maskrcnnpp.config import resolve_config_path, setup_cfg

    if model and model != "list":
        names = [m.name for m in model_zoo.list_models()]
        if model not in names:
            problems.append(f"--model {model} is not a shipped model ({', '.join(names)})")
        elif not config:
            config = model_zoo.get(model).config
    if config:
        try:
            resolve_config_path(config)
        except FileNotFoundError as e:
            problems.append(str(e))
            config = None
    if opts and not swallowed:
        keys = opts[::2]
        bad_keys = [k for k in keys if not CONFIG_KEY.match(k)]
        if len(opts) % 2 or bad_keys:
            problems.append(f"config overrides are not KEY VALUE pairs: {opts}")
        elif config:
            from maskrcnnpp.errors import UserError

            try:
                setup_cfg(config, opts, device="cpu")
            except UserError as e:
                problems.append(f"the overrides do not fit {config}: {e}")
    return problems


def problems_of(line: str) -> List[str]:
    """Why ``line`` is not a command the README may show; empty when it is."""
    argv = words(line)
    while argv and ASSIGNMENT.match(argv[0]):  # VAR=value before the command
        argv = argv[1:]
    if not argv:
        return [f"no command in {line!r}"]
    if argv[0] == "make":
        targets = [w for w in argv[1:] if not w.startswith("-") and not ASSIGNMENT.match(w)]
        missing = [t for t in targets if t not in makefile_targets()]
        return [f"make {t}: no such target in the Makefile" for t in missing]
    if SCRIPT.match(argv[0]) and len(argv) > 1 and re.match(r"^(tools|datasets)/[\w-]+\.py$", argv[1]):
        return script_problems(argv[1], argv[2:])
    return [f"this test does not know how to check {line!r}: add a check here or keep it out of the README"]


COMMANDS = readme_commands()


def test_the_readme_has_its_commands():
    joined = "\n".join(COMMANDS)
    for expected in ("make demo", "make test", "tools/predict.py --input my_images/ --output my_results/",
                     "datasets/prepare_dsb2018.py", "tools/train_net.py"):
        assert expected in joined, f"the README's commands lost {expected!r}"


@pytest.mark.parametrize("line", COMMANDS, ids=[f"{i:02d}:{c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command_is_accepted(line):
    assert problems_of(line) == [], line


def test_the_first_training_command_needs_no_download():
    """The README's first training example starts from no downloaded weights."""
    from maskrcnnpp.config import setup_cfg

    first = next(c for c in COMMANDS if "tools/train_net.py" in c)
    argv = words(first)
    args = load_script("tools/train_net.py").build_parser().parse_args(argv[argv.index("tools/train_net.py") + 1:])
    assert config_of(args) and not args.model, first
    weights = setup_cfg(config_of(args), args.opts, device="cpu").MODEL.WEIGHTS
    assert not re.match(r"^(detectron2|https?)://", weights), f"{first} downloads {weights}"


# ------------------------------------------------------------------ the checker itself
def test_extraction_joins_continuations_and_skips_comments():
    text = ("x\n```bash\n# a comment\n\npython tools/a.py --x 1 \\\n    --y 2   # trailing\nmake test\n```\n"
            "```python\nprint(1)\n```\nand `python tools/b.py --z` inline, `tools/c.py --w` not.\n")
    assert command_lines(text) == ["python tools/a.py --x 1      --y 2   # trailing", "make test",
                                   "python tools/b.py --z"]
    assert words(command_lines(text)[0]) == ["python", "tools/a.py", "--x", "1", "--y", "2"]


@pytest.mark.parametrize("line, problem", [
    (".venv/bin/python tools/predict.py --input my_images/ --output out/ --no-such-flag", "refuses its arguments"),
    ("python tools/predict.py --input my_images/ MODEL.DEVICE cpu --tta", "come after the config overrides"),
    ("python tools/train_net.py --config no_such_config.yaml", "neither a file nor a name"),
    ("python tools/train_net.py --config maskrcnnpp_r101_scratch.yaml MODEL.NO_SUCH_KEY 1", "do not fit"),
    ("python tools/predict.py --model no_such_model --input x/", "not a shipped model"),
    ("python tools/no_such_tool.py --input x", "does not exist"),
    ("python datasets/prepare_dsb2018.py --source x.zip", "refuses its arguments"),
    ("python tools/merge_predictions.py pred/ --no-such-flag", "refuses its arguments"),
    ("make no-such-target", "no such target"),
    ("pip install something", "does not know how to check"),
])
def test_the_checker_refuses_what_the_tools_refuse(line, problem):
    problems = problems_of(line)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "python tools/merge_predictions.py pred/",  # main(argv) builds its parser: stopped after parsing
    "OMP_NUM_THREADS=1 python tools/predict.py --input x/ --shard $SLURM_ARRAY_TASK_ID/16",
    "make demo DEMO_ARGS='--device cpu'",
])
def test_the_checker_accepts_what_the_tools_accept(line):
    assert problems_of(line) == []


# ------------------------------------------------------------------ the files the README points to
PATH_SPAN = re.compile(r"`((?:docs|tools|datasets|maskrcnnpp|configs|tests)/[\w./-]*)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_file_the_readme_names_exists():
    text = README.read_text(encoding="utf-8")
    named = set(PATH_SPAN.findall(text)) | {t for t in LINK.findall(text) if "://" not in t}
    assert named, "the README names no file"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", sorted(p.name for p in (REPO / "docs").glob("*.md")))
def test_the_links_of_docs_resolve(doc):
    path = REPO / "docs" / doc
    targets = [t for t in LINK.findall(path.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"docs/{doc} links to files that do not exist: {missing}"
