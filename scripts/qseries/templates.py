"""Jinja2 templates of the QEMU changes, kept as data beside series.yaml.

Templates are rendered strictly: an undefined variable is an error that
names the template file and line, never an empty string in a patch.
They are rendered in jinja2's sandbox: a template can fill in text, not
reach Python objects (``''.__class__`` and the like are refused), and
it can include only templates of its own folder.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

from .errors import TemplateError
from .workdir import LOCK_NAME


class Templates:
    def __init__(self, root: Path):
        self.root = root
        self.env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(root)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def _fail(self, name: str, err: Exception) -> TemplateError:
        path = self.root / name
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
        inside = (self.root / wanted).resolve().is_relative_to(self.root.resolve())
        if ".." in Path(wanted).parts or Path(wanted).is_absolute() or not inside:
            why = (
                f"includes '{wanted}', which is outside the templates folder "
                f"{self.root}"
            )
            return TemplateError(
                path, line, why, "templates may only use files beside series.yaml"
            )
        return TemplateError(
            path, line, f"includes '{wanted}', which is not in {self.root}"
        )

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(self.root / name, None, "template not found") from None
        except jinja2.TemplateSyntaxError as err:
            raise self._fail(name, err) from None

    def read(self, name: str) -> str:
        """A file kept verbatim beside the templates (e.g. a test source)."""
        try:
            return (self.root / name).read_text(encoding="utf-8")
        except OSError as err:
            raise TemplateError(
                self.root / name, None, f"cannot read: {err.strerror}"
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
            if path in found or not path.is_file():
                continue  # rendering says what is missing
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
        found += [Path(top) / f for f in files]
    return found
