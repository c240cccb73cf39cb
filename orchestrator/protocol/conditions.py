"""Conditions between params, such as ``"mode == 'accurate' and not fast"``.

A condition string is a tiny expression language: param names, literals, ``and`` / ``or``
/ ``not``, comparisons (``== != < <= > >= in not in is is not``), tuples and lists. It is
parsed with :mod:`ast` and evaluated by walking the tree, never with ``eval``, so a
workflow file cannot run code through it. Callables are accepted too, for anything the
language cannot say.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from orchestrator.objects.params import Condition
from orchestrator.protocol.errors import ProtocolDefinitionError

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
    ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, *_COMPARE,
)  # fmt: skip


class UnresolvedCondition(Exception):
    """A condition needs the value of a param that has none (it failed to coerce)."""


@lru_cache(maxsize=1024)
def parse_condition(text: str) -> ast.Expression:
    """Parse and vet a condition; ProtocolDefinitionError names what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ProtocolDefinitionError(f"condition {text!r} is not a valid expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ProtocolDefinitionError(
                f"condition {text!r}: {type(node).__name__} is not allowed "
                "(use param names, literals, and/or/not and comparisons)"
            )
    return tree


def condition_names(condition: Condition) -> frozenset[str]:
    """Param names a condition string refers to; empty for callables (opaque)."""
    if not isinstance(condition, str):
        return frozenset()
    tree = parse_condition(condition)
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))


def evaluate_condition(condition: Condition | None, values: Mapping[str, Any]) -> bool:
    """True when the param applies. Raises UnresolvedCondition if a needed value is missing."""
    if condition is None:
        return True
    if not isinstance(condition, str):
        try:
            return bool(condition(values))
        except KeyError as exc:
            raise UnresolvedCondition(str(exc)) from None
    return bool(_evaluate(parse_condition(condition).body, values))


def _evaluate(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise UnresolvedCondition(node.id)
        return values[node.id]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, values) for value in node.values)
        return any(_evaluate(value, values) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_evaluate(element, values) for element in node.elts)
    raise ProtocolDefinitionError(f"unsupported condition element {type(node).__name__}")
