"""Mutants of the oracle: one small semantic change each to one of reference/'s op modules,
generated deterministically from the source's syntax tree (python -m conformance.bench.mutation
runs them).

A mutant is a copy of the reference package, written under another name (``mutant_reference``,
its imports rewritten) with one expression of one module replaced: the unmutated ``reference``
stays the oracle, and the copy is loaded as a user implementation. The operators are the
classic ones of mutation testing (Offutt et al., "An experimental determination of sufficient
mutant operators", 1996), aimed at the bugs a convolution or pooling formula really has: an
off-by-one in a size, a swapped argument, a dropped term, a wrong sign, ``<`` for ``<=``, a
kernel not flipped, a wrong reduction axis, min for max. Error messages (f-strings, ``raise``
and ``assert`` statements), docstrings and annotations are never mutated.

A mutant's id is stable: module, function, operator and a digest of what was replaced by what
(and its rank among identical replacements in that function), never a line number, so that an
edit elsewhere keeps the ids of the equivalents file valid.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "reference"
PACKAGE = "mutant_reference"  # the mutated copy's name; its module ``api`` is the implementation
IMPLEMENTATION = f"{PACKAGE}.api"

# the op modules: what the catalogue's ops compute with (argument checking lives in
# _arguments, which is left out; gradcheck, layers and receptive_field serve no catalogue op)
OP_MODULES = (
    "conv",
    "conv_transpose",
    "pool",
    "adaptive",
    "fold",
    "normalization",
    "blocks",
    "shapes",
    "padding",
    "_windows",
    "jvp",
    "double_backward",
)

ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
COMPARISON: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
# a function swapped for its twin (np.max for np.min, math.floor for math.ceil, ...)
TWINS = {
    "max": "min",
    "min": "max",
    "maximum": "minimum",
    "minimum": "maximum",
    "amax": "amin",
    "amin": "amax",
    "argmax": "argmin",
    "argmin": "argmax",
    "floor": "ceil",
    "ceil": "floor",
    "any": "all",
    "all": "any",
}
# twins only as methods (array.sum for array.mean): the builtin sum has no mean
METHOD_TWINS = {"sum": "mean", "mean": "sum"}
# NumPy calls whose first argument has the result's shape: the call dropped, the argument kept
# (a kernel not flipped, a root not taken, an absolute value forgotten)
UNWRAPPED = {
    "flip",
    "abs",
    "sqrt",
    "square",
    "sign",
    "negative",
    "reciprocal",
    "ascontiguousarray",
    "exp",
    "log",
    "conj",
}


@dataclass(frozen=True)
class Mutant:
    """One replacement of the source text of ``module``: lines ``line``..``end_line``, from
    column ``col`` of the first to ``end_col`` of the last (UTF-8 bytes, as ast counts)."""

    id: str
    module: str
    function: str
    operator: str
    line: int
    col: int
    end_line: int
    end_col: int
    replacement: str
    before: str  # the original lines
    after: str  # the same lines mutated
    lines: tuple[int, ...]  # the lines whose execution reaches the mutated expression
    function_lines: tuple[int, int]  # the first and last line of the enclosing function

    def source(self, original: str) -> str:
        """The module's mutated source."""
        return _splice(original, self.line, self.col, self.end_line, self.end_col, self.replacement)

    def diff(self) -> str:
        """A unified-diff-like view: the original lines, then the mutated ones."""
        minus = "\n".join(f"- {text}" for text in self.before.splitlines())
        plus = "\n".join(f"+ {text}" for text in self.after.splitlines())
        return f"{minus}\n{plus}"


def _splice(source: str, line: int, col: int, end_line: int, end_col: int, text: str) -> str:
    lines = source.splitlines(keepends=True)
    first = lines[line - 1].encode()
    last = lines[end_line - 1].encode()
    spliced = first[:col].decode() + text + last[end_col:].decode()
    return "".join([*lines[: line - 1], spliced, *lines[end_line:]])


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _renamed(func: ast.expr, name: str) -> ast.expr:
    if isinstance(func, ast.Name):
        return ast.Name(id=name, ctx=ast.Load())
    assert isinstance(func, ast.Attribute)
    return ast.Attribute(value=func.value, attr=name, ctx=ast.Load())


def _swappable(node: ast.expr) -> bool:
    """A name, attribute, subscript or arithmetic on them: what a swapped-argument bug swaps
    (a constant or a string swapped is a type error, not a plausible bug)."""
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.BinOp, ast.UnaryOp))


def _types(elements: Sequence[ast.expr]) -> bool:
    """A tuple of class names (isinstance's second argument), whose order means nothing."""
    return all(
        (isinstance(e, (ast.Name, ast.Attribute)) and _call_name(e) in _TYPE_NAMES)
        or (isinstance(e, ast.Name) and e.id[:1].isupper())
        for e in elements
    )


_TYPE_NAMES = {"int", "float", "bool", "str", "tuple", "list", "dict", "set", "Integral", "Real"}


def replacements(node: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """Every (operator, replacement) of one expression node."""
    if isinstance(node, ast.BinOp):
        swapped = ARITHMETIC.get(type(node.op))
        if swapped is not None:
            yield "arithmetic", ast.BinOp(node.left, swapped(), node.right)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            yield "drop-term", node.left
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        swapped_cmp = COMPARISON.get(type(node.ops[0]))
        if swapped_cmp is not None:
            yield "comparison", ast.Compare(node.left, [swapped_cmp()], node.comparators)
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield "boolean", ast.BoolOp(other, node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield "unary", node.operand
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        value = node.value
        if isinstance(value, bool):
            yield "constant", ast.Constant(not value)
        elif isinstance(value, (int, float)):
            yield "constant", ast.Constant(value + 1)
            if value != 0 and isinstance(value, int):
                yield "constant", ast.Constant(value - 1)
    elif isinstance(node, ast.Call):
        yield from _call_replacements(node)
    elif (
        isinstance(node, ast.Tuple) and len(node.elts) >= 2 and all(map(_swappable, node.elts[:2]))
    ):
        if ast.dump(node.elts[0]) != ast.dump(node.elts[1]) and not _types(node.elts):
            elements = [node.elts[1], node.elts[0], *node.elts[2:]]
            yield "swap", ast.Tuple(elements, ast.Load())


def _call_replacements(node: ast.Call) -> Iterator[tuple[str, ast.expr]]:
    name = _call_name(node.func)
    twin = TWINS.get(name or "")
    if twin is None and isinstance(node.func, ast.Attribute):
        twin = METHOD_TWINS.get(name or "")
    if twin is not None:
        yield "twin", ast.Call(_renamed(node.func, twin), node.args, node.keywords)
    numpy = isinstance(node.func, ast.Attribute) and _call_name(node.func.value) == "np"
    if numpy and name in UNWRAPPED and node.args and not isinstance(node.args[0], ast.Starred):
        yield "drop-call", node.args[0]
    for i in range(len(node.args) - 1):
        a, b = node.args[i], node.args[i + 1]
        if _swappable(a) and _swappable(b) and ast.dump(a) != ast.dump(b):
            arguments = [*node.args[:i], b, a, *node.args[i + 2 :]]
            yield "swap", ast.Call(node.func, arguments, node.keywords)


_ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.Tuple, ast.List)


def _text(node: ast.expr) -> str:
    """Source text of a replacement, parenthesised unless it is an atom."""
    text = ast.unparse(node)
    if isinstance(node, ast.Tuple):
        return f"({text})" if not text.startswith("(") else text
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value < 0:
        return f"({text})"
    return text if isinstance(node, _ATOMS) else f"({text})"


class _Sites(ast.NodeVisitor):
    """The mutable expressions of a module: inside function bodies, outside messages,
    docstrings and annotations."""

    def __init__(self) -> None:
        self.found: list[tuple[str, tuple[int, int], ast.stmt, ast.expr]] = []
        self._scope: list[str] = []
        self._spans: list[tuple[int, int]] = []
        self._statement: list[ast.stmt] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scope.append(node.name)
        self._spans.append((node.lineno, node.end_lineno or node.lineno))
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for statement in body:
            self.visit(statement)
        self._scope.pop()
        self._spans.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        for statement in node.body:
            if isinstance(statement, ast.FunctionDef):
                self.visit(statement)
        self._scope.pop()

    def visit_Raise(self, node: ast.Raise) -> None:
        return  # an error message

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._expression_in(node, node.value)

    def visit_arg(self, node: ast.arg) -> None:
        return

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            self._statement.append(node)
            super().generic_visit(node)
            self._statement.pop()
            return
        if isinstance(node, ast.expr) and self._spans and self._statement:
            scope = ".".join(self._scope)
            self.found.append((scope, self._spans[-1], self._statement[-1], node))
        super().generic_visit(node)

    def _expression_in(self, statement: ast.stmt, value: ast.expr) -> None:
        self._statement.append(statement)
        self.visit(value)
        self._statement.pop()


def module_mutants(module: str, source: str) -> list[Mutant]:
    """Every mutant of one module's source, in source order."""
    tree = ast.parse(source)
    sites = _Sites()
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            sites.visit(statement)
    lines = source.splitlines()
    seen: dict[tuple[str, ...], int] = {}
    mutants = []
    for function, span, statement, node in sites.found:
        if isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
            continue
        for operator, replacement in replacements(node):
            text = _text(replacement)
            original = ast.unparse(node)
            key = (function, operator, original, text)
            rank = seen[key] = seen.get(key, -1) + 1
            digest = hashlib.sha1(repr((*key, rank)).encode()).hexdigest()[:8]
            end_line, end_col = node.end_lineno or node.lineno, node.end_col_offset or 0
            mutated = _splice(source, node.lineno, node.col_offset, end_line, end_col, text)
            try:
                if ast.dump(ast.parse(mutated)) == ast.dump(tree):
                    continue
            except SyntaxError:
                continue
            after = mutated.splitlines()[node.lineno - 1 : node.lineno + text.count("\n")]
            reach = {*range(node.lineno, end_line + 1), statement.lineno}
            mutants.append(
                Mutant(
                    id=f"{module}.{function}.{operator}.{digest}",
                    module=module,
                    function=function,
                    operator=operator,
                    line=node.lineno,
                    col=node.col_offset,
                    end_line=end_line,
                    end_col=end_col,
                    replacement=text,
                    before="\n".join(lines[node.lineno - 1 : end_line]),
                    after="\n".join(after),
                    lines=tuple(sorted(reach)),
                    function_lines=span,
                )
            )
    return mutants


def all_mutants(modules: Sequence[str] = OP_MODULES, reference: Path = REFERENCE) -> list[Mutant]:
    """Every mutant of the given op modules (of the package at ``reference``: a run takes a
    snapshot, so that an edit while it runs changes nothing), in source order."""
    found = []
    for module in modules:
        found += module_mutants(module, (reference / f"{module}.py").read_text())
    return found


def sample(mutants: Sequence[Mutant], limit: int | None, seed: int) -> list[Mutant]:
    """``limit`` mutants spread over the modules, and within each over its functions (a
    round robin over shuffled lists), the same for the same seed and the same source."""
    rng = random.Random(seed)
    by_module: dict[str, dict[str, list[Mutant]]] = {}
    for mutant in sorted(mutants, key=lambda m: m.id):
        by_module.setdefault(mutant.module, {}).setdefault(mutant.function, []).append(mutant)
    queues = []
    for module in sorted(by_module):
        functions = by_module[module]
        for name, group in functions.items():
            rng.shuffle(group)
            functions[name] = _by_operator(group, rng)
        names = sorted(functions)
        rng.shuffle(names)
        queue = []
        while any(functions[name] for name in names):
            queue += [functions[name].pop() for name in names if functions[name]]
        queues.append(queue)
    chosen: list[Mutant] = []
    while any(queues) and (limit is None or len(chosen) < limit):
        for queue in queues:
            if queue and (limit is None or len(chosen) < limit):
                chosen.append(queue.pop(0))
    return chosen


def _by_operator(mutants: list[Mutant], rng: random.Random) -> list[Mutant]:
    """The mutants reordered so that every operator comes up in turn, in an order drawn
    for the function (the list is popped from its end)."""
    queues: dict[str, list[Mutant]] = {}
    for mutant in mutants:
        queues.setdefault(mutant.operator, []).append(mutant)
    operators = sorted(queues)
    rng.shuffle(operators)
    ordered: list[Mutant] = []
    while any(queues.values()):
        ordered += [queues[name].pop() for name in operators if queues[name]]
    return ordered[::-1]


_IMPORT = re.compile(r"^(\s*)(from|import) reference(?=[\s.])", re.MULTILINE)


def rename_imports(source: str) -> str:
    """The module's imports of reference.* pointed at the mutant package instead."""
    return _IMPORT.sub(rf"\1\2 {PACKAGE}", source)


def write_package(directory: Path, mutant: Mutant | None, reference: Path = REFERENCE) -> Path:
    """The reference package (at ``reference``) copied to ``directory/mutant_reference`` with
    ``mutant`` applied (none: an unmutated copy) and an ``api`` module exposing the ops;
    returns its path."""
    package = directory / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for path in sorted(reference.glob("*.py")):
        source = path.read_text()
        if mutant is not None and path.stem == mutant.module:
            source = mutant.source(source)
        (package / path.name).write_text(rename_imports(source))
    (package / "api.py").write_text(
        f'"""The mutant as an implementation under test."""\n\nfrom {PACKAGE} import *  '
        f'# noqa: F403\n\nname = "mutant"\n'
    )
    return package
