"""A streaming reader of the WebAssembly binary format, for static analysis.

It walks sections by their declared sizes over one memoryview (no copies), decodes only the
sections the analysis needs, and walks function bodies instruction by instruction without building
an object per instruction. Hand-written because no maintained Python package decodes wasm
instructions; the format (https://webassembly.github.io/spec/core/binary/) is small and stable.
"""

from __future__ import annotations

import mmap
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
        if flags > 0x07:
            raise WasmFormatError(self.pos - 1, f"bad limits flags {flags:#x}")
        minimum = self.u32()
        maximum = self.u32() if flags & 0x01 else None
        return Limits(minimum, maximum, memory64=bool(flags & 0x04), shared=bool(flags & 0x02))


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
            reader.byte()
            item.limits = reader.limits()
        elif kind == 2:
            item.limits = reader.limits()
        elif kind == 3:
            reader.byte()
            reader.byte()
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
        reader.byte()  # reference type
        info.tables.append(reader.limits())


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


# Instruction kinds, looked up in one 256-entry table per opcode (the walker's hot path).
PLAIN, END, BLOCK, LOOP, IF, BR, SKIP1, EXIT1, BR_TABLE, EXIT2, MEMARG, MEMSIZE, GROW, CONST, F32, F64 = range(16)
SELECT_T, REF_NULL, FC, SIMD, ATOMIC, EXIT0, UNKNOWN = range(16, 23)
_KIND = bytearray([UNKNOWN]) * 256
for _op in (0x01, 0x05, 0x1A, 0x1B, 0xD1, 0x19, *range(0x45, 0xC5)):
    _KIND[_op] = PLAIN
for _op in (0x00, 0x0F):  # unreachable, return
    _KIND[_op] = EXIT0
_KIND[0x0B] = END
_KIND[0x02] = _KIND[0x06] = BLOCK  # block, try
_KIND[0x03] = LOOP
_KIND[0x04] = IF
_KIND[0x0C] = BR
for _op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2, 0x07, 0x09, 0x18):
    _KIND[_op] = SKIP1
for _op in (0x0D, 0x10, 0x12, 0x08):  # br_if, call, return_call, throw
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
_KIND[0xFC] = FC
_KIND[0xFD] = SIMD
_KIND[0xFE] = ATOMIC
_BLOCKTYPE_BYTES = frozenset({0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})


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
        reader.byte()
    pos = reader.pos
    labels: list[LoopReport | None] = []  # None for block/if/try, a LoopReport for loop
    open_loops = 0
    try:
        while pos < end:
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
                if kind == IF:
                    labels.append(None)
            elif kind in (BLOCK, LOOP):
                at = pos - 1
                pos = _skip_blocktype(data, pos)
                if kind == LOOP:
                    labels.append(LoopReport(function, at))
                    open_loops += 1
                else:
                    labels.append(None)
            elif kind == BR:
                reader.pos = pos
                depth = reader.u32()
                pos = reader.pos
                _branch(labels, depth)
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
                pos += 1
            else:
                reader.pos = pos
                _rare(reader, kind, op, pos - 1)
                pos = reader.pos
    except IndexError:
        raise WasmFormatError(pos, "function body ends inside an instruction") from None


def _skip_blocktype(data: bytes, pos: int) -> int:
    if data[pos] in _BLOCKTYPE_BYTES:
        return pos + 1
    while data[pos] & 0x80:  # a type index (s33)
        pos += 1
    return pos + 1


def _rare(reader: Reader, kind: int, op: int, offset: int) -> None:
    if kind == SELECT_T:
        for _ in range(reader.u32()):
            reader.byte()
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


def _prefixed_fc(reader: Reader) -> None:
    sub = reader.u32()
    if sub <= 7:
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
