"""carry: a file of the series put into the tree, verbatim or rendered.

The file beside series.yaml is taken as it is ('source:') or rendered
from a jinja2 template ('template:', with since, base and the change's
own keys as its context).  'mode: add' (the default) refuses a file the
base has already; 'mode: replace' refuses one it does not have; 'mode:
delete' removes a file of the base (and takes no source).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import BadKey, Context, Files, Generator, Reader, Reads, absent, exists, one_of

MODES = ("add", "replace", "delete")


def _check(params: Mapping[str, str]) -> None:
    mode = params.get("mode", "add")
    if mode not in MODES:
        raise BadKey(f"must be one of: {', '.join(MODES)}", "mode")
    if mode == "delete":
        given = [k for k in ("source", "template") if k in params]
        if given:
            raise BadKey("mode: delete takes no source or template", given[0])
        return
    one_of(params, ("source", "template"))


def _reads(params: Mapping[str, str]) -> Reads:
    if "template" in params:
        return (params["template"],), ()
    if "source" in params:
        return (), (params["source"],)
    return (), ()


def _apply(read: Reader, ctx: Context) -> Files:
    path = ctx.param("file")
    mode = ctx.get("mode", "add")
    if mode == "add":
        absent(read, path, ctx)
    else:
        exists(read, path, ctx)
    if mode == "delete":
        return {path: None}
    if "template" in ctx.params:
        context = {k.replace("-", "_"): v for k, v in ctx.params.items()}
        text = ctx.templates.render(
            ctx.param("template"), **context, since=ctx.since, base=ctx.base
        )
    else:
        text = ctx.templates.read(ctx.param("source"))
    return {path: text}


KIND = Generator(
    "carry",
    "add, replace or delete a file of the tree, verbatim or from a template",
    _apply,
    ("file",),
    ("source", "template", "mode"),
    reads=_reads,
    paths=("file",),
    check=_check,
)
