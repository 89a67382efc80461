"""Name -> implementation tables for everything a run is built from (a leaf: no other proxgt module is
imported here, so listing names costs no heavy import and cannot create an import cycle).

An entry points at its implementation by ``"module:attribute"`` and is imported on first use, so
``proxgt --help`` lists every algorithm without importing torch. Optional keyword arguments are bound to the
target (``functools.partial``), which lets one builder serve several names::

    ALGORITHMS.register("proxgt-sa", "proxgt.algorithms.proxgt:build", estimator="sa")

Adding a baseline, an estimator, a regularizer, a topology family, a problem or a data set is one new file plus
one registration line below (or a ``register`` call in user code, with an object instead of a string).

A package of the user's own registers names through Python entry points, one group per table
(``proxgt.algorithms``, ``proxgt.estimators``, ``proxgt.problems``, ``proxgt.regularizers``,
``proxgt.topologies``, ``proxgt.datasets``); in its ``pyproject.toml``::

    [project.entry-points."proxgt.algorithms"]
    my-method = "my_package.method:build"

They are read the first time a table is looked up (in every process, so ``proxgt launch`` workers see them too);
a target that cannot be imported is a one-line error naming the entry point, when a run asks for it.

``traits`` are plain words an entry declares about its target without importing it (e.g. a topology family that
changes every round, a problem that takes sparse features); rules read them with :meth:`Registry.traits`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from proxgt.errors import RegistrationError, UnknownNameError

__all__ = [
    "Registry",
    "Entry",
    "ALGORITHMS",
    "ESTIMATORS",
    "PROBLEMS",
    "REGULARIZERS",
    "TOPOLOGIES",
    "DATASETS",
    "TIME_VARYING",
    "SPARSE_FEATURES",
    "POOLED",
    "ASYNC_ONLY",
    "EXTRA_TABLE",
    "extra_tables",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: where it lives, what is bound to it, and a one-line summary for help texts."""

    name: str
    target: Any  # "module:attribute" or the object itself
    summary: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    traits: frozenset[str] = frozenset()
    origin: str = ""  # where the registration came from, for messages (an entry point's "group: name = value")


class Registry(Generic[T]):
    """An ordered table ``name -> implementation`` with lazy imports, aliases and one-line errors.

    >>> r = Registry("colour")
    >>> r.register("red", "builtins:str", summary="the red one")
    >>> r.names()
    ['red']
    >>> r.get("red")(5)
    '5'
    """

    def __init__(self, kind: str, setting: str | None = None, group: str | None = None):
        self.kind = kind
        self.setting = setting or kind  # the setting users choose it with, for messages
        self.group = group  # entry-point group of user packages' registrations (None: none)
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._loaded: dict[str, T] = {}
        self._plugins_read = group is None

    # ------------------------------------------------------------------ registering
    def register(self, name: str, target: Any, *, summary: str = "", aliases: tuple[str, ...] = (),
                 replace: bool = False, traits: tuple[str, ...] | frozenset[str] = (), origin: str = "",
                 **kwargs: Any) -> None:
        """Add ``name``; ``target`` is an object or a ``"module:attribute"`` string imported on first use."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty str, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to override it)")
        self._entries[name] = Entry(name, target, summary, dict(kwargs), frozenset(traits), origin)
        self._loaded.pop(name, None)
        for alias in aliases:
            self._aliases[alias] = name

    def _read_plugins(self) -> None:
        """Register the entry points of this table's group (once; names already registered win)."""
        if self._plugins_read:
            return
        self._plugins_read = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group or ""):
            if ep.name not in self._entries:
                self.register(ep.name, ep.value, summary=f"from {ep.value}",
                              origin=f"entry point {ep.group}: {ep.name} = {ep.value}")

    # ------------------------------------------------------------------ looking up
    def canonical(self, name: Any) -> str:
        """The registered name for ``name`` or one of its aliases; unknown names raise UnknownNameError."""
        self._read_plugins()
        if isinstance(name, str):
            if name in self._entries:
                return name
            if name in self._aliases:
                return self._aliases[name]
            key = name.strip().lower().replace("_", "-")
            for cand in (key, key.replace("-", "_")):
                if cand in self._entries:
                    return cand
                if cand in self._aliases:
                    return self._aliases[cand]
        raise UnknownNameError(f"unknown {self.setting} {name!r}; choose one of: {', '.join(self.names())}")

    def __contains__(self, name: object) -> bool:
        try:
            self.canonical(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Registered names in registration order (aliases excluded)."""
        self._read_plugins()
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        """``alias -> registered name``."""
        return dict(self._aliases)

    def entry(self, name: str) -> Entry:
        return self._entries[self.canonical(name)]

    def summary(self, name: str) -> str:
        return self.entry(name).summary

    def traits(self, name: str) -> frozenset[str]:
        """The words ``name``'s registration declares about it (no import of its target)."""
        return self.entry(name).traits

    def get(self, name: str) -> T:
        """The implementation registered as ``name`` (imported on first use)."""
        key = self.canonical(name)
        if key not in self._loaded:
            entry = self._entries[key]
            obj = self._import(entry) if isinstance(entry.target, str) else entry.target
            if entry.kwargs:
                obj = functools.partial(obj, **entry.kwargs)
            self._loaded[key] = obj
        return self._loaded[key]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


    def _import(self, entry: Entry) -> Any:
        try:
            return _resolve(entry.target)
        except (ImportError, AttributeError) as exc:  # a user package's registration, or a broken install
            where = entry.origin or f"{entry.target!r}"
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RegistrationError(
                f"{self.kind} {entry.name!r} ({where}) cannot be imported: {type(exc).__name__}: {detail}"
            ) from None


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------- traits
#: a topology family whose graph changes every gossip round (its registered builder gives the union graph)
TIME_VARYING = "time-varying"
#: a problem whose builder accepts sparse (CSR) features as they are (the others get dense features)
SPARSE_FEATURES = "sparse-features"
#: a problem whose smoothness bound (and with it ``step = auto``) comes from its training data (lambda_max of the
#: Gram matrix): across processes, a power iteration summed over every process's rows
DATA_SMOOTHNESS = "data-smoothness"
#: a centralized reference: one node on the pooled data, standing in for n nodes in suites (extra.pooled_nodes)
POOLED = "pooled"
#: a method that runs only asynchronously (--async): its declared pairwise gossip lives on the asynchronous network
ASYNC_ONLY = "async-only"
#: prefix of an algorithm's trait naming the ``[extra.<table>]`` it reads when that is not its own name
#: (``"extra-table:deepstorm"``); see :func:`extra_tables`
EXTRA_TABLE = "extra-table:"


def extra_tables(algorithm: str) -> frozenset[str]:
    """The ``[extra.<table>]`` tables ``algorithm``'s settings may come from: its own name, or those its
    registration declares (:data:`EXTRA_TABLE`)."""
    entry = ALGORITHMS.entry(algorithm)
    declared = {t[len(EXTRA_TABLE):] for t in entry.traits if t.startswith(EXTRA_TABLE)}
    return frozenset(declared or {entry.name})

# ---------------------------------------------------------------------------------------------- the tables
#: builder(ctx: proxgt.run.build.AlgorithmContext) -> algorithm object with init/update
ALGORITHMS: Registry[Callable[..., Any]] = Registry("algorithm", group="proxgt.algorithms")
#: estimator class with ``from_settings(n_nodes=, local_size=, batch=, big_batch=, period=)``
ESTIMATORS: Registry[Any] = Registry("estimator", group="proxgt.estimators")
#: builder(settings, train: Dataset) -> Problem
PROBLEMS: Registry[Callable[..., Any]] = Registry("problem", group="proxgt.problems")
#: regularizer class with ``from_settings(strength, **params)`` and ``PARAMS``/``REQUIRED`` tuples
REGULARIZERS: Registry[Any] = Registry("regularizer", "reg", group="proxgt.regularizers")
#: graph builder(n, *, seed, p, radius, edge_file) -> networkx.Graph
TOPOLOGIES: Registry[Callable[..., Any]] = Registry("topology", group="proxgt.topologies")
#: loader(*, seed, data_dir) -> (train, test or None)
DATASETS: Registry[Callable[..., Any]] = Registry("data set", "data", group="proxgt.datasets")


# ---------------------------------------------------------------------------------------------- built-ins
# One line per name. The targets are imported only when a run asks for them.

# --- algorithms
ALGORITHMS.register("proxgt-sa", "proxgt.algorithms.proxgt:build", estimator="sa",
                    summary="ProxGT with minibatch gradients (streaming data)")
ALGORITHMS.register("proxgt-sr-o", "proxgt.algorithms.proxgt:build", estimator="sr-o",
                    summary="ProxGT with SARAH, big-batch refresh (streaming data)")
ALGORITHMS.register("proxgt-sr-e", "proxgt.algorithms.proxgt:build", estimator="sr-e",
                    summary="ProxGT with SARAH, full local gradient refresh (finite data)")
ALGORITHMS.register("prox-dsgd", "proxgt.algorithms.baselines.dsgd:build", summary="Prox-DSGD / DSPG")
ALGORITHMS.register("prox-adpsgd", "proxgt.algorithms.baselines.adpsgd:build", traits=(ASYNC_ONLY,),
                    summary="Prox-AD-PSGD: asynchronous, random pairwise averaging (--async)")
ALGORITHMS.register("asy-sonata", "proxgt.algorithms.baselines.asysonata:build",
                    summary="ASY-SONATA: asynchronous gradient tracking by sum-push, proximal local step")
ALGORITHMS.register("prox-dsgt", "proxgt.algorithms.baselines.dsgt:build", summary="Prox-DSGT")
ALGORITHMS.register("deepstorm", "proxgt.algorithms.baselines.deepstorm:build_constant",
                    summary="DEEPSTORM v2, constant step")
ALGORITHMS.register("deepstorm-diminishing", "proxgt.algorithms.baselines.deepstorm:build_diminishing",
                    summary="DEEPSTORM v2, diminishing step", traits=(EXTRA_TABLE + "deepstorm",))
ALGORITHMS.register("deepstorm-v1", "proxgt.algorithms.baselines.deepstorm:build_v1",
                    summary="DEEPSTORM v1 (hybrid estimator), diminishing step")
ALGORITHMS.register("prox-dasa-gt", "proxgt.algorithms.baselines.dasa:build", summary="Prox-DASA-GT")
ALGORITHMS.register("dproxsgt", "proxgt.algorithms.baselines.dproxsgt:build", summary="DProxSGT")
ALGORITHMS.register("cdproxsgt", "proxgt.algorithms.baselines.cdproxsgt:build",
                    summary="CDProxSGT: DProxSGT with compressed gossip (--compress, --consensus-step)")
ALGORITHMS.register("prox-dasa", "proxgt.algorithms.baselines.dasa:build_dasa", summary="Prox-DASA")
ALGORITHMS.register("sppdm", "proxgt.algorithms.baselines.sppdm:build", summary="SPPDM")
ALGORITHMS.register("central-prox-sgd", "proxgt.algorithms.baselines.central:build_sgd", traits=(POOLED,),
                    summary="centralized prox-SGD on pooled data (nodes = 1)")
ALGORITHMS.register("central-proxsarah", "proxgt.algorithms.baselines.central:build_sarah", traits=(POOLED,),
                    summary="centralized ProxSARAH on pooled data (nodes = 1)")

# --- estimators
ESTIMATORS.register("sa", "proxgt.estimators.minibatch:Minibatch", summary="minibatch of b fresh samples")
ESTIMATORS.register("sr-o", "proxgt.estimators.sarah:SarahOnline", summary="SARAH, big batch B every q")
ESTIMATORS.register("sr-e", "proxgt.estimators.sarah:SarahFinite", summary="SARAH, full local gradient every q")

# --- problems
PROBLEMS.register("logistic", "proxgt.problems.linear:build_logistic", traits=(SPARSE_FEATURES, DATA_SMOOTHNESS),
                  summary="binary logistic regression with a non-convex penalty")
PROBLEMS.register("softmax", "proxgt.problems.linear:build_softmax", traits=(SPARSE_FEATURES, DATA_SMOOTHNESS),
                  summary="multinomial logistic regression")
PROBLEMS.register("least_squares", "proxgt.problems.linear:build_least_squares",
                  traits=(SPARSE_FEATURES, DATA_SMOOTHNESS), summary="least squares")
PROBLEMS.register("mlp", "proxgt.problems.nn:build_mlp", summary="784-256-10 ReLU network (--hidden)")
PROBLEMS.register("lenet", "proxgt.problems.nn:build_lenet", summary="LeNet-5 convolutional network")

# --- regularizers
REGULARIZERS.register("none", "proxgt.prox._penalties:NoReg", summary="no regularizer (h = 0)")
REGULARIZERS.register("l1", "proxgt.prox._penalties:L1", summary="lasso penalty lam*||x||_1 (mask)")
REGULARIZERS.register("l2sq", "proxgt.prox._penalties:L2Squared", aliases=("l2",),
                      summary="ridge penalty (lam/2)*||x||^2 (mask)")
REGULARIZERS.register("elastic_net", "proxgt.prox._penalties:ElasticNet", aliases=("elasticnet",),
                      summary="elastic net, scikit-learn's form (l1_ratio, mask)")
REGULARIZERS.register("group_lasso", "proxgt.prox._penalties:GroupLasso",
                      summary="group lasso lam*sum_g w_g ||x_g|| (groups or group_size, weights)")
REGULARIZERS.register("nonneg", "proxgt.prox._constraints:NonNegative", aliases=("nonnegative",),
                      summary="constraint x >= 0")
REGULARIZERS.register("box", "proxgt.prox._constraints:Box", summary="constraint lower <= x <= upper")
REGULARIZERS.register("l2_ball", "proxgt.prox._constraints:L2Ball", summary="constraint ||x||_2 <= radius")
REGULARIZERS.register("l1_ball", "proxgt.prox._constraints:L1Ball", summary="constraint ||x||_1 <= radius")
REGULARIZERS.register("support", "proxgt.prox._constraints:Support",
                      summary="constraint: zero outside a fixed support (support_file or init): sparse fine-tuning")

# --- topologies
TOPOLOGIES.register("ring", "proxgt.topology.families:ring", aliases=("cycle",), summary="cycle, degree 2")
TOPOLOGIES.register("path", "proxgt.topology.families:path", summary="path, the worst-connected tree")
TOPOLOGIES.register("star", "proxgt.topology.families:star", summary="node 0 linked to every other node")
TOPOLOGIES.register("complete", "proxgt.topology.families:complete", aliases=("full",),
                    summary="every pair linked (exact averaging in one round)")
TOPOLOGIES.register("grid", "proxgt.topology.families:grid", summary="2-D grid, as square as nodes allows")
TOPOLOGIES.register("torus", "proxgt.topology.families:torus", summary="2-D grid with wrap-around")
TOPOLOGIES.register("hypercube", "proxgt.topology.families:hypercube", summary="hypercube (nodes a power of 2)")
TOPOLOGIES.register("exponential", "proxgt.topology.families:exponential", aliases=("exp",),
                    summary="node i linked to i +- 2^k")
TOPOLOGIES.register("erdos_renyi", "proxgt.topology.families:erdos_renyi", aliases=("er", "gnp", "erdos"),
                    summary="G(n, p) random graph (--topology-p)")
TOPOLOGIES.register("random_geometric", "proxgt.topology.families:random_geometric", aliases=("rgg", "geometric"),
                    summary="random geometric graph in the unit square (--topology-radius)")
TOPOLOGIES.register("file", "proxgt.topology.families:file", aliases=("edge_list", "edgelist"),
                    summary="edge list (--edge-file) or the support of the mixing matrix (--weights-file)")
TOPOLOGIES.register("one-peer-exponential", "proxgt.topology.time_varying:one_peer_exponential",
                    aliases=("one_peer_exponential",), traits=(TIME_VARYING,),
                    summary="time-varying: each round node i talks to i XOR 2^k, k cycling (nodes a power of 2)")
TOPOLOGIES.register("random-matching", "proxgt.topology.time_varying:random_matching", aliases=("random_matching",),
                    traits=(TIME_VARYING,),
                    summary="time-varying: a fresh random matching each round")

# --- data sets
DATASETS.register("a9a-synthetic", "proxgt.data._builtin:load_a9a_synthetic", aliases=("synthetic",),
                  summary="seeded a9a-shaped data, 32561 x 123, 2 classes (no files needed)")
DATASETS.register("breast_cancer", "proxgt.data._builtin:load_sklearn_set", which="breast_cancer",
                  summary="scikit-learn breast cancer, 569 x 30, 2 classes, standardized")
DATASETS.register("digits", "proxgt.data._builtin:load_sklearn_set", which="digits",
                  summary="scikit-learn digits, 1797 x 64, 10 classes, pixels in [0, 1]")
DATASETS.register("iris", "proxgt.data._builtin:load_sklearn_set", which="iris",
                  summary="scikit-learn iris, 150 x 4, 3 classes")
DATASETS.register("wine", "proxgt.data._builtin:load_sklearn_set", which="wine",
                  summary="scikit-learn wine, 178 x 13, 3 classes, standardized")
DATASETS.register("fashion-mnist", "proxgt.data._builtin:load_fashion_mnist_set", aliases=("fashion_mnist",),
                  summary="Fashion-MNIST IDX files (--data-dir), 60000 train + 10000 test, 10 classes")
DATASETS.register("a9a", "proxgt.data._adult:load_a9a",
                  summary="LIBSVM's a9a built from UCI Adult: 32561 x 123 train, 16281 test")
DATASETS.register("rcv1-synthetic", "proxgt.data._synthetic:load_rcv1_synthetic",
                  summary="seeded rcv1-shaped sparse data, 20242 x 47236, ~0.15% non-zero, 2 classes")
