"""A streaming reader of the WebAssembly binary format, for static analysis.

It walks sections by their declared sizes over one memoryview (no copies), decodes only the
sections the analysis needs, and walks function bodies instruction by instruction without building
an object per instruction. Hand-written because no maintained Python package decodes wasm
instructions; the format (https://webassembly.github.io/spec/core/binary/) is small and stable.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# Module bytes as they reach the reader: bytes, or a mapping of an uploaded file (never copied).
Buffer = bytes | bytearray | mmap.mmap


class WasmFormatError(ValueError):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"offset {offset}: {message}")
        self.offset = offset


@dataclass
class Limits:
    minimum: int
    maximum: int | None
    memory64: bool = False
    shared: bool = False


@dataclass
class Import:
    module: str
    name: str
    kind: str  # func | table | memory | global | tag
    limits: Limits | None = None

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class ModuleInfo:
    imports: list[Import] = field(default_factory=list)
    exports: list[tuple[str, str]] = field(default_factory=list)
    memories: list[Limits] = field(default_factory=list)
    tables: list[Limits] = field(default_factory=list)
    globals: int = 0
    imported_functions: int = 0
    functions: int = 0
    has_start: bool = False
    code_offset: int = 0
    code_size: int = 0


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise WasmFormatError(self.pos, "unexpected end")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u32(self) -> int:
        result = shift = 0
        data, pos, end = self.data, self.pos, len(self.data)
        while True:
            if pos >= end:
                raise WasmFormatError(pos, "unexpected end in an integer")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                raise WasmFormatError(pos, "integer too long")
        self.pos = pos
        return result

    def name(self) -> str:
        length = self.u32()
        raw = bytes(self.data[self.pos : self.pos + length])
        if len(raw) != length:
            raise WasmFormatError(self.pos, "name runs past the end")
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WasmFormatError(self.pos, "name is not UTF-8") from None

    def limits(self) -> Limits:
        flags = self.byte()
        if flags > 0x0F:
            raise WasmFormatError(self.pos - 1, f"bad limits flags {flags:#x}")
        minimum = self.u32()
        maximum = self.u32() if flags & 0x01 else None
        if flags & 0x08:  # custom-page-sizes: the page size's log2 follows
            self.u32()
        return Limits(minimum, maximum, memory64=bool(flags & 0x04), shared=bool(flags & 0x02))

    def value_type(self) -> None:
        """Skip a value or reference type: one byte, or `ref`/`ref null` and a heap type (GC,
        function references)."""
        if self.byte() in (0x63, 0x64):
            self.u32()  # the heap type: an s33, one byte when abstract, a type index otherwise


_IMPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
_EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


def read_module(raw: Buffer) -> ModuleInfo:
    data = memoryview(raw)
    if bytes(data[:4]) != b"\0asm":
        raise WasmFormatError(0, "not a WebAssembly module (bad magic)")
    if bytes(data[4:8]) != b"\x01\0\0\0":
        raise WasmFormatError(4, "unsupported WebAssembly version")
    info = ModuleInfo()
    reader = Reader(data, 8)
    while reader.pos < len(data):
        section_id = reader.byte()
        size = reader.u32()
        start, end = reader.pos, reader.pos + size
        if end > len(data):
            raise WasmFormatError(start, f"section {section_id} runs past the end")
        body = Reader(data[:end], start)
        _SECTIONS.get(section_id, _skip)(body, info)
        if section_id == 10:
            info.code_offset, info.code_size = start, size
        reader.pos = end
    return info


def _skip(reader: Reader, info: ModuleInfo) -> None:
    return


def _imports(reader: Reader, info: ModuleInfo) -> None:
    for _ in range(reader.u32()):
        module, name, kind = reader.name(), reader.name(), reader.byte()
        item = Import(module, name, _IMPORT_KINDS.get(kind, "unknown"))
        if kind == 0:
            reader.u32()
            info.imported_functions += 1
        elif kind == 1:
            reader.value_type()
            item.limits = reader.limits()
        elif kind == 2:
            item.limits = reader.limits()
        elif kind == 3:
            reader.value_type()
            reader.byte()  # mutability
        elif kind == 4:
            reader.byte()
            reader.u32()
        else:
            raise WasmFormatError(reader.pos, f"unknown import kind {kind}")
        info.imports.append(item)


def _functions(reader: Reader, info: ModuleInfo) -> None:
    info.functions = reader.u32()


def _tables(reader: Reader, info: ModuleInfo) -> None:
    for _ in range(reader.u32()):
        # A table with an initialiser (function references) is 0x40 0x00, its type, then an
        # expression this reader need not decode: the limits come before it and are all it keeps.
        if reader.data[reader.pos] == 0x40:
            reader.pos += 2
            reader.value_type()
            info.tables.append(reader.limits())
            _skip_constant_expression(reader)
            continue
        reader.value_type()
        info.tables.append(reader.limits())


def _skip_constant_expression(reader: Reader) -> None:
    """Up to and including its `end`: only the instructions a constant expression may hold."""
    while (op := reader.byte()) != 0x0B:
        if op in (0x41, 0x42, 0x23, 0xD2):  # i32/i64.const, global.get, ref.func
            reader.u32()
        elif op == 0x43:
            reader.pos += 4
        elif op == 0x44:
            reader.pos += 8
        elif op == 0xD0:  # ref.null heap type
            reader.u32()
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const add/sub/mul
            continue
        elif op == 0xFD and reader.u32() == 12:  # v128.const
            reader.pos += 16
        elif op == 0xFB:
            sub = reader.u32()
            if sub in (0, 1, 6, 7):  # struct.new(_default), array.new(_default): a type index
                reader.u32()
            elif sub == 8:  # array.new_fixed: type index and length
                reader.u32()
                reader.u32()
            elif sub not in (26, 27, 28):  # any.convert_extern, extern.convert_any, ref.i31
                raise WasmFormatError(reader.pos, f"unknown constant instruction 0xfb {sub}")
        else:
            raise WasmFormatError(reader.pos - 1, f"unknown constant instruction {op:#04x}")


def _memories(reader: Reader, info: ModuleInfo) -> None:
    for _ in range(reader.u32()):
        info.memories.append(reader.limits())


def _globals(reader: Reader, info: ModuleInfo) -> None:
    count = reader.u32()
    info.globals += count


def _exports(reader: Reader, info: ModuleInfo) -> None:
    for _ in range(reader.u32()):
        name, kind = reader.name(), reader.byte()
        reader.u32()
        info.exports.append((name, _EXPORT_KINDS.get(kind, "unknown")))


def _start(reader: Reader, info: ModuleInfo) -> None:
    info.has_start = True


_SECTIONS: dict[int, Callable[[Reader, ModuleInfo], None]] = {
    2: _imports,
    3: _functions,
    4: _tables,
    5: _memories,
    6: _globals,
    7: _exports,
    8: _start,
}


# -- instructions -------------------------------------------------------------------------


@dataclass
class LoopReport:
    function: int  # function index (imports first, as in the spec's index space)
    offset: int  # byte offset of the `loop` opcode in the module
    back_edge: bool = False
    exits: bool = False
    grows_memory: bool = False


# Instruction kinds, looked up in one 256-entry table per opcode (the walker's hot path). Every
# proposal wasmtime validates is here (a property test generates modules to hold it to that):
# exception handling (try_table, throw_ref, and the legacy try/catch/delegate), tail calls,
# function references, GC (0xfb), bulk memory and reference types (0xfc), SIMD and relaxed SIMD
# (0xfd), threads (0xfe), multi-memory and memory64 (in memargs).
PLAIN, END, BLOCK, LOOP, IF, BR, SKIP1, EXIT1, BR_TABLE, EXIT2, MEMARG, MEMSIZE, GROW, CONST, F32, F64 = range(16)
SELECT_T, REF_NULL, FC, SIMD, ATOMIC, EXIT0, UNKNOWN, DELEGATE, TRY_TABLE, GC = range(16, 26)
_KIND = bytearray([UNKNOWN]) * 256
for _op in (0x01, 0x05, 0x19, 0x1A, 0x1B, 0xD1, 0xD3, 0xD4, *range(0x45, 0xC5)):  # 0x05 else, 0x19 catch_all
    _KIND[_op] = PLAIN
for _op in (0x00, 0x0F, 0x0A):  # unreachable, return, throw_ref
    _KIND[_op] = EXIT0
_KIND[0x0B] = END
_KIND[0x02] = _KIND[0x06] = BLOCK  # block, try (legacy exceptions)
_KIND[0x03] = LOOP
_KIND[0x04] = IF
_KIND[0x0C] = BR
for _op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2, 0x07):  # locals, globals, tables, ref.func, catch
    _KIND[_op] = SKIP1
# br_if, call, return_call, throw, rethrow, call_ref, return_call_ref, br_on_null, br_on_non_null
for _op in (0x0D, 0x10, 0x12, 0x08, 0x09, 0x14, 0x15, 0xD5, 0xD6):
    _KIND[_op] = EXIT1
_KIND[0x0E] = BR_TABLE
_KIND[0x11] = _KIND[0x13] = EXIT2  # call_indirect, return_call_indirect
for _op in range(0x28, 0x3F):
    _KIND[_op] = MEMARG
_KIND[0x3F] = MEMSIZE
_KIND[0x40] = GROW
_KIND[0x41] = _KIND[0x42] = CONST
_KIND[0x43] = F32
_KIND[0x44] = F64
_KIND[0x1C] = SELECT_T
_KIND[0xD0] = REF_NULL
_KIND[0x18] = DELEGATE
_KIND[0x1F] = TRY_TABLE
_KIND[0xFB] = GC
_KIND[0xFC] = FC
_KIND[0xFD] = SIMD
_KIND[0xFE] = ATOMIC


# Runs of instructions that change nothing the analysis tracks, skipped by the `re` engine (C)
# instead of one Python iteration each: 69 MB of yosys in 2.25 s, not 3.9 s
# (benchmarks/bench_analysis.py). Inside a loop that is everything but structure, branches,
# calls, returns, traps and memory.grow; outside any loop, branches, calls, returns, traps and
# memory.grow change nothing either. Every form here is also decoded by the walker below (the
# skip is a shortcut, never the only reader): an encoding it does not list (a memarg naming a
# memory, a typed select) simply stops the run. A property test walks generated modules both
# ways and requires the same reports (tests/workloads/test_reader_proposals.py).
# Possessive (`*+`): a wasm encoding never needs the engine to back up, and not keeping the
# places it could back up to is a quarter of the time (27 -> 33 MB/s).
_LEB = rb"[\x80-\xff]*+[\x00-\x7f]"
_ANY = rb"[\x00-\xff]"
# plain; locals, globals, tables, consts, memory.size, ref.null; f32/f64.const; loads and stores
# in memory 0.
_NEUTRAL = b"|".join(
    [
        rb"[\x01\x05\x19\x1a\x1b\xd1\xd3\xd4\x45-\xc4]++",
        rb"[\x20-\x26\x07\xd2\x41\x42\x3f\xd0]" + _LEB,
        rb"\x43" + _ANY + rb"{4}",
        rb"\x44" + _ANY + rb"{8}",
        rb"[\x28-\x3e][\x00-\x3f]" + _LEB,
    ]
)
# Outside loops: also unreachable, return, throw_ref; br_if, call, throw, ...; call_indirect; br;
# memory.grow.
_OUTSIDE = rb"|[\x00\x0f\x0a]|[\x0d\x10\x12\x08\x09\x14\x15\xd5\xd6\x0c\x40]" + _LEB + rb"|[\x11\x13]" + _LEB + _LEB
# Inside loops that all have a way out already, another exit (br_if, call, return, trap) adds
# nothing: only `br` (a back edge?) and memory.grow still matter there.
_EXITED = rb"|[\x00\x0f\x0a]|[\x0d\x10\x12\x08\x09\x14\x15\xd5\xd6]" + _LEB + rb"|[\x11\x13]" + _LEB + _LEB
_SKIP_INSIDE = re.compile(rb"(?:" + _NEUTRAL + rb")*+")
_SKIP_EXITED = re.compile(rb"(?:" + _NEUTRAL + _EXITED + rb")*+")
_SKIP_OUTSIDE = re.compile(rb"(?:" + _NEUTRAL + _OUTSIDE + rb")*+")


def loops_of(raw: Buffer, info: ModuleInfo) -> Iterator[LoopReport]:
    """Every `loop` of every function body, with whether it branches back unconditionally, has any
    way out (a conditional branch, if, return, call, trap, or a branch past the loop), and grows memory."""
    data = bytes(raw)
    reader = Reader(memoryview(data), info.code_offset)
    end_of_code = info.code_offset + info.code_size
    for index in range(reader.u32()):
        size = reader.u32()
        body_end = reader.pos + size
        if body_end > end_of_code:
            raise WasmFormatError(reader.pos, "function body runs past the code section")
        if data.find(3, reader.pos, body_end) >= 0:  # no loop opcode byte, no loop: skip the walk
            yield from _walk(data, reader.pos, body_end, info.imported_functions + index)
        reader.pos = body_end


def _walk(data: bytes, pos: int, end: int, function: int) -> Iterator[LoopReport]:
    """One pass over a body. Local variables and inlined LEB skips: this loop is the cost of analysis."""
    kinds = _KIND
    reader = Reader(memoryview(data)[:end], pos)
    for _ in range(reader.u32()):  # local declarations
        reader.u32()
        reader.value_type()
    pos = reader.pos
    labels: list[LoopReport | None] = []  # None for block/if/try, a LoopReport for loop
    open_loops = 0
    unexited = 0  # open loops with no way out found yet (chooses the skip; never decides a finding)
    skip_inside, skip_exited, skip_outside = _SKIP_INSIDE.match, _SKIP_EXITED.match, _SKIP_OUTSIDE.match
    try:
        while pos < end:
            skip = skip_outside if not open_loops else skip_inside if unexited else skip_exited
            pos = skip(data, pos, end).end()  # type: ignore[union-attr]
            if pos >= end:
                break
            op = data[pos]
            kind = kinds[op]
            pos += 1
            if kind == PLAIN:
                continue
            if kind in (SKIP1, CONST):
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
            elif kind == MEMARG:
                align = data[pos]
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
                if align & 0x40:
                    while data[pos] & 0x80:
                        pos += 1
                    pos += 1
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
            elif kind == END:
                if labels:
                    closed = labels.pop()
                    if closed is not None:
                        open_loops -= 1
                        unexited -= not closed.exits
                        yield closed
            elif kind in (EXIT1, EXIT0, EXIT2, BR_TABLE, IF):
                if kind == EXIT1:
                    while data[pos] & 0x80:
                        pos += 1
                    pos += 1
                elif kind == EXIT2:
                    for _ in range(2):
                        while data[pos] & 0x80:
                            pos += 1
                        pos += 1
                elif kind == BR_TABLE:
                    reader.pos = pos
                    for _ in range(reader.u32() + 1):
                        reader.u32()
                    pos = reader.pos
                elif kind == IF:
                    pos = _skip_blocktype(data, pos)
                if open_loops:
                    _mark_exits(labels)
                    unexited = 0
                if kind == IF:
                    labels.append(None)
            elif kind in (BLOCK, LOOP):
                at = pos - 1
                pos = _skip_blocktype(data, pos)
                if kind == LOOP:
                    labels.append(LoopReport(function, at))
                    open_loops += 1
                    unexited += 1
                else:
                    labels.append(None)
            elif kind == BR:
                reader.pos = pos
                depth = reader.u32()
                pos = reader.pos
                _branch(labels, depth)
                if open_loops:
                    unexited = sum(1 for label in labels if label is not None and not label.exits)
            elif kind in (GROW, MEMSIZE):
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
                if kind == GROW:
                    for label in labels:
                        if label is not None:
                            label.grows_memory = True
            elif kind == F32:
                pos += 4
            elif kind == F64:
                pos += 8
            elif kind == REF_NULL:
                while data[pos] & 0x80:  # heap type (s33)
                    pos += 1
                pos += 1
            elif kind in (DELEGATE, TRY_TABLE):
                reader.pos = pos
                if kind == DELEGATE:  # `delegate label` ends its try block, like `end`
                    reader.u32()
                    if labels:
                        labels.pop()
                else:
                    reader.pos = _skip_blocktype(data, reader.pos)
                    _catch_clauses(reader)
                    labels.append(None)
                pos = reader.pos
            else:
                reader.pos = pos
                _rare(reader, kind, op, pos - 1)
                pos = reader.pos
    except IndexError:
        raise WasmFormatError(pos, "function body ends inside an instruction") from None


def _skip_blocktype(data: bytes, pos: int) -> int:
    """Empty (0x40), one value type (a byte; `ref`/`ref null` and a heap type), or a type index (s33)."""
    if data[pos] in (0x63, 0x64):
        pos += 1
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _catch_clauses(reader: Reader) -> None:
    """try_table's handlers: catch and catch_ref name a tag and a label, catch_all(_ref) a label."""
    for _ in range(reader.u32()):
        if reader.byte() in (0x00, 0x01):
            reader.u32()
        reader.u32()


def _rare(reader: Reader, kind: int, op: int, offset: int) -> None:
    if kind == SELECT_T:
        for _ in range(reader.u32()):
            reader.value_type()
    elif kind == GC:
        _prefixed_gc(reader)
    elif kind == FC:
        _prefixed_fc(reader)
    elif kind == SIMD:
        _prefixed_simd(reader)
    elif kind == ATOMIC:
        if reader.u32() == 0x03:
            reader.byte()
        else:
            _memarg(reader)
    else:
        raise WasmFormatError(offset, f"unknown opcode {op:#04x}")


def _mark_exits(labels: list[LoopReport | None]) -> None:
    for label in labels:
        if label is not None:
            label.exits = True


def _branch(labels: list[LoopReport | None], depth: int) -> None:
    """`br depth`: to a loop label it continues that loop; to any other label it leaves it, and so
    leaves every loop nested inside; past the outermost label it returns."""
    if depth >= len(labels):
        _mark_exits(labels)
        return
    target_index = len(labels) - 1 - depth
    target = labels[target_index]
    if target is not None:
        target.back_edge = True
        left = labels[target_index + 1 :]
    else:
        left = labels[target_index:]
    _mark_exits(left)


def _memarg(reader: Reader) -> None:
    align = reader.u32()
    if align & 0x40:  # multi-memory: a memory index follows
        reader.u32()
    reader.u32()


# 0xfb sub-opcodes (GC) by how many LEB immediates follow; br_on_cast(_fail) (24, 25) is special.
_GC_IMMEDIATES = {
    **dict.fromkeys((0, 1, 6, 7, 11, 12, 13, 14, 16, 20, 21, 22, 23), 1),
    **dict.fromkeys((2, 3, 4, 5, 8, 9, 10, 17, 18, 19), 2),
    **dict.fromkeys((15, 26, 27, 28, 29, 30), 0),
}


def _prefixed_gc(reader: Reader) -> None:
    sub = reader.u32()
    if sub in (24, 25):  # br_on_cast(_fail): flags, label, two heap types
        reader.byte()
        for _ in range(3):
            reader.u32()
        return
    count = _GC_IMMEDIATES.get(sub)
    if count is None:
        raise WasmFormatError(reader.pos, f"unknown 0xfb instruction {sub}")
    for _ in range(count):
        reader.u32()


def _prefixed_fc(reader: Reader) -> None:
    sub = reader.u32()
    if sub <= 7 or 19 <= sub <= 22:  # saturating truncations; wide arithmetic
        return
    if sub in (8, 12, 14) or sub == 10:  # memory.init, table.init, table.copy
        reader.u32()
        reader.u32()
    elif sub in (9, 11, 13, 15, 16, 17):
        reader.u32()
    else:
        raise WasmFormatError(reader.pos, f"unknown 0xfc instruction {sub}")


def _prefixed_simd(reader: Reader) -> None:
    sub = reader.u32()
    if sub <= 11 or sub in (92, 93):
        _memarg(reader)
    elif sub in (12, 13):
        reader.pos += 16
    elif 21 <= sub <= 34:
        reader.pos += 1
    elif 84 <= sub <= 91:
        _memarg(reader)
        reader.pos += 1
