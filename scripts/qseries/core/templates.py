"""Jinja2 templates of the QEMU changes, kept as data beside series.yaml.

Templates are rendered strictly: an undefined variable is an error that
names the template file and line, never an empty string in a patch.
They are rendered in jinja2's sandbox: a template can fill in text, not
reach Python objects (``''.__class__`` and the like are refused), and
it can include only templates of its own folder, symlinks included: a
file whose real path is outside the folder is not there for a template.
Limits of memory and time are the renderer's (render.py): here, going
over one is reported at the template's line.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

from ..ground.errors import TemplateError
from ..ground.workdir import LOCK_NAME

# Where a user sets the limits (render.limits_from reads them).
MEMORY_VARIABLE = "QSERIES_TEMPLATE_MEMORY"
CPU_VARIABLE = "QSERIES_TEMPLATE_CPU"


@dataclass(frozen=True)
class Limits:
    """What rendering the templates of a run may use, in all."""

    memory_mib: int
    cpu_seconds: int

    def describe(self) -> str:
        return (
            f"templates may use {self.memory_mib} MiB of memory and "
            f"{self.cpu_seconds} s of CPU time ({MEMORY_VARIABLE}, "
            f"{CPU_VARIABLE})"
        )


class OverTime(Exception):
    """Raised in the renderer when its CPU time runs out (SIGXCPU)."""


def inside(root: Path, path: Path) -> bool:
    """Is path, symlinks resolved, inside root (resolved too)?"""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


class _Loader(jinja2.FileSystemLoader):
    """Templates of one folder, none that a symlink leads out of."""

    def __init__(self, root: Path):
        super().__init__(str(root))
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if not inside(self.root, Path(filename)):
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


class Templates:
    def __init__(self, root: Path, limits: Limits | None = None):
        self.root = root
        self.limits = limits
        self.env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            loader=_Loader(root),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def _fail(self, name: str, err: Exception) -> TemplateError:
        path = self.root / name
        if isinstance(err, MemoryError | OverTime):
            return self._over(path, err)
        if isinstance(err, jinja2.TemplateNotFound):
            return self._not_found(path, err, self._line_in(path, err))
        line = getattr(err, "lineno", None)
        if line is None:
            for frame in reversed(traceback.extract_tb(err.__traceback__)):
                if Path(frame.filename) == path:
                    line = frame.lineno
                    break
        message = getattr(err, "message", None) or str(err)
        return TemplateError(path, line, f"template error: {message}")

    def _over(self, path: Path, err: Exception) -> TemplateError:
        """A limit was hit: named at the innermost template line running."""
        line = None
        tb = err.__traceback__
        while tb is not None:
            # A frame of compiled template code (jinja2 rewrites them
            # into template lines only on some of its paths), or one
            # rewritten already.
            scope = tb.tb_frame.f_globals
            template = scope.get("__jinja_template__")
            if template is not None and template.filename is not None:
                path = Path(template.filename)
                line = template.get_corresponding_lineno(tb.tb_lineno)
            elif "__jinja_exception__" in scope:
                path, line = Path(tb.tb_frame.f_code.co_filename), tb.tb_lineno
            tb = tb.tb_next
        which = "memory" if isinstance(err, MemoryError) else "CPU time"
        if self.limits is None:
            return TemplateError(path, line, f"rendering ran out of {which}")
        size = (
            f"{self.limits.memory_mib} MiB"
            if isinstance(err, MemoryError)
            else f"{self.limits.cpu_seconds} s"
        )
        return TemplateError(
            path,
            line,
            f"rendering went over its {which} limit of {size}",
            self.limits.describe(),
        )

    @staticmethod
    def _line_in(path: Path, err: Exception) -> int | None:
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            if Path(frame.filename) == path:
                return frame.lineno
        return None

    def _not_found(
        self, path: Path, err: jinja2.TemplateNotFound, line: int | None
    ) -> TemplateError:
        """An include or import of a template that is not there."""
        wanted = str(err.name)
        hint = "templates may only use files beside series.yaml"
        escapes = ".." in Path(wanted).parts or Path(wanted).is_absolute()
        if escapes:
            why = (
                f"includes '{wanted}', which is outside the templates folder "
                f"{self.root}"
            )
            return TemplateError(path, line, why, hint)
        if not inside(self.root, self.root / wanted):
            real = os.path.realpath(self.root / wanted)
            why = (
                f"includes '{wanted}', which leads to {real} through a "
                f"symlink, outside the templates folder {self.root}"
            )
            return TemplateError(path, line, why, hint)
        return TemplateError(
            path, line, f"includes '{wanted}', which is not in {self.root}"
        )

    def _outside(self, name: str) -> TemplateError | None:
        """The error for a file of the folder that a symlink leads out of."""
        if inside(self.root, self.root / name):
            return None
        real = os.path.realpath(self.root / name)
        return TemplateError(
            self.root / name,
            None,
            f"leads to {real} through a symlink, outside the folder {self.root}",
            "a series may only use files beside series.yaml",
        )

    def _load(self, name: str) -> jinja2.Template:
        outside = self._outside(name)
        if outside is not None:
            raise outside
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(self.root / name, None, "template not found") from None
        except jinja2.TemplateSyntaxError as err:
            raise self._fail(name, err) from None

    def read(self, name: str) -> str:
        """A file kept verbatim beside the templates (e.g. a test source)."""
        outside = self._outside(name)
        if outside is not None:
            raise outside
        try:
            # As it is: a diff's CRLF lines stay CRLF.
            return (self.root / name).read_bytes().decode("utf-8")
        except OSError as err:
            raise TemplateError(
                self.root / name, None, f"cannot read: {err.strerror}"
            ) from None
        except UnicodeDecodeError as err:
            raise TemplateError(
                self.root / name,
                None,
                f"not UTF-8 text (byte {err.start + 1})",
                "a carried file is text; give binary files as a diff (git diff "
                "--binary)",
            ) from None

    def closure(self, names: Iterable[str]) -> list[Path]:
        """The files of these templates and of every template they include,
        import or extend, transitively: what rendering them can read.  A
        reference computed at render time could name any file: then every
        file of the referring template's folder counts."""
        found: set[Path] = set()
        todo = list(names)
        while todo:
            path = self.root / todo.pop()
            if path in found or not path.is_file() or not inside(self.root, path):
                continue  # rendering says what is missing or outside
            found.add(path)
            try:
                parsed = self.env.parse(path.read_text(encoding="utf-8"))
                refs = list(jinja2.meta.find_referenced_templates(parsed))
            except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
                continue  # the file itself counts; rendering says the rest
            for ref in refs:
                if ref is None:
                    found.update(_files_under(path.parent))
                else:
                    todo.append(ref)
        return sorted(found)

    def render(self, name: str, **context: Any) -> str:
        """Render a whole template."""
        template = self._load(name)
        try:
            return template.render(**context)
        except Exception as err:  # any error of the template
            raise self._fail(name, err) from None

    def has_macro(self, name: str, macro: str) -> bool:
        """Does the template define this macro?  (Optional edits.)"""
        try:
            return hasattr(self._load(name).make_module({}), macro)
        except TemplateError:
            raise
        except Exception as err:  # any error of the template
            raise self._fail(name, err) from None

    def macro(self, name: str, macro: str, **context: Any) -> str:
        """Render one macro of a template (a fragment of a change)."""
        template = self._load(name)
        try:
            module = template.make_module(context)
            fn = getattr(module, macro, None)
            if fn is None:
                raise TemplateError(
                    self.root / name, None, f"template has no macro '{macro}'"
                )
            return str(fn())
        except TemplateError:
            raise
        except Exception as err:  # any error of the template
            raise self._fail(name, err) from None


def _files_under(folder: Path) -> list[Path]:
    """Every file below folder, not entering dot directories (git's, a work
    dir's, a virtualenv's), caches, or a qseries work dir whatever its
    name (it holds the lock every run takes)."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d != "__pycache__"
            and not (Path(top) / d / LOCK_NAME).is_file()
        )
        found += [Path(top) / f for f in files if inside(folder, Path(top) / f)]
    return found
