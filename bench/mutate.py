"""Mutation testing of distprec's core modules: does a wrong line make a test fail?

A small own mutator rather than mutmut: mutmut 3 rewrites every function into a
trampoline and runs its own copy of the tree, which Ray workers (separate processes that
import distprec from PYTHONPATH) do not see; mutmut 2 is unmaintained. This one needs no
dependency: it parses a module, makes one small change at a time (an operator, a
constant, a dropped call), writes the mutant into a copy of the repository, and runs only
the tests that cover that module there (``-x``: the first failure kills the mutant).

    python bench/mutate.py                      # every module of MODULES, sampled
    python bench/mutate.py distprec/checks.py --max 0     # every mutant of one module

Prints each surviving mutant (module:line, the change) and the score; docs/MUTATION.md
holds the measured one. Slow (a pytest run per mutant): never part of CI.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGY_TESTS = ["tests/test_strategies_prefix.py", "tests/test_strategies_minimize.py",
                  "tests/test_strategies_properties.py"]
#: module -> the tests that cover it (run in this order, fastest first)
MODULES: dict[str, list[str]] = {
    "distprec/checks.py": ["tests/test_checks.py", "tests/test_tolerance_names.py"],
    "distprec/atomic.py": ["tests/test_atomic.py"],
    # worst-first and sensitivity read the Info that tell() records
    "distprec/strategies/base.py": [*STRATEGY_TESTS, "tests/test_strategies_worst_first.py",
                                    "tests/test_strategies_sensitivity.py"],
    "distprec/strategies/prefix.py": ["tests/test_strategies_prefix.py",
                                      "tests/test_strategies_properties.py"],
    "distprec/strategies/minimize.py": ["tests/test_strategies_minimize.py",
                                        "tests/test_strategies_properties.py"],
    "distprec/actors/loop.py": ["tests/actors/test_loop.py"],
    "distprec/candidates/switchboard.py": ["tests/candidates/test_switchboard.py"],
    "distprec/confirm.py": ["tests/test_confirm.py"],
    "distprec/candidates/rewrites.py": ["tests/candidates/test_rewrites.py",
                                        "tests/candidates/test_switchboard.py"],
    # in-process Evaluators on ONNX Runtime's CPU provider: seconds a mutant, no Ray
    "distprec/evaluator.py": ["tests/test_evaluator.py", "tests/test_profile.py",
                              "tests/test_demo_planted.py"],
    "distprec/data.py": ["tests/test_data.py", *(
        f"tests/test_polygraphy_interop.py::test_{name}" for name in (
            "reads_polygraphy_inputs_and_lazyarray_outputs", "bare_arrays_and_several_files",
            "runner_is_picked_by_name", "unreadable_outputs_give_one_clear_error",
            "outputs_file_given_as_inputs_is_named", "minus_one_dimension_is_free",
            "val_range_and_folder_of_per_iteration_files",
            "float64_inputs_cast_and_dynamic_dims_warned"))],
    # the Ray actor around the Evaluator: a search through real actors (test_loop's are oracles)
    "distprec/actors/evaluator.py": [
        "tests/test_cli.py::test_search_finds_planted_layers_with_two_workers"],
}

SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
        ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.And: ast.Or, ast.Or: ast.And,
        ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add}


@dataclass
class Mutant:
    module: str
    index: int
    line: int
    change: str
    source: str = ""


class _Mutator(ast.NodeTransformer):
    """Visits every site; rewrites only site ``target`` (None: just count the sites)."""

    def __init__(self, target: int | None) -> None:
        self.target, self.count, self.sites = target, 0, []

    def _site(self, node: ast.AST, change: str) -> bool:
        hit = self.count == self.target
        self.sites.append((getattr(node, "lineno", 0), change))
        self.count += 1
        return hit

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "decorator_list"):
                continue  # types and decorators: no behaviour to mutate
            if isinstance(value, list):
                new = []
                for item in value:
                    if isinstance(item, ast.AST):
                        item = self.visit(item)
                        if item is None:
                            continue
                    new.append(item)
                value[:] = new
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant):
            return node  # a docstring
        if isinstance(node.value, ast.Call) and self._site(node, f"drop `{ast.unparse(node)}`"):
            return ast.copy_location(ast.Pass(), node)
        return self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if self._site(node, f"drop `{ast.unparse(node)}`"):
            return ast.copy_location(ast.Pass(), node)
        return self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        for i, op in enumerate(node.ops):
            if type(op) in SWAP and self._site(node, f"{type(op).__name__} -> "
                                               f"{SWAP[type(op)].__name__}"):
                node.ops[i] = SWAP[type(op)]()
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        if self._site(node, f"{type(node.op).__name__} -> {SWAP[type(node.op)].__name__}"):
            node.op = SWAP[type(node.op)]()
        return self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        if type(node.op) in SWAP and self._site(
                node, f"{type(node.op).__name__} -> {SWAP[type(node.op)].__name__}"):
            node.op = SWAP[type(node.op)]()
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        if isinstance(node.op, ast.Not) and self._site(node, f"drop `not` in "
                                                       f"`{ast.unparse(node)}`"):
            return self.visit(node.operand)
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bool):
            if self._site(node, f"{node.value} -> {not node.value}"):
                return ast.copy_location(ast.Constant(not node.value), node)
        elif isinstance(node.value, int) and self._site(node, f"{node.value} -> "
                                                        f"{node.value + 1}"):
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def mutants(module: str) -> list[Mutant]:
    source = (ROOT / module).read_text()
    counter = _Mutator(None)
    counter.visit(ast.parse(source))
    out = []
    for i, (line, change) in enumerate(counter.sites):
        tree = _Mutator(i).visit(ast.parse(source))
        out.append(Mutant(module, i, line, change, ast.unparse(ast.fix_missing_locations(tree))))
    return out


def run_tests(tree: Path, tests: list[str], timeout: float) -> str:
    """'killed', 'survived' or 'timeout' (a mutant that hangs counts as killed)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if proc.returncode == 0 else "killed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=list(MODULES))
    ap.add_argument("--max", type=int, default=40,
                    help="mutants per module, sampled with --seed (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="",
                    help="comma-separated mutant numbers (#N as printed) to run again")
    ap.add_argument("--verbose", action="store_true", help="print killed mutants too")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    ap.add_argument("--tests", nargs="+", default=None,
                    help="pytest arguments to run instead of the module's mapped tests")
    args = ap.parse_args(argv)
    total = killed = 0
    with tempfile.TemporaryDirectory(prefix="distprec-mutants-") as tmp:
        tree = Path(tmp) / "repo"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".hypothesis", "*.onnx", "runs", "results"))
        if (ROOT.parent / "shared").is_dir():  # the tests' real models sit beside the repo
            (Path(tmp) / "shared").symlink_to((ROOT.parent / "shared").resolve())
        for module in args.modules:
            tests = args.tests or MODULES.get(module)
            if tests is None:
                print(f"mutate: no tests mapped for {module}", file=sys.stderr)
                return 2
            assert run_tests(tree, tests, args.timeout) == "survived", "tests fail unmutated"
            todo = mutants(module)
            n_all = len(todo)
            if args.only:
                todo = [m for m in todo if str(m.index) in args.only.split(",")]
            elif args.max and len(todo) > args.max:
                todo = sorted(random.Random(args.seed).sample(todo, args.max),
                              key=lambda m: m.index)
            original = (tree / module).read_text()
            k = 0
            t0 = time.perf_counter()
            try:
                for m in todo:
                    (tree / module).write_text(m.source)
                    verdict = run_tests(tree, tests, args.timeout)
                    if verdict == "survived":
                        print(f"  SURVIVED {module}:{m.line} #{m.index}: {m.change}", flush=True)
                    else:
                        k += 1
                        if args.verbose:
                            print(f"  {verdict} {module}:{m.line} #{m.index}: {m.change}",
                                  flush=True)
            finally:
                (tree / module).write_text(original)
            total, killed = total + len(todo), killed + k
            print(f"{module}: {k}/{len(todo)} killed ({100 * k / max(len(todo), 1):.0f} %) "
                  f"of {n_all} mutants, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"TOTAL: {killed}/{total} killed ({100 * killed / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
