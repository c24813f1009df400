"""A fingerprint of the interpreter state that the grader's checks rely on, and what changed since.

Taken once in the judge (``aecourse.classroom.judge``) before any submitted code runs, then compared
each time control passes between the submission's code and the grader's. It covers:

- every loaded module's namespace (a value replaced or removed; a new name is allowed in a module,
  where importing a submodule adds one, but not in a class, where it would override an inherited
  method), ``builtins`` and ``sys`` included;
- every class found in those namespaces, with its bases (``torch.Tensor``, ``nn.Module``, the
  course's models);
- every function there: its code, defaults and closure cells (``f.__code__ = ...``);
- registries that change what trusted code does without touching a name: ``sys.modules`` entries,
  import hooks, ``copyreg`` and ``copy`` dispatch tables, torch's global module hooks, torch function
  and dispatch modes, grad mode, the default dtype, signal handlers, ``gc.callbacks``, trace and
  profile functions, and threads.

Comparisons are by identity (``is``), so a value equal to the original but not the original is a change.

Reading a function's ``__code__``, ``__defaults__`` or ``__kwdefaults__`` raises an audit event, so
comparing them for some 5,000 functions calls every audit hook 15,000 times (about 15 ms in the
judge, against 3 ms for all the rest). Where ``watch_function_writes()`` was called first, they are
compared only after one of them was set: CPython raises ``object.__setattr__`` for that (and
``object.__delattr__`` for a delete), and Python code has no other way to change them. The keyword
defaults' dicts, which can change in place, are compared item by item each time.

A comparison calls no Python code that the submission could have provided: values are compared by
identity, or by ``==`` only between plain ``int``, ``bool`` and ``str``; the registries are read with
the callables bound when the fingerprint was taken; names are spelled from what was recorded then.
"""

from __future__ import annotations

import _signal
import _thread
import copy
import copyreg
import gc
import itertools
import operator
import signal
import sys
import types
import warnings
from typing import Any, Callable

# Names that the interpreter or libraries rewrite on their own while honest code runs.
VOLATILE_NAMES = frozenset({"__warningregistry__", "_abc_impl", "__slotnames__", "__abstractmethods__",
                            "__annotations__", "__parameters__", "_is_protocol", "__orig_bases__",
                            "_abc_registry", "_abc_cache", "_abc_negative_cache", "_abc_negative_cache_version"})
VOLATILE_MODULES = ("__main__", "__mp_main__", "linecache", "torch.distributed", "torch._C._distributed",
                    "torch.compiler", "torch._higher_order_ops", "torch._weights_only_unpickler", "sympy", "torch._dynamo", "torch._inductor", "torch.fx.experimental",
                    "torch._functorch", "torch._subclasses", "torch.utils._sympy", "IPython", "ipykernel",
                    "jupyter_client", "zmq", "tornado", "traitlets", "asyncio", "matplotlib", "PIL",
                    "encodings", "pkg_resources", "_pytest", "pytest", "pluggy")

VOLATILE_ATTRS = frozenset({"warnings.filters", "warnings._onceregistry", "warnings.showwarning",
                            "warnings._showwarnmsg_impl", "warnings._showwarnmsg", "warnings._filters_version",
                            "tempfile.tempdir", "torch.utils.hooks.RemovableHandle.next_id"})

# The modules the grader's checks run on: their namespaces, classes and functions are fingerprinted.
SCOPE = ("builtins", "sys", "torch", "torch._C", "torch._tensor", "torch.functional", "torch.overrides",
         "torch.random", "torch.serialization", "torch.utils.hooks", "torch.nn", "torch.optim", "torch.autograd",
         "torch.distributions", "torch.linalg", "torch.special", "numpy", "math", "copy", "copyreg", "functools",
         "operator", "itertools", "collections", "inspect", "types", "re", "warnings", "contextlib", "abc",
         "weakref", "typing", "dataclasses", "enum", "aecourse")
SUBMODULES = ("torch.nn.", "torch.optim.", "torch.autograd.", "torch.distributions.", "aecourse.", "collections.")

_is = operator.is_
_code = operator.attrgetter("__code__")
_defaults = operator.attrgetter("__defaults__")
_kwdefaults = operator.attrgetter("__kwdefaults__")
_contents = operator.attrgetter("cell_contents")
_values = operator.methodcaller("values")
_chain = itertools.chain.from_iterable
_MODULES = sys.modules  # the interpreter's own dict (rebinding ``sys.modules`` does not change it)
_GC_CALLBACKS = gc.callbacks  # the list the collector calls (rebinding ``gc.callbacks`` does not change it)


FUNCTION_ATTRS = ("__code__", "__defaults__", "__kwdefaults__")


def watch_function_writes() -> Callable[[], int]:
    """Count every write of a function's code or defaults from now on, in an audit hook (which cannot be
    removed again: call it once per process), and return the counter's reader, for ``Fingerprint(writes=...)``.
    The count lives in the two closures only: nothing else refers to it."""
    count = [0]
    events = ("object.__setattr__", "object.__delattr__")

    def counter(event: str, args: tuple, _count=count, _events=events, _attrs=FUNCTION_ATTRS) -> None:
        if event in _events and args[1] in _attrs:
            _count[0] += 1

    def writes(_count=count) -> int:
        return _count[0]
    sys.addaudithook(counter)
    return writes


def in_scope(module_name: str) -> bool:
    return module_name in SCOPE or module_name.startswith(SUBMODULES)


def _volatile(module_name: Any) -> bool:
    return not isinstance(module_name, str) or module_name.startswith(VOLATILE_MODULES)


class Fingerprint:
    """The state to compare against; ``changes()`` lists what differs, in words."""

    def __init__(self, state: Callable[[], dict[str, Any]] | None = None,
                 writes: Callable[[], int] | None = None) -> None:
        """``state``: what reads the registries (default: ``state_reader()``); ``writes``: the reader
        ``watch_function_writes()`` returned, or None to compare every function each time."""
        self._writes = writes
        with warnings.catch_warnings():  # some libraries warn when a deprecated name is looked at
            warnings.simplefilter("ignore")
            self._take(state)

    def _take(self, state: Callable[[], dict[str, Any]] | None) -> None:
        self._state = state or state_reader()
        self.spaces: list[tuple[str, bool, Any, tuple, list]] = []  # (label, is_class, mapping, keys, values)
        classes: dict[int, type] = {}
        functions: dict[int, types.FunctionType] = {}
        self.modules = {name: m for name, m in list(_MODULES.items())
                        if isinstance(m, types.ModuleType) and in_scope(name)}
        for name, module in self.modules.items():
            space = module.__dict__
            if not _volatile(name):
                self.spaces.append((name, False, space, tuple(space), list(space.values())))
            for value in list(space.values()):
                if isinstance(value, type):
                    for klass in value.__mro__:
                        classes.setdefault(id(klass), klass)
                elif isinstance(value, types.FunctionType):
                    functions.setdefault(id(value), value)
        for klass in classes.values():
            if _volatile(getattr(klass, "__module__", "")):
                continue
            space = vars(klass)
            self.spaces.append((f"{klass.__module__}.{klass.__qualname__}", True, space, tuple(space),
                                list(space.values())))
            for value in list(space.values()):
                inner = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if isinstance(inner, types.FunctionType):
                    functions.setdefault(id(inner), inner)
        self.functions = [f for f in functions.values() if not _volatile(f.__module__ or "")]
        self.names = list(map(_name, self.functions))  # spelled now: a name set later could be anything
        self.codes = list(map(_code, self.functions))
        self.defaults = list(map(_defaults, self.functions))
        self.kwdefaults = list(map(_kwdefaults, self.functions))
        self._writes_seen = self._writes() if self._writes else None  # as they were after this many writes
        self.keyword_defaults = [(n, d, _flat(d)) for n, d in zip(self.names, self.kwdefaults) if d]
        self.cells = [c for f in self.functions for c in (f.__closure__ or ()) if _filled(c)]
        self.cell_values = list(map(_contents, self.cells))
        self.state = self._state()
        self._index()

    def changes(self) -> list[str]:
        """What differs from the fingerprint, each as ``where: what`` (empty when nothing does).

        The common case, nothing changed, is a few passes in C over every value kept (about 3 ms for
        torch and the course); only a difference is looked at name by name. Should the comparison
        itself break (a builtin it uses was replaced), that is a change too."""
        try:
            return self._changes()
        except Exception as err:  # noqa: BLE001
            return [f"the interpreter, which could not even be compared ({type(err).__name__}: {err})"]

    def _changes(self) -> list[str]:
        spaces, writes = self._stable, (self._writes() if self._writes else None)
        if (list(map(len, spaces)) == self._lengths and not self._careful_changes()
                and all(map(_is, _chain(map(_values, spaces)), self._flat))
                and self._functions_same(writes) and self._keyword_defaults_same()
                and self._cells_same() and self._modules_same()):
            now = self._state()
            return [key for key, value in self.state.items() if not _same(now.get(key, _MISSING), value)]
        return self._slow_changes()

    def _functions_same(self, writes: int | None) -> bool:
        """No function's code or defaults replaced: certain when none was written since they last
        compared equal (``writes``, read before comparing, is the count they then compared equal at)."""
        if writes is not None and writes == self._writes_seen:
            return True
        same = (all(map(_is, map(_code, self.functions), self.codes))
                and all(map(_is, map(_defaults, self.functions), self.defaults))
                and all(map(_is, map(_kwdefaults, self.functions), self.kwdefaults)))
        if same:
            self._writes_seen = writes
        return same

    def _keyword_defaults_same(self) -> bool:
        return all(_same(_flat(d), flat) for _, d, flat in self.keyword_defaults)

    def _careful_changes(self) -> list[str]:
        """The few namespaces where a name changes on its own (``warnings.filters``), name by name."""
        return [f"{label}.{k}" for label, _, space, keys, values in self._careful for k, v in zip(keys, values)
                if f"{label}.{k}" not in VOLATILE_ATTRS and space.get(k, _MISSING) is not v]

    def _cells_same(self) -> bool:
        try:
            return all(map(_is, map(_contents, self.cells), self.cell_values))
        except ValueError:  # a cell emptied
            return False

    def _modules_same(self) -> bool:
        return all(map(_is, map(_MODULES.get, self._module_names, self._module_objects), self._module_objects))

    def _slow_changes(self) -> list[str]:
        found: list[str] = []
        for index, (label, is_class, space, keys, values) in enumerate(self.spaces):
            if len(space) == len(keys) and all(map(_is, space.values(), values)):
                continue
            changed = [k for k, v in zip(keys, values) if k not in VOLATILE_NAMES and space.get(k, _MISSING) is not v]
            new = [k for k in list(space) if type(k) is not str or k not in set(keys)] if is_class else []
            found += [f"{label}, a name that is not a plain string" for k in new if type(k) is not str]
            added = [k for k in new if type(k) is str and k not in VOLATILE_NAMES]
            found += [f"{label}.{k}" for k in changed + added if f"{label}.{k}" not in VOLATILE_ATTRS]
            if not [k for k in changed + added if f"{label}.{k}" not in VOLATILE_ATTRS] and len(added) == len(new):
                self.spaces[index] = (label, is_class, space, tuple(space), list(space.values()))  # the new normal
        self._index()
        found += [f"{n}.__code__" for f, n, c in zip(self.functions, self.names, self.codes) if f.__code__ is not c]
        found += [f"{n}.__defaults__" for f, n, d in zip(self.functions, self.names, self.defaults)
                  if f.__defaults__ is not d]
        found += [f"{n}.__kwdefaults__" for f, n, d in zip(self.functions, self.names, self.kwdefaults)
                  if f.__kwdefaults__ is not d]
        found += [f"{n}.__kwdefaults__ (changed in place)" for n, d, flat in self.keyword_defaults
                  if not _same(_flat(d), flat)]
        if not self._cells_same():
            found.append("a closure cell of a library function")
        found += [f"sys.modules[{name!r}]" for name, module in self.modules.items()
                  if _MODULES.get(name, module) is not module]
        now = self._state()
        return found + [key for key, value in self.state.items() if not _same(now.get(key, _MISSING), value)]

    def _index(self) -> None:
        """The flat lists the fast comparison walks."""
        careful = {label.rsplit(".", 1)[0] for label in VOLATILE_ATTRS}
        self._careful = [entry for entry in self.spaces if entry[0] in careful]
        stable = [entry for entry in self.spaces if entry[0] not in careful]
        self._stable = [space for _, _, space, _, _ in stable]
        self._lengths = [len(keys) for _, _, _, keys, _ in stable]
        self._flat = [v for _, _, _, _, values in stable for v in values]
        self._module_names = list(self.modules)
        self._module_objects = list(self.modules.values())


_MISSING = object()


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _name(f) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def _same(a: Any, b: Any) -> bool:
    """Identity, item by item for tuples; ``==`` only between plain ints, bools or strings (no
    ``isinstance``: it can ask an object's own ``__class__``)."""
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(map(_is, a, b))
    return a is b or (type(a) is type(b) and type(a) in (int, bool, str) and a == b)


def _flat(mapping: dict) -> tuple:
    """A dict's keys and values in order, read by ``dict.items`` itself (not by the object's own)."""
    return tuple(_chain(_dict_items(mapping))) if issubclass(type(mapping), dict) else (mapping,)


_dict_items = dict.items


def warm_up() -> None:
    """Let torch and the standard library make their one-time changes now, before the fingerprint:
    torch's compiler support loads (on the first optimizer otherwise), each optimizer class wraps its
    own ``step`` when first built, ``tempfile`` picks its folder."""
    import tempfile

    import torch
    import torch._dynamo  # noqa: F401  (imported by the first optimizer otherwise, and it patches torch then)

    tempfile.gettempdir()
    try:
        import tqdm
        tqdm.tqdm.monitor_interval = 0  # no monitor thread: a progress bar in an answer is not a thread left running
    except ImportError:
        pass
    stack = [torch.optim.Optimizer]
    while stack:
        for klass in stack.pop().__subclasses__():
            stack.append(klass)
            if not getattr(klass.step, "hooked", None):  # as Optimizer._patch_step_function does
                klass.step = torch.optim.Optimizer.profile_hook_step(klass.step)
                klass.step.hooked = True


SIGNALS = tuple(s for s in sorted(signal.valid_signals()) if s not in (signal.SIGKILL, signal.SIGSTOP))


def state_reader() -> Callable[[], dict[str, Any]]:
    """What reads the registries and switches outside any namespace that change what trusted code
    does, with every callable it uses bound now (a later rebinding of ``torch.get_default_dtype`` is
    the namespace comparison's to see, and is not called)."""
    def plain(value: Any, kind: type) -> Any:  # the object itself where it is no longer of its kind
        return (tuple(value) if kind is list else _flat(value)) if type(value) is kind else (value,)

    # the modules' own dicts (where this code runs from a sealed copy, ``sys`` is a snapshot of callables)
    sys_space, copy_space, copyreg_space = (vars(_MODULES[name]) for name in ("sys", "copy", "copyreg"))
    getsignal, count, callbacks, ident = _signal.getsignal, _thread._count, _GC_CALLBACKS, _thread.get_ident
    main = ident()  # where it was taken: from any other thread, that thread is not counted
    gettrace = sys.gettrace
    torch, nn_module = _MODULES.get("torch"), _MODULES.get("torch.nn.modules.module")
    torch_calls: dict[str, Callable[[], Any]] = {}
    hooks: dict[str, dict] = {}
    if torch is not None and nn_module is not None:
        torch_calls = {"torch.get_default_dtype()": torch.get_default_dtype,
                       "torch function modes": torch._C._len_torch_function_stack,
                       "torch dispatch modes": torch._C._len_torch_dispatch_stack,
                       "torch.are_deterministic_algorithms_enabled()": torch.are_deterministic_algorithms_enabled}
        hooks = {f"torch.nn.modules.module.{name}": value for name, value in list(vars(nn_module).items())
                 if type(name) is str and name.startswith("_global_") and issubclass(type(value), dict)}

    def read() -> dict[str, Any]:
        state: dict[str, Any] = {
            "sys.meta_path": plain(sys_space.get("meta_path"), list),
            "sys.path_hooks": plain(sys_space.get("path_hooks"), list),
            "sys.gettrace()": gettrace(), "gc.callbacks": tuple(callbacks),
            "copyreg.dispatch_table": plain(copyreg_space.get("dispatch_table"), dict),
            "copy._deepcopy_dispatch": plain(copy_space.get("_deepcopy_dispatch"), dict),
            "signal handlers": tuple(map(getsignal, SIGNALS)),
            "threads": count() - (ident() != main),  # Python threads besides the main one and this one
        }
        state.update({key: call() for key, call in torch_calls.items()})
        state.update({key: _flat(value) for key, value in hooks.items()})
        return state
    return read


def default_state() -> dict[str, Any]:
    """The registries now (``state_reader()()``)."""
    return state_reader()()
