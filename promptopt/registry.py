"""Name registries for optimizers, tasks and metrics (lm-evaluation-harness style).

    @optimizers.register("opro")
    class OPRO(Optimizer): ...

An unknown name raises :class:`~promptopt.errors.UnknownNameError` listing the valid
ones; the CLI's ``--method``, ``--task`` and ``--metric`` resolve through these
registries.

Plugin packages add entries through entry-point groups, one per registry
(``promptopt.optimizers``, ``promptopt.tasks``, ``promptopt.scoring._metrics``)::

    [project.entry-points."promptopt.tasks"]
    my-task = "my_package.tasks:MyTask"

Plugins are loaded lazily, the first time a registry is asked for a name or its
list of names. A plugin that fails to load (an import error, a clash with a
built-in name) does not break the others: it is left out of :meth:`Registry.names`,
listed by :meth:`Registry.broken`, and asking for it raises a
:class:`~promptopt.errors.ConfigError` that names the entry point and the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from promptopt.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to classes (or factories), filled by a decorator and plugins.

    Args:
        kind: What the names are, for messages ("method", "task", "metric").
        group: The entry-point group plugin packages register into (None: no plugins).
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._plugins: dict[str, str] = {}  # name -> "name = module:attr" of loaded plugins
        self._broken: dict[str, str] = {}  # name -> why the plugin failed to load
        self._scanned = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers the decorated object under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            if isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]
            return obj

        return deco

    def load_plugins(self) -> None:
        """Scan the entry-point group and register the plugins not loaded yet.

        Called automatically on first use; call it again after installing a plugin
        in a running process. Failures are recorded (see :meth:`broken`), never raised.
        """
        self._scanned = True
        if not self.group:
            return
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            where = f"{ep.name} = {ep.value}"
            if ep.name in self._plugins:
                if self._plugins[ep.name] != where:  # two packages claim one name
                    self._broken[ep.name] = (
                        f"entry point '{where}' in group {self.group!r} clashes with the "
                        f"plugin '{self._plugins[ep.name]}', which is used"
                    )
                continue  # loaded already (or the same package seen twice on sys.path)
            try:
                obj = ep.load()
            except Exception as exc:  # any failure inside a third-party import
                self._broken[ep.name] = (
                    f"entry point '{where}' in group {self.group!r} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            if ep.name in self._items and self._items[ep.name] is not obj:
                self._broken[ep.name] = (
                    f"entry point '{where}' in group {self.group!r} clashes with the "
                    f"{self.kind} {ep.name!r} that is already registered"
                )
                continue
            self.register(ep.name)(obj)
            self._plugins[ep.name] = where
            self._broken.pop(ep.name, None)  # loads now (e.g. a missing module was installed)

    def _ensure_scanned(self) -> None:
        if not self._scanned:
            self.load_plugins()

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise with the valid names.

        Raises:
            UnknownNameError: no such name (the message lists the valid ones).
            ConfigError: ``name`` belongs to a plugin that failed to load.
        """
        self._ensure_scanned()
        try:
            return self._items[name]
        except KeyError:
            pass
        if name in self._broken:
            raise ConfigError(f"{self.kind} {name!r} is unusable: {self._broken[name]}")
        valid = ", ".join(sorted(self._items)) or "(none)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}")

    def names(self) -> list[str]:
        """The registered names (built-in and plugins that loaded), sorted."""
        self._ensure_scanned()
        return sorted(self._items)

    def plugins(self) -> dict[str, str]:
        """Names registered by plugins, with their entry points (``name = module:attr``)."""
        self._ensure_scanned()
        return dict(self._plugins)

    def broken(self) -> dict[str, str]:
        """Plugins that failed to load, with the reason (entry point and error)."""
        self._ensure_scanned()
        return dict(self._broken)

    def __contains__(self, name: object) -> bool:
        self._ensure_scanned()
        return name in self._items


optimizers: Registry[Any] = Registry("method", "promptopt.optimizers")
tasks: Registry[Any] = Registry("task", "promptopt.tasks")
metrics: Registry[Any] = Registry("metric", "promptopt.scoring._metrics")
