"""The reader decodes every instruction wasmtime validates: modules generated from every proposal
the engine enables (exceptions, tail calls, function references, GC, SIMD and relaxed SIMD, bulk
memory, reference types, multi-memory, memory64, threads, wide arithmetic) never yield an unknown
opcode, and the reader's structure matches the generator's (it finds every loop it was given)."""

from __future__ import annotations

import re

import wasmtime
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wcp360.config.sandbox import Capabilities
from wcp360.config.static_analysis import StaticAnalysisConfig
from wcp360.workloads.engine import wasm_reader
from wcp360.workloads.engine.analysis import analyse
from wcp360.workloads.engine.wasm_reader import loops_of, read_module

# Types, tags, memories, tables and data every snippet below may name.
PRELUDE = """
  (type $sig (func (param i32) (result i32)))
  (type $void (func))
  (type $s (struct (field (mut i32)) (field i64)))
  (type $a (array (mut i32)))
  (type $pair (func (param i32) (result i32 i32)))
  (tag $e (param i32))
  (tag $bare)
  (memory $m0 1 2)
  (memory $m1 1)
  (memory $m64 i64 1)
  (memory $sh 1 1 shared)
  (table $t 2 funcref)
  (table $ti 1 (ref $void) (ref.func $nop))
  (global $g (mut i32) (i32.const 0))
  (global $gs (ref null $s) (ref.null $s))
  (global $ge i32 (i32.add (i32.const 1) (i32.mul (i32.const 2) (i32.const 3))))
  (data $d "abcdefgh")
  (elem $el func $f $nop)
  (elem declare func $f $nop)
  (func $f (type $sig) (local.get 0))
  (func $nop (type $void))
"""

LOCALS = "(local $l i32) (local $w i64) (local $v v128) (local $r (ref null $s)) (local $x exnref) (local $fr funcref)"

# Stack-neutral snippets: each leaves the stack as it found it.
SNIPPETS = [
    # numbers, locals, globals, parametric
    "(drop (i32.add (local.get $p) (i32.const 1)))",
    "(local.set $w (i64.mul (i64.const -1234567890123) (i64.extend_i32_s (local.get $p))))",
    "(drop (f32.sqrt (f32.const 2.5)))",
    "(drop (f64.add (f64.const 1e300) (f64.convert_i32_u (local.get $p))))",
    "(drop (local.tee $l (global.get $g)))",
    "(global.set $g (global.get $ge))",
    "(drop (select (i32.const 1) (i32.const 2) (local.get $p)))",
    "(drop (select (result i64) (i64.const 1) (i64.const 2) (local.get $p)))",
    "(drop (select (result (ref null $s)) (local.get $r) (global.get $gs) (local.get $p)))",
    "(drop (i32.trunc_sat_f32_s (f32.const 1.5)))",
    "(drop (i64.trunc_sat_f64_u (f64.const 1.5)))",
    "(drop (i32.extend8_s (local.get $p)))",
    "nop",
    # memories: multi-memory, memory64, bulk memory
    "(local.set $l (i32.load $m1 offset=4 align=2 (i32.const 0)))",
    "(i64.store $m64 offset=8 (i64.const 0) (i64.const 1))",
    "(i32.store8 $m0 (i32.const 1) (i32.const 2))",
    "(drop (memory.grow $m0 (i32.const 0)))",
    "(drop (memory.size $m1))",
    "(drop (memory.grow $m64 (i64.const 0)))",
    "(memory.copy $m0 $m1 (i32.const 0) (i32.const 0) (i32.const 1))",
    "(memory.fill $m1 (i32.const 0) (i32.const 0) (i32.const 1))",
    "(memory.init $m0 $d (i32.const 0) (i32.const 0) (i32.const 1))",
    "(data.drop $d)",
    # tables and references
    "(drop (table.get $t (i32.const 0)))",
    "(table.set $t (i32.const 0) (ref.func $f))",
    "(drop (table.size $t))",
    "(drop (table.grow $t (ref.null func) (i32.const 1)))",
    "(table.fill $t (i32.const 0) (ref.null func) (i32.const 1))",
    "(table.copy $t $t (i32.const 0) (i32.const 1) (i32.const 1))",
    "(table.init $t $el (i32.const 0) (i32.const 0) (i32.const 1))",
    "(elem.drop $el)",
    "(drop (ref.is_null (ref.null func)))",
    "(drop (ref.as_non_null (ref.func $f)))",
    "(drop (ref.eq (ref.null eq) (ref.null eq)))",
    "(local.set $fr (ref.func $nop))",
    # calls: direct, indirect, by reference
    "(drop (call $f (i32.const 1)))",
    "(drop (call_indirect $t (type $sig) (i32.const 1) (i32.const 0)))",
    "(drop (call_ref $sig (i32.const 1) (ref.func $f)))",
    "(call_indirect $ti (type $void) (i32.const 0))",
    # tail calls, in a branch that may not be taken
    "(if (local.get $p) (then (return_call $nop)))",
    "(if (local.get $p) (then (return_call_ref $void (ref.func $nop))))",
    "(if (local.get $p) (then (return_call_indirect $ti (type $void) (i32.const 0))))",
    # GC
    "(local.set $r (struct.new $s (i32.const 1) (i64.const 2)))",
    "(local.set $r (struct.new_default $s))",
    "(if (ref.is_null (local.get $r)) (then) (else (struct.set $s 0 (local.get $r) (i32.const 3))))",
    "(if (ref.is_null (local.get $r)) (then) (else (drop (struct.get $s 1 (local.get $r)))))",
    "(drop (array.len (array.new $a (i32.const 0) (i32.const 4))))",
    "(drop (array.get $a (array.new_fixed $a 2 (i32.const 1) (i32.const 2)) (i32.const 0)))",
    "(array.set $a (array.new_default $a (i32.const 2)) (i32.const 0) (i32.const 7))",
    "(array.fill $a (array.new_default $a (i32.const 2)) (i32.const 0) (i32.const 7) (i32.const 1))",
    "(array.copy $a $a (array.new_default $a (i32.const 2)) (i32.const 0)"
    " (array.new_default $a (i32.const 2)) (i32.const 0) (i32.const 1))",
    "(drop (array.new_data $a $d (i32.const 0) (i32.const 1)))",
    "(array.init_data $a $d (array.new_default $a (i32.const 2)) (i32.const 0) (i32.const 0) (i32.const 1))",
    "(drop (ref.test (ref $s) (local.get $r)))",
    "(drop (ref.cast (ref null $s) (local.get $r)))",
    "(drop (i31.get_s (ref.i31 (local.get $p))))",
    "(drop (i31.get_u (ref.i31 (local.get $p))))",
    "(drop (any.convert_extern (extern.convert_any (ref.null any))))",
    "(block $bc (result (ref null $s)) (drop (br_on_cast $bc anyref (ref null $s) (ref.null any))) (ref.null $s))"
    " (drop)",
    "(block $bf (result anyref) (drop (br_on_cast_fail $bf anyref (ref $s) (ref.null any))) (ref.null any)) (drop)",
    "(block $bn (br_on_null $bn (local.get $r)) (drop))",
    "(block $bnn (result (ref $s)) (br_on_non_null $bnn (local.get $r)) (unreachable))(drop)",
    # SIMD and relaxed SIMD
    "(local.set $v (v128.const i32x4 1 2 3 4))",
    "(local.set $v (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get $v) (local.get $v)))",
    "(drop (i32x4.extract_lane 3 (local.get $v)))",
    "(local.set $v (f64x2.replace_lane 1 (local.get $v) (f64.const 2)))",
    "(local.set $v (v128.load $m1 offset=16 (i32.const 0)))",
    "(local.set $v (v128.load8_lane $m0 7 (i32.const 0) (local.get $v)))",
    "(v128.store64_lane 1 (i32.const 0) (local.get $v))",
    "(local.set $v (v128.load32_zero (i32.const 0)))",
    "(local.set $v (i32x4.add (local.get $v) (i32x4.splat (local.get $p))))",
    "(drop (v128.any_true (local.get $v)))",
    "(local.set $v (i32x4.relaxed_laneselect (local.get $v) (local.get $v) (local.get $v)))",
    "(local.set $v (f32x4.relaxed_madd (local.get $v) (local.get $v) (local.get $v)))",
    "(local.set $v (i16x8.relaxed_dot_i8x16_i7x16_s (local.get $v) (local.get $v)))",
    # threads
    "(drop (i32.atomic.load $sh (i32.const 0)))",
    "(drop (i64.atomic.rmw.add $sh (i32.const 8) (i64.const 1)))",
    "(drop (i32.atomic.rmw8.cmpxchg_u $sh (i32.const 0) (i32.const 0) (i32.const 1)))",
    "(drop (memory.atomic.notify $sh (i32.const 0) (i32.const 1)))",
    "(drop (memory.atomic.wait32 $sh (i32.const 0) (i32.const 1) (i64.const 0)))",
    "(atomic.fence)",
    # wide arithmetic
    "(drop (drop (i64.add128 (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4))))",
    "(drop (drop (i64.mul_wide_s (i64.const 1) (i64.const 2))))",
    # exception handling (exnref)
    "(block $h (result i32) (try_table (result i32) (catch $e $h) (throw $e (local.get $p)))) (drop)",
    "(block $h2 (try_table (catch_all $h2) (call $nop)))",
    "(block $h3 (result i32 exnref) (try_table (catch_ref $e $h3) (nop)) (unreachable)) (local.set $x) (drop)",
    "(block $h4 (result exnref) (try_table (catch_all_ref $h4) (throw $bare)) (unreachable)) (local.set $x)",
    "(if (ref.is_null (local.get $x)) (then) (else (throw_ref (local.get $x))))",
    # branches and multi-value blocks
    "(block $b0 (block $b1 (br_table $b0 $b1 $b0 (local.get $p))))",
    "(block $b2 (br_if $b2 (local.get $p)) (br $b2))",
    "(local.get $p) (block (type $pair) (i32.const 1)) (drop) (drop)",
    "(drop (block (result i32) (i32.const 1)))",
    "(if (local.get $p) (then nop) (else nop))",
]


@st.composite
def bodies(draw: st.DrawFn, depth: int = 0) -> tuple[str, int]:
    """A function body and how many `loop`s it holds."""
    parts, loops = [], 0
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.integers(0, 9)) if depth < 3 else 0
        if choice <= 5:
            parts.append(draw(st.sampled_from(SNIPPETS)))
            continue
        inner, inner_loops = draw(bodies(depth + 1))
        loops += inner_loops
        if choice == 6:
            parts.append(f"(block {inner})")
        elif choice == 7:
            # A loop with a conditional exit, or a plain back edge: both are valid.
            tail = "(br_if 0 (local.get $p))" if draw(st.booleans()) else ""
            parts.append(f"(loop {inner} {tail})")
            loops += 1
        elif choice == 8:
            parts.append(f"(if (local.get $p) (then {inner}))")
        else:
            parts.append(f"(block $out (try_table (catch_all $out) {inner}))")
    return " ".join(parts), loops


ENGINE = wasmtime.Engine()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_no_module_wasmtime_validates_has_an_unknown_instruction(generated: tuple[str, int]) -> None:
    body, expected_loops = generated
    text = f'(module {PRELUDE} (func (export "run") (param $p i32) {LOCALS} {body}))'
    raw = bytes(wasmtime.wat2wasm(text))
    try:
        wasmtime.Module.validate(ENGINE, raw)
    except wasmtime.WasmtimeError:
        assume(False)  # a combination the generator got wrong is not the reader's concern
    info = read_module(raw)
    assert len(info.tables) == 2 and len(info.memories) == 4
    assert sum(1 for _ in loops_of(raw, info)) == expected_loops
    report = analyse(raw, StaticAnalysisConfig(), Capabilities())
    assert not [f for f in report.findings if "not fully analysed" in f.message or "unknown" in f.message]


def test_every_snippet_is_valid_on_its_own() -> None:
    """The catalogue itself is checked: a snippet wasmtime refuses would only ever be assumed away."""
    for snippet in SNIPPETS:
        text = f'(module {PRELUDE} (func (export "run") (param $p i32) {LOCALS} {snippet}))'
        raw = bytes(wasmtime.wat2wasm(text))
        wasmtime.Module.validate(ENGINE, raw)
        assert list(loops_of(raw, read_module(raw))) == [], snippet


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies(),
    st.lists(
        st.sampled_from(
            [
                "(br 0)",
                "(br_if 0 (local.get $p))",
                "(return)",
                "(unreachable)",
                "(drop (memory.grow (i32.const 1)))",
                "(call $nop)",
            ]
        ),
        max_size=3,
    ),
)
def test_the_regex_skip_never_changes_what_the_walker_reports(generated: tuple[str, int], exits: list[str]) -> None:
    """The walker skips runs of instructions with `re` (wasm_reader._SKIP_*); walking them one by
    one must report exactly the same loops, exits, back edges and memory growth."""
    body, _ = generated
    tail = " ".join(exits)
    text = f'(module {PRELUDE} (func (export "run") (param $p i32) {LOCALS} (loop {body} {tail})))'
    raw = bytes(wasmtime.wat2wasm(text))
    try:
        wasmtime.Module.validate(ENGINE, raw)
    except wasmtime.WasmtimeError:
        assume(False)
    info = read_module(raw)
    fast = list(loops_of(raw, info))
    skips = wasm_reader._SKIP_INSIDE, wasm_reader._SKIP_OUTSIDE
    wasm_reader._SKIP_INSIDE = wasm_reader._SKIP_OUTSIDE = re.compile(rb"")  # skips nothing
    try:
        slow = list(loops_of(raw, info))
    finally:
        wasm_reader._SKIP_INSIDE, wasm_reader._SKIP_OUTSIDE = skips
    assert fast == slow
