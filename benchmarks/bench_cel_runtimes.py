"""Compare Python CEL runtimes for Hubble's `--cel-expression` (docs/cel-runtime.md has the results).

Fidelity: the CEL cases recorded from hubble 1.19.4 (same matching lines?) and expressions Hubble
rejects at compile time (rejected too?). Speed: flows/s for one expression over the 4k golden
corpus, including the per-flow input preparation each runtime needs. The recording is the
project's own, tests/data/hubble-1.19.4-golden (what `hubble observe` printed for those flows).

    .venv/bin/python benchmarks/bench_cel_runtimes.py

The candidates other than cel-expr-python are optional (`pip install common-expression-language
cel-python` to include them); they are not project dependencies.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "hubble-1.19.4-golden"
REJECTED = [
    "_flow.policy_log.endsWith('x')",  # list(string) receiver
    "_flow.nonexistent_field == 1",  # undefined field
    "_flow.verdict",  # not bool
    "_flow.l4.TCP.destination_port == 443",  # uint vs int
    "_flow.is_reply",  # wrapper(bool), not bool
]
SPEED_EXPRESSION = "_flow.verdict == Verdict.AUDIT"
# What a runtime without protobuf enums has to be given instead.
SPEED_EXPRESSION_NO_ENUMS = "_flow.verdict == 'AUDIT'"


def load() -> tuple[list[dict[str, Any]], list[tuple[str, list[int]]]]:
    lines = gzip.decompress((GOLDEN / "flows-4k.jsonl.gz").read_bytes()).splitlines()
    flows = [orjson.loads(line)["flow"] for line in lines]
    cases = []
    for case in json.loads((GOLDEN / "cases.json").read_text())["cases"]:
        if len(case["args"]) == 2 and case["args"][0] == "--cel-expression":
            cases.append((case["args"][1], case["matching_input_lines"]))
    return flows, cases


Runner = Callable[[str], Callable[[dict[str, Any]], bool]]


def cel_expr_python(prune: bool) -> Runner:
    from hushflow.filter import cel as hcel
    from hushflow.filter.flowmessage import FlowMessageBuilder

    env = hcel.new_environment()

    def compile_one(expr: str) -> Callable[[dict[str, Any]], bool]:
        program = hcel.compile_expression(env, expr)
        build = FlowMessageBuilder(hcel.referenced_fields(expr) if prune else None)
        return lambda flow: program.eval(data={"_flow": build(flow)}).value() is True

    return compile_one


def cel_rust() -> Runner:
    import cel  # common-expression-language

    def compile_one(expr: str) -> Callable[[dict[str, Any]], bool]:
        program = cel.compile(expr)

        def run(flow: dict[str, Any]) -> bool:
            try:
                return program.execute({"_flow": flow}) is True
            except Exception:
                return False

        return run

    return compile_one


def cel_python() -> Runner:
    import celpy

    env = celpy.Environment()

    def compile_one(expr: str) -> Callable[[dict[str, Any]], bool]:
        program = env.program(env.compile(expr))

        def run(flow: dict[str, Any]) -> bool:
            try:
                result = program.evaluate({"_flow": celpy.json_to_cel(flow)})
                return isinstance(result, celpy.celtypes.BoolType) and bool(result)
            except Exception:
                return False

        return run

    return compile_one


def evaluate(name: str, make: Callable[[], Runner], flows: list[dict[str, Any]],
             cases: list[tuple[str, list[int]]]) -> dict[str, Any]:
    try:
        runner = make()
    except ImportError as err:
        return {"runtime": name, "error": f"not installed: {err}"}
    same = 0
    details = []
    for expr, expected in cases:
        try:
            run = runner(expr)
            got = [n for n, flow in enumerate(flows, 1) if run(flow)]
            ok = got == expected
            details.append((expr, "same" if ok else f"{len(got)} lines, hubble {len(expected)}"))
        except Exception as err:
            ok = False
            details.append((expr, f"compile error: {str(err).splitlines()[0][:80]}"))
        same += ok
    rejected = 0
    for expr in REJECTED:
        try:
            runner(expr)
        except Exception:
            rejected += 1
    rate = None
    for expr in (SPEED_EXPRESSION, SPEED_EXPRESSION_NO_ENUMS):
        try:
            run = runner(expr)
            if not any(run(f) for f in flows):
                continue
        except Exception:
            continue
        start = time.perf_counter()
        for flow in flows:
            run(flow)
        rate = (len(flows) / (time.perf_counter() - start), expr)
        break
    return {"runtime": name, "same": same, "cases": len(cases), "rejected": rejected,
            "rejectable": len(REJECTED), "rate": rate, "details": details}


def main() -> None:
    flows, cases = load()
    runtimes: list[tuple[str, Callable[[], Runner]]] = [
        ("cel-expr-python, whole message", lambda: cel_expr_python(False)),
        ("cel-expr-python, referenced fields only", lambda: cel_expr_python(True)),
        ("common-expression-language (cel-rust)", cel_rust),
        ("cel-python (celpy)", cel_python),
    ]
    for name, make in runtimes:
        result = evaluate(name, make, flows, cases)
        if "error" in result:
            print(f"{name}: {result['error']}")
            continue
        rate = result["rate"]
        speed = f"{rate[0]:,.0f} flows/s on {rate[1]!r}" if rate else "n/a"
        print(f"{name}: golden CEL cases identical {result['same']}/{result['cases']}, "
              f"Hubble compile errors reproduced {result['rejected']}/{result['rejectable']}, {speed}")
        for expr, outcome in result["details"]:
            print(f"    {expr!r}: {outcome}")


if __name__ == "__main__":
    main()
