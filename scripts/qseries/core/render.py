"""The series' templates rendered in a child, under limits of memory and
CPU time.

A template is data of the series, and a series may come from anyone:
jinja2's sandbox keeps it from Python's objects, but not from asking
for a string of 3 GB or a loop of 10^10 turns.  So the templates of a
run are rendered by one child (``python -m qseries.core.render``, started
through proc) whose address space and CPU time are limited with
setrlimit before it reads any template; the generators ask it for each
render as they go (LimitedTemplates is a Templates whose renders are
the child's), one question and one answer a line each, in JSON.

Going over the memory limit is a MemoryError in the child and over the
CPU limit a SIGXCPU turned into OverTime: both are reported at the
template line that was running.  The child is killed (hard CPU limit,
or no answer in time) only when neither could be raised; the template
asked for is named then.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from ..ground.errors import TemplateError, UsageError
from .templates import CPU_VARIABLE, MEMORY_VARIABLE, Limits, OverTime, Templates

if TYPE_CHECKING:  # the child has no use for proc: it starts faster
    from ..ground.proc import Conversation

# Address space, not resident memory: what setrlimit can bound.  The
# renderer needs about 60 MiB of it (Python and jinja2); the templates of
# v2 render in a few milliseconds.  2 GiB leaves any real template room,
# and a request for 3 GB is refused at once.
DEFAULT_MEMORY_MIB = 2048
# CPU seconds for every template of a run together: some thousand times
# what they need, short enough that a hostile loop is stopped soon.
DEFAULT_CPU_SECONDS = 20
# After the soft CPU limit (SIGXCPU), the hard one kills the child.
CPU_GRACE = 2
# A wall-clock bound on each answer, beyond the CPU limit: for a child
# that waits rather than computes.
ANSWER_SLACK = 10.0


def limits_from(env: Mapping[str, str]) -> Limits:
    """The limits, from QSERIES_TEMPLATE_MEMORY (MiB) and
    QSERIES_TEMPLATE_CPU (seconds) when set."""

    def read(name: str, default: int, low: int) -> int:
        text = env.get(name, "").strip()
        if not text:
            return default
        if not text.isdigit() or not low <= int(text) <= 1 << 20:
            raise UsageError(
                f"{name}={text[:20]!r} is not a whole number from {low} to {1 << 20}",
                f"unset it for the default of {default}",
            )
        return int(text)

    return Limits(
        memory_mib=read(MEMORY_VARIABLE, DEFAULT_MEMORY_MIB, 128),
        cpu_seconds=read(CPU_VARIABLE, DEFAULT_CPU_SECONDS, 1),
    )


class LimitedTemplates(Templates):
    """Templates whose renders are done by the child of limited()."""

    def __init__(self, root: Path, limits: Limits, child: Conversation):
        super().__init__(root, limits)
        self.child = child

    def _ask(self, op: str, name: str, macro: str | None, context: Any) -> Any:
        question = {"op": op, "name": name, "macro": macro, "context": context}
        answer = self.child.ask(json.dumps(question))
        if answer is None:
            raise self._ended(name)
        reply = json.loads(answer)
        if "error" in reply:
            path, line, message, hint = reply["error"]
            raise TemplateError(path, line, message, hint)
        return reply["value"]

    def _ended(self, name: str) -> TemplateError:
        """The child ended or did not answer: say which limit it was."""
        code = self.child.proc.returncode
        assert self.limits is not None
        if code in (-signal.SIGKILL, -signal.SIGXCPU):
            why = f"went over its CPU time limit of {self.limits.cpu_seconds} s"
        elif code == -signal.SIGTERM:
            why = f"did not end within {self.child.time_limit:g} s"
        else:
            why = f"stopped: the renderer ended with {code}"
        return TemplateError(
            self.root / name, None, f"rendering {why}", self.limits.describe()
        )

    def render(self, name: str, **context: Any) -> str:
        return str(self._ask("render", name, None, context))

    def has_macro(self, name: str, macro: str) -> bool:
        return bool(self._ask("has_macro", name, macro, {}))

    def macro(self, name: str, macro: str, **context: Any) -> str:
        return str(self._ask("macro", name, macro, context))


@contextlib.contextmanager
def limited(root: Path, limits: Limits | None = None) -> Iterator[LimitedTemplates]:
    """The templates of root, rendered by a child under limits (from the
    environment by default) while the context lasts."""
    limits = limits_from(os.environ) if limits is None else limits
    package_parent = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, path) if p),
    }
    # -P: a qseries/ in the directory qseries runs in (often the series'
    # folder) is never what the child imports.  The child stays in that
    # directory: root may be relative to it, as the messages show it.
    argv = [
        sys.executable,
        "-P",
        "-m",
        "qseries.core.render",
        str(root),
        str(limits.memory_mib),
        str(limits.cpu_seconds),
    ]
    from ..ground.proc import start_conversation

    wait = limits.cpu_seconds + CPU_GRACE + ANSWER_SLACK
    with start_conversation(argv, env, wait) as child:
        yield LimitedTemplates(root, limits, child)


def _over_time(signum: int, frame: FrameType | None) -> None:
    raise OverTime()


def _answer(templates: Templates, question: dict[str, Any]) -> Any:
    op, name = question["op"], str(question["name"])
    context = {str(k): v for k, v in dict(question["context"]).items()}
    if op == "render":
        return templates.render(name, **context)
    if op == "macro":
        return templates.macro(name, str(question["macro"]), **context)
    if op == "has_macro":
        return templates.has_macro(name, str(question["macro"]))
    raise ValueError(f"unknown question {op!r}")


def _wire(err: TemplateError) -> list[Any]:
    """err as the parent makes it again: path, line, message, hint."""
    where = f"{err.path}:{err.line}" if err.line is not None else str(err.path)
    message = err.message.removeprefix(f"{where}: ")
    return [str(err.path), err.line, message, err.hint]


def serve(root: Path, limits: Limits, questions: IO[str], answers: IO[str]) -> None:
    """The child: limits set, then one answer per question until the end
    of its input."""
    memory = limits.memory_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + CPU_GRACE))
    signal.signal(signal.SIGXCPU, _over_time)
    templates = Templates(root, limits)
    for line in questions:
        if not line.strip():
            continue
        question = json.loads(line)
        reply: dict[str, Any]
        try:
            reply = {"value": _answer(templates, question)}
        except TemplateError as err:
            reply = {"error": _wire(err)}
        except (MemoryError, OverTime) as err:  # outside a template's code
            reply = {"error": _wire(templates._over(root / question["name"], err))}
        answers.write(json.dumps(reply) + "\n")
        answers.flush()


def main(argv: list[str]) -> int:
    root, memory, cpu = argv
    serve(Path(root), Limits(int(memory), int(cpu)), sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
