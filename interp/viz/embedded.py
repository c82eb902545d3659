"""A view rendered by one of our plain-DOM scripts, the same in a notebook and in a report.

A subclass names its script (`SCRIPT`, a file beside this one), the function that script defines
(`RENDER`, called as `RENDER(element, data)`), its container's CSS class, a label for the page that
has not run the script, and the text a notebook shows where the view was not saved. Each instance
holds its `data` (everything the view shows travels with it, so it works offline) and an `id`.

In a notebook the view is an anywidget (its front end ships with the package); in a report the script
is inlined once per page (`bundle_js`) and called per view (`html`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from interp.base.html import script_json


@cache
def script_source(name: str) -> str:
    """A script beside this module, safe to inline in a <script> element."""
    return (Path(__file__).parent / name).read_text(encoding="utf-8").replace("</script", "<\\/script")


@cache
def _widget_class(script: str, render: str):
    import anywidget
    import traitlets

    class ScriptWidget(anywidget.AnyWidget):
        _esm = (
            script_source(script)
            + f"\nexport default {{ render({{ model, el }}) {{ {render}(el, model.get('data')); }} }};\n"
        )
        data = traitlets.Dict().tag(sync=True)

    ScriptWidget.__name__ = ScriptWidget.__qualname__ = f"{render[len('interp') :]}Widget"
    return ScriptWidget


class EmbeddedView:
    """The data of one view; displays itself as a widget in notebooks and as HTML in reports."""

    SCRIPT: ClassVar[str]
    RENDER: ClassVar[str]
    ROOT_CLASS: ClassVar[str]
    LABEL: ClassVar[str]
    NOT_DISPLAYED: ClassVar[str]

    data: dict[str, Any]
    id: str

    @classmethod
    def bundle_js(cls) -> str:
        """The script a page needs once for every view of this kind in it (a report inlines it in <head>)."""
        return script_source(cls.SCRIPT)

    def html(self, include_bundle: bool = True) -> str:
        """A container and the call that renders into it (plus the renderer, if asked)."""
        script = f"<script>{self.bundle_js()}</script>" if include_bundle else ""
        return (
            f"{script}<div id='{self.id}' class='{self.ROOT_CLASS}'><p class='interp-needs-js'>"
            f"{self.LABEL}: its JavaScript has not run here; open the report in a web browser.</p></div>"
            f"<script>{self.RENDER}(document.getElementById({script_json(self.id)}), "
            f"{script_json(self.data)});</script>"
        )

    def widget(self):
        """The view as an anywidget (what a notebook displays)."""
        return _widget_class(self.SCRIPT, self.RENDER)(data=self.data)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.NOT_DISPLAYED
        return bundle
