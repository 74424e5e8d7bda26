"""The revisions of one model file between a good and a bad commit, read from git without a checkout.

Why no checkout (unlike `git bisect`): the user's working tree, their results database and a run in
progress stay as they are, and every revision's bytes come from `git cat-file`, so a revision is
converted through the artifact cache like any other model file. Why refuse a model file with
uncommitted changes all the same: the bisection names a committed revision, and a user whose file
differs from every commit would be told about a history that is not the file they are looking at.

Which commits: the first-parent ancestry path from good to bad (`git rev-list --first-parent
--ancestry-path good..bad`). A merge is one step of that path: when it brings the regression in, the
merge is named (bisect the merged branch on its own to go further). Consecutive commits that leave
the model file's bytes alone cannot change its artifact, so they are grouped with the commit that
last changed it: only commits that change the file are measured, and the one named is the commit
that introduced the bad bytes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, InfraError

GIT_TIMEOUT = 60  # seconds per git command (a huge repository on a slow disk, not a hang)


@dataclass(frozen=True)
class Revision:
    commit: str
    subject: str
    blob: str  # git object id of the model file at this commit

    @property
    def short(self) -> str:
        return self.commit[:12]


@dataclass
class History:
    root: Path  # the repository's top level
    relpath: str  # the model file, relative to root
    good: Revision
    bad: Revision
    commits: list[Revision]  # the ancestry path good..bad, oldest first, bad last (good not included)

    @property
    def changes(self) -> list[Revision]:
        """The commits that changed the model file's bytes (each with the blob it introduced), oldest
        first: what a bisection measures. The commits in between have the artifact of the one before."""
        out: list[Revision] = []
        blob = self.good.blob
        for rev in self.commits:
            if rev.blob != blob:
                out.append(rev)
                blob = rev.blob
        return out

    def read(self, rev: Revision) -> bytes:
        return _git_bytes(self.root, "cat-file", "blob", rev.blob)


def _run(root: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(root), *args], input=input, capture_output=True, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise ConfigError("git: not found (hil bisect reads the model's history with git)") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"git {' '.join(args[:2])} in {root}: no answer in {GIT_TIMEOUT} s") from None


def _first_line(raw: bytes) -> str:
    text = raw.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "failed"


def _git(root: Path, *args: str) -> str:
    p = _run(root, *args)
    if p.returncode != 0:
        raise ConfigError(f"{root}: git {' '.join(args[:2])}: {_first_line(p.stderr)}")
    return p.stdout.decode()


def _git_bytes(root: Path, *args: str) -> bytes:
    p = _run(root, *args)
    if p.returncode != 0:
        raise ConfigError(f"{root}: git {' '.join(args[:2])}: {_first_line(p.stderr)}")
    return p.stdout


def _commit(root: Path, rev: str, option: str) -> str:
    p = _run(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if p.returncode != 0 or not p.stdout.strip():
        raise ConfigError(f"{option} {rev}: not a commit of the repository {root}")
    return p.stdout.decode().strip()


def history(path: Path, good: str, bad: str) -> History:
    """The commits between `good` and `bad` with the model file's blob at each; every way this can be
    the user's mistake is one ConfigError naming the file, the revision or the option."""
    if not path.exists():
        raise ConfigError(f"{path}: model file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: hil bisect needs a model file (.keras or .tflite), not a directory")
    path = path.resolve()
    p = _run(path.parent, "rev-parse", "--show-toplevel")
    if p.returncode != 0:
        raise ConfigError(f"{path}: not in a git repository (hil bisect reads the file's history from git)")
    root = Path(p.stdout.decode().strip()).resolve()
    rel = path.relative_to(root).as_posix()
    if _run(root, "ls-files", "--error-unmatch", "--", rel).returncode != 0:
        raise ConfigError(f"{path}: not tracked by git in {root} (git add and commit it first)")
    if _git(root, "status", "--porcelain", "--untracked-files=no", "--", rel).strip():
        raise ConfigError(
            f"{path}: uncommitted changes; commit or stash them first (hil bisect measures committed revisions)"
        )
    good_c, bad_c = _commit(root, good, "--good"), _commit(root, bad, "--bad")
    if good_c == bad_c:
        raise ConfigError(f"--good {good} and --bad {bad} are the same commit {good_c[:12]}: nothing to bisect")
    if _run(root, "merge-base", "--is-ancestor", good_c, bad_c).returncode != 0:
        raise ConfigError(f"--good {good} ({good_c[:12]}) is not an ancestor of --bad {bad} ({bad_c[:12]})")
    listed = _git(
        root, "log", "--first-parent", "--ancestry-path", "--reverse", "--format=%H%x1f%s", f"{good_c}..{bad_c}"
    )
    entries = [tuple(line.split("\x1f", 1)) for line in listed.splitlines() if line]
    subjects = {c: s for c, s in entries} | {good_c: _git(root, "log", "-1", "--format=%s", good_c).strip()}
    order = [good_c] + [c for c, _ in entries]  # bad, a descendant of good, is always the last
    blobs = _blobs(root, rel, order)
    revs = [Revision(c, subjects.get(c, ""), blobs[c]) for c in order]
    return History(root, rel, revs[0], revs[-1], revs[1:])


def _blobs(root: Path, rel: str, commits: list[str]) -> dict[str, str]:
    """The model file's blob at each commit, in one `git cat-file --batch-check`."""
    p = _run(
        root,
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        input="".join(f"{c}:{rel}\n" for c in commits).encode(),
    )
    if p.returncode != 0:
        raise ConfigError(f"{root}: git cat-file: {_first_line(p.stderr)}")
    out = {}
    for commit, line in zip(commits, p.stdout.decode().splitlines()):
        parts = line.split()
        if len(parts) != 2 or parts[1] != "blob":
            raise ConfigError(f"{rel}: not a file at commit {commit[:12]} (added later, renamed or deleted there?)")
        out[commit] = parts[0]
    return out
