"""The shape of the package, read from its source: no import circles, a thin command line,
the kernels in their own room, the public names where users import them from.

Every ``import`` statement counts, also those inside functions (a function-level import
is still a dependency; it only runs later).  An import of a package's submodule does not
count as an import of the package's ``__init__`` (Python runs it, but it is not a
dependency the importing module chose).
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "cdfast"
CLI_MAX_LINES = 250


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """Dotted name -> (file, is a package __init__) for every module of cdfast."""
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _imports(name: str, path: pathlib.Path, is_pkg: bool, mods) -> set[str]:
    """The cdfast modules ``name`` imports anywhere in its source."""
    base = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                module = pkg + ("." + node.module if node.module else "")
            else:
                module = node.module or ""
            if module not in mods:  # an extension module (cdfast._kernels._cdfast): no source to read
                continue
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] != "cdfast":
                continue
            while t and t not in mods:  # `import cdfast.x.y` -> the deepest module that has a source
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


MODS = _modules()
GRAPH = {name: _imports(name, path, is_pkg, MODS) for name, (path, is_pkg) in MODS.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_scan_sees_function_level_imports_and_finds_circles():
    """The checker itself: a circle through an import inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    # cdfast.cli.report imports cdfast.reporting inside its run(): the scan must see it
    assert "cdfast.reporting" in GRAPH["cdfast.cli.report"]
    tree = ast.parse("def f():\n    from . import x\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


def test_no_import_circles():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_nothing_imports_the_top_package():
    """Modules import the module that defines a name, never ``cdfast`` itself (which imports
    everything); the command line only reads the version from it."""
    offenders = sorted(m for m, deps in GRAPH.items() if "cdfast" in deps and m not in ("cdfast.cli", "cdfast.__main__"))
    assert offenders == []
    src = (PKG / "cli" / "__init__.py").read_text()
    assert "from .. import __version__" in src


def test_command_modules_are_small_and_registered():
    cli = importlib.import_module("cdfast.cli")
    too_long = {p.name: n for p in (PKG / "cli").glob("*.py") if (n := len(p.read_text().splitlines())) > CLI_MAX_LINES}
    assert too_long == {}, f"CLI modules over {CLI_MAX_LINES} lines: {too_long}"
    commands = sorted(p.stem for p in (PKG / "cli").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(m.__name__.rpartition(".")[2] for m in cli.COMMANDS) == commands
    for module in cli.COMMANDS:
        assert callable(module.add_parser), module.__name__


def test_the_command_line_does_not_reach_into_the_kernels():
    """The CLI talks to the library; the kernels are reached through the library only."""
    bad = sorted((m, d) for m, deps in GRAPH.items() if m.startswith("cdfast.cli")
                 for d in deps if d.startswith("cdfast._kernels"))
    assert bad == []


def test_the_kernel_room_imports_only_the_validation_from_outside():
    allowed = {"cdfast._validate"}
    for m, deps in GRAPH.items():
        if not m.startswith("cdfast._kernels") or m == "cdfast._kernels._compile":
            continue  # _compile calls the public bound functions, to compile what they use
        outside = {d for d in deps if not d.startswith("cdfast._kernels")} - allowed
        assert outside == set(), (m, outside)


PUBLIC = {
    "cdfast": ["ChinchillaFit", "CurveFit", "ExamResult", "FitWarning", "HorizonFit", "OptimalSchedule", "PeakLRFit",
               "Q", "RefinedSchedule", "ScalingLaw2D", "SchedulePlan", "asymptotic_constants", "available_backends",
               "average_bound_gradient", "average_iterate_bound", "bound_curve", "bound_curve_terms",
               "bound_gradient", "bound_terms", "bound_vs_peak_lr", "compare_models", "data", "fit_chinchilla_law",
               "fit_horizon_law", "fit_horizon_law_by_group", "fit_loss_curve", "fit_loss_curves", "fit_peak_lr_law",
               "io", "last_iterate_bound", "models", "optimal_eta_ref", "optimal_peak_lr", "optimal_schedule",
               "plan_schedule", "qualifying_exam", "refine_schedule", "schedules", "sweep", "table1", "report",
               "Report"],
    "cdfast.schedules": ["DECAYS", "FAMILIES", "constant", "continuous", "cosine", "cosine_onecycle", "family",
                         "from_callable", "from_optax", "from_torch", "inverse_sqrt", "linear", "make",
                         "piecewise_constant", "refined", "with_warmup", "wsd"],
    "cdfast.io": ["CONVENTIONS", "FORMATS", "LR_RTOL", "SCHEDULE_FORMATS", "TrainingLog", "WandbRun",
                  "curve_from_columns", "detect_format", "lambdalr_form", "lr_from_config", "read_csv", "read_log",
                  "read_loss_file", "read_lr_file", "read_wandb_json", "write_schedule"],
    "cdfast.models": ["AnnealingLaw", "Averaged", "Bound", "DEFAULT_MODEL", "Leaderboard", "LossModel", "MODELS",
                      "MultiPowerLaw", "Param", "PowerBound", "compare_models", "get_model", "names"],
    "cdfast.plot": ["curve_figure", "distinct_labels", "exam_figure", "fit_figure", "peak_lr_figure", "plan_figure",
                    "plot_bound_curve", "plot_exam", "plot_fit", "plot_peak_lr", "plot_peak_scan", "plot_prediction",
                    "plot_residuals", "plot_schedule", "prediction_figure", "report_figure", "save_png", "use_agg"],
    "cdfast.data": ["SAMPLE_RUN"],
    "cdfast.fit": ["CurveFit", "FitWarning", "fit_loss_curve", "fit_loss_curves", "r_squared", "PRIOR_DRAW",
                   "MODEL_ERROR"],
    "cdfast.optimize": ["optimal_schedule", "OptimalSchedule", "stationary_schedule", "refined"],
    "cdfast.cli": ["main", "build_parser", "CliError", "parse_schedule", "atomic_write", "DEFAULT_SCHEDULES"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_stay_where_users_import_them(module):
    m = importlib.import_module(module)
    missing = [n for n in PUBLIC[module] if not hasattr(m, n)]
    assert missing == []


def test_one_function_one_home():
    """A name re-exported elsewhere is the same object, not a copy."""
    import cdfast
    from cdfast import fit, models, optimize, schedules

    assert optimize.refined is schedules.refined
    assert fit.fit_loss_curves is cdfast.fit_loss_curves
    assert models.compare_models is cdfast.compare_models
