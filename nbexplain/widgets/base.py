"""The base class of every nbexplain view."""

from __future__ import annotations

import difflib
import pathlib
from typing import Any, ClassVar

import anywidget
import traitlets

__all__ = ["NbxWidget", "RequestWidget", "STATIC", "bundle_path"]

#: Where the JS build (``npm run build``) writes one ESM bundle per view.
STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"

# ipywidgets DOMWidget keyword arguments that are legitimate on every view.
_WIDGET_KWARGS = {"layout", "tabbable", "tooltip", "log", "keys"}


def bundle_path(name: str) -> pathlib.Path:
    """Path of the built bundle for view ``name`` (``nbexplain/static/<name>.js``)."""
    return STATIC / f"{name}.js"


class NbxWidget(anywidget.AnyWidget):
    """Base class: wires a view's bundle, rejects unknown keyword arguments, gives a short repr.

    Subclasses set ``_bundle = "<view>"`` (the file ``js/<view>.ts``, built to
    ``nbexplain/static/<view>.js``) and override :meth:`_repr_fields`.
    """

    _bundle: ClassVar[str] = ""

    #: ``"auto"`` follows the Jupyter theme; ``"light"``/``"dark"`` force one.
    theme = traitlets.Enum(["auto", "light", "dark"], default_value="auto").tag(sync=True)
    #: Presentation scale of text and figures (1 = the notebook's font size, never below 13 px; 1.5 for a
    #: projector). Every view reads it as the CSS variable ``--nbx-scale`` on its root.
    scale = traitlets.Float(1.0, min=0.5, max=4.0).tag(sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        bundle = cls.__dict__.get("_bundle")
        if bundle:
            path = bundle_path(bundle)
            # A pathlib.Path is turned into watched file contents by anywidget (hot reload with
            # ANYWIDGET_HMR=1). A missing bundle is reported when the widget is created.
            cls._esm = path if path.is_file() else ""  # type: ignore[attr-defined]
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        allowed = set(self.class_trait_names()) | _WIDGET_KWARGS
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            public = sorted(n for n in allowed if not n.startswith("_"))
            close = difflib.get_close_matches(unknown[0], public, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else f" Valid names: {public}."
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}.{hint}")
        if self._bundle and not bundle_path(self._bundle).is_file():
            raise RuntimeError(
                f"The JavaScript bundle for {type(self).__name__} is missing ({bundle_path(self._bundle)}). "
                "Build it with `npm run build` in the nbexplain source tree (or `make demo`), or install a "
                "released wheel, which ships it."
            )
        super().__init__(**kwargs)

    def _repr_fields(self) -> dict[str, Any]:
        """Key facts shown by ``repr`` (override in subclasses)."""
        return {}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"


class RequestWidget(NbxWidget):
    """A view that asks the kernel for genuinely new work (another target, more samples, a re-run).

    The view sends ``{"type": _request_type, "id": n, ...}``, coalescing so that only the latest request
    is pending. While :meth:`_serve` runs, ``busy`` is true; a failure is shown as ``error`` and leaves
    the widget usable; ``completed_request`` then tells the view which request was answered.
    """

    _request_type: ClassVar[str] = "request"

    busy = traitlets.Bool(False).tag(sync=True)
    completed_request = traitlets.Int(0).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._handle_message)

    def _serve(self, content: dict[str, Any]) -> None:
        """Do the work a request asks for (override in subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not serve kernel requests")

    def _handle_message(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != self._request_type:
            return
        request = int(content.get("id", 0))
        self.busy = True
        try:
            self._serve(content)
        except Exception as err:  # shown in the view; the widget stays usable
            self.error = f"{type(err).__name__}: {err}"
        else:
            self.error = ""  # a request answered clears the last one's error
        finally:
            with self.hold_sync():
                self.busy = False
                self.completed_request = max(self.completed_request, request)
