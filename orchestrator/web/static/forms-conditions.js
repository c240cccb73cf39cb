/* The condition language of protocol params, evaluated in the browser as the user types.

   It is the language of orchestrator/protocol/conditions.py: param names, literals (numbers,
   'strings', True, False, None), and/or/not, comparisons (== != < <= > >= in, not in, is,
   is not), tuples and lists, unary minus, parentheses. A small parser, never eval(). A condition
   it cannot decide (a number not typed yet) answers null: the form then shows the field, and the
   server decides. Exported for node, so the tests compare it with Python's evaluator. */
(function (root) {
  "use strict";

  function Unresolved(name) { this.name = name; }

  var TOKEN = /\s*(?:(\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)|('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)|(==|!=|<=|>=|<|>|\(|\)|\[|\]|,|-))/y;

  function tokenize(text) {
    var tokens = [], match;
    TOKEN.lastIndex = 0;
    while (TOKEN.lastIndex < text.length) {
      if (/^\s*$/.test(text.slice(TOKEN.lastIndex))) break;
      match = TOKEN.exec(text);
      if (!match) throw new Error("cannot read the condition " + JSON.stringify(text));
      if (match[1] !== undefined) tokens.push({ t: "num", v: Number(match[1]), int: !/[.eE]/.test(match[1]) });
      else if (match[2] !== undefined) tokens.push({ t: "str", v: unquote(match[2]) });
      else if (match[3] !== undefined) tokens.push({ t: "name", v: match[3] });
      else tokens.push({ t: "op", v: match[4] });
    }
    return tokens;
  }

  function unquote(literal) {
    return literal.slice(1, -1).replace(/\\(.)/g, function (_all, c) {
      return { n: "\n", t: "\t", "\\": "\\", "'": "'", '"': '"' }[c] || "\\" + c;
    });
  }

  var CONSTANTS = { True: true, False: false, None: null };

  function parseCondition(text) {
    var tokens = tokenize(text), pos = 0;
    function peek(v) { var tok = tokens[pos]; return tok && (v === undefined || tok.v === v) && tok.t !== "str" ? tok : null; }
    function take(v) { var tok = peek(v); if (!tok) throw new Error("expected " + v + " in " + text); pos++; return tok; }
    function orExpr() {
      var node = andExpr();
      while (peek("or")) { pos++; node = { op: "or", a: node, b: andExpr() }; }
      return node;
    }
    function andExpr() {
      var node = notExpr();
      while (peek("and")) { pos++; node = { op: "and", a: node, b: notExpr() }; }
      return node;
    }
    function notExpr() {
      if (peek("not")) { pos++; return { op: "not", a: notExpr() }; }
      return comparison();
    }
    function compareOp() {
      var tok = tokens[pos];
      if (!tok || tok.t === "str" || tok.t === "num") return null;
      if (["==", "!=", "<", "<=", ">", ">="].indexOf(tok.v) >= 0 && tok.t === "op") { pos++; return tok.v; }
      if (tok.v === "in" && tok.t === "name") { pos++; return "in"; }
      if (tok.v === "not" && tokens[pos + 1] && tokens[pos + 1].v === "in") { pos += 2; return "not in"; }
      if (tok.v === "is" && tok.t === "name") {
        pos++;
        if (peek("not")) { pos++; return "is not"; }
        return "is";
      }
      return null;
    }
    function comparison() {
      var left = unary(), ops = [], rights = [], op;
      while ((op = compareOp()) !== null) { ops.push(op); rights.push(unary()); }
      return ops.length ? { op: "compare", a: left, ops: ops, rights: rights } : left;
    }
    function unary() {
      if (peek("-") && tokens[pos].t === "op") { pos++; return { op: "neg", a: unary() }; }
      return atom();
    }
    function sequence(close) {
      var items = [];
      while (!peek(close)) { items.push(orExpr()); if (!peek(",")) break; pos++; }
      take(close);
      return items;
    }
    function atom() {
      var tok = tokens[pos++];
      if (!tok) throw new Error("the condition " + JSON.stringify(text) + " ends too soon");
      if (tok.t === "num" || tok.t === "str") return { op: "const", v: tok.v };
      if (tok.t === "name") {
        if (Object.prototype.hasOwnProperty.call(CONSTANTS, tok.v)) return { op: "const", v: CONSTANTS[tok.v] };
        if (["and", "or", "not", "in", "is"].indexOf(tok.v) >= 0) throw new Error("unexpected " + tok.v);
        return { op: "name", v: tok.v };
      }
      if (tok.v === "(") {
        if (peek(")")) { pos++; return { op: "tuple", items: [] }; }
        var first = orExpr();
        if (peek(")")) { pos++; return first; }
        take(",");
        var rest = sequence(")");
        return { op: "tuple", items: [first].concat(rest) };
      }
      if (tok.v === "[") return { op: "tuple", items: sequence("]") };
      throw new Error("unexpected " + tok.v + " in " + JSON.stringify(text));
    }
    var tree = orExpr();
    if (pos !== tokens.length) throw new Error("unexpected " + tokens[pos].v + " in " + JSON.stringify(text));
    return tree;
  }

  function equal(a, b) {
    if (Array.isArray(a) && Array.isArray(b)) {
      return a.length === b.length && a.every(function (x, i) { return equal(x, b[i]); });
    }
    if (typeof a === "boolean" && typeof b === "number") return Number(a) === b;  /* Python: True == 1 */
    if (typeof a === "number" && typeof b === "boolean") return a === Number(b);
    return a === b;
  }

  function truthy(v) {
    if (Array.isArray(v)) return v.length > 0;
    return !(v === null || v === false || v === 0 || v === "" || v === undefined);
  }

  function compare(op, a, b) {
    switch (op) {
      case "==": return equal(a, b);
      case "!=": return !equal(a, b);
      case "<": return a < b;
      case "<=": return a <= b;
      case ">": return a > b;
      case ">=": return a >= b;
      case "in": return contains(b, a);
      case "not in": return !contains(b, a);
      case "is": return a === b;
      case "is not": return a !== b;
    }
    throw new Error("unknown comparison " + op);
  }

  function contains(container, item) {
    if (typeof container === "string") return typeof item === "string" && container.indexOf(item) >= 0;
    if (Array.isArray(container)) return container.some(function (x) { return equal(x, item); });
    throw new Error("'in' needs a list, a tuple or a string");
  }

  function evaluate(node, values) {
    switch (node.op) {
      case "const": return node.v;
      case "name":
        if (!Object.prototype.hasOwnProperty.call(values, node.v) || values[node.v] === undefined) throw new Unresolved(node.v);
        return values[node.v];
      case "or": return truthy(evaluate(node.a, values)) || truthy(evaluate(node.b, values));
      case "and": return truthy(evaluate(node.a, values)) && truthy(evaluate(node.b, values));
      case "not": return !truthy(evaluate(node.a, values));
      case "neg": return -evaluate(node.a, values);
      case "tuple": return node.items.map(function (item) { return evaluate(item, values); });
      case "compare":
        var left = evaluate(node.a, values);
        for (var i = 0; i < node.ops.length; i++) {
          var right = evaluate(node.rights[i], values);
          if (!compare(node.ops[i], left, right)) return false;
          left = right;
        }
        return true;
    }
    throw new Error("unknown condition element " + node.op);
  }

  /* true / false, or null when a value it needs is not known (the field is then shown) */
  function evaluateCondition(text, values) {
    try { return truthy(evaluate(parseCondition(text), values)); }
    catch (err) { if (err instanceof Unresolved) return null; throw err; }
  }

  var api = { parseCondition: parseCondition, evaluateCondition: evaluateCondition };
  if (typeof module === "object" && module.exports) module.exports = api;
  root.orchConditions = api;
})(typeof window !== "undefined" ? window : globalThis);
