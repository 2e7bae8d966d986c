"""The repository explains itself: no file points at documents outside it, and the README's Layout section is the
folder tree that git tracks."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the layout is checked against git ls-files")
    return [line for line in out.splitlines() if line]


# Notes that live beside the repository, not in it: nothing in the product may send a reader there.
OUTSIDE = re.compile(r"\bSPEC(\.md|\s+\d|\b)|ARCHITECTURE\.md|\.\./shared/(?!fixtures/)")


def test_no_file_refers_to_a_document_outside_the_repository():
    offenders = []
    for path in tracked_files():
        if path == "tests/test_repository.py" or not path.endswith((".py", ".md", ".yaml", ".toml", ".txt")):
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if OUTSIDE.search(line):
                    offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def layout_block():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("\n## Layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, flags=re.S).group(1)


def layout_paths():
    """Paths of the Layout tree: each entry is its first word; indentation (two spaces a level) nests it."""
    paths, stack = set(), []
    for line in layout_block().splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        stack = stack[:depth] + [name]
        paths.add("".join(stack))
    return paths


def test_the_readme_layout_is_the_tracked_tree():
    files = tracked_files()
    folders = {os.path.dirname(f) + "/" for f in files if os.path.dirname(f)}
    folders |= {"/".join(f.split("/")[:i]) + "/" for f in files for i in range(1, f.count("/") + 1)}
    listed = layout_paths()
    listed_folders = {p for p in listed if p.endswith("/")}
    assert listed_folders == folders, (
        f"in git but not in the Layout: {sorted(folders - listed_folders)}; "
        f"in the Layout but not in git: {sorted(listed_folders - folders)}")
    listed_files = {p for p in listed if not p.endswith("/")}
    assert listed_files <= set(files), f"listed but not tracked: {sorted(listed_files - set(files))}"
