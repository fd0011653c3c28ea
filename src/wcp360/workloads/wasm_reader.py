"""A streaming reader of the WebAssembly binary format, for static analysis.

It walks sections by their declared sizes over one memoryview (no copies), decodes only the
sections the analysis needs, and walks function bodies instruction by instruction without building
an object per instruction. Hand-written because no maintained Python package decodes wasm
instructions; the format (https://webassembly.github.io/spec/core/binary/) is small and stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


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

    skip_leb = u32  # signed LEBs have the same length rules; the value is not needed

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


def read_module(raw: bytes) -> ModuleInfo:
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


# Opcodes with no immediates (MVP numeric, parametric and control): checked with one set lookup.
_PLAIN = frozenset({0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)})
_U32 = frozenset({0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2, 0x08, 0x09, 0x18, 0x07})
_EXITS = frozenset({0x0D, 0x0E, 0x04, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x00, 0x08})


def loops_of(raw: bytes, info: ModuleInfo) -> Iterator[LoopReport]:
    """Every `loop` of every function body, with whether it branches back unconditionally, has any
    way out (a conditional branch, if, return, call, trap, or a branch past the loop), and grows memory."""
    data = memoryview(raw)
    reader = Reader(data, info.code_offset)
    end_of_code = info.code_offset + info.code_size
    for index in range(reader.u32()):
        size = reader.u32()
        body_end = reader.pos + size
        if body_end > end_of_code:
            raise WasmFormatError(reader.pos, "function body runs past the code section")
        if 0x03 in data[reader.pos : body_end]:  # no loop opcode byte, no loop: skip the walk
            yield from _walk(Reader(data[:body_end], reader.pos), info.imported_functions + index)
        reader.pos = body_end


def _walk(reader: Reader, function: int) -> Iterator[LoopReport]:
    for _ in range(reader.u32()):  # local declarations
        reader.u32()
        reader.byte()
    # The label stack: None for block/if/try, a LoopReport for loop.
    labels: list[LoopReport | None] = []
    data, end = reader.data, len(reader.data)
    while reader.pos < end:
        offset = reader.pos
        op = data[offset]
        reader.pos += 1
        if op in _PLAIN:
            if op == 0x0B:
                if not labels:
                    continue  # the function's own end
                closed = labels.pop()
                if closed is not None:
                    yield closed
            elif op in _EXITS:
                _mark_exits(labels)
            continue
        if op in (0x02, 0x03, 0x04, 0x06):  # block, loop, if, try: a block type
            _blocktype(reader)
            if op == 0x04:
                _mark_exits(labels)
            labels.append(LoopReport(function, offset) if op == 0x03 else None)
        elif op == 0x0C:  # br
            depth = reader.u32()
            _branch(labels, depth)
        elif op in _U32:
            reader.u32()
            if op in _EXITS:
                _mark_exits(labels)
        elif op == 0x0E:  # br_table
            for _ in range(reader.u32() + 1):
                reader.u32()
            _mark_exits(labels)
        elif op in (0x11, 0x13):  # call_indirect, return_call_indirect
            reader.u32()
            reader.u32()
            _mark_exits(labels)
        elif op == 0x1C:  # select with types
            for _ in range(reader.u32()):
                reader.byte()
        elif 0x28 <= op <= 0x3E:  # loads and stores: memarg
            _memarg(reader)
        elif op in (0x3F, 0x40):  # memory.size, memory.grow: memory index
            reader.u32()
            if op == 0x40:
                for label in labels:
                    if label is not None:
                        label.grows_memory = True
        elif op in (0x41, 0x42):  # i32.const, i64.const
            reader.skip_leb()
        elif op == 0x43:
            reader.pos += 4
        elif op == 0x44:
            reader.pos += 8
        elif op == 0xD0:  # ref.null
            reader.byte()
        elif op == 0xFC:
            _prefixed_fc(reader)
        elif op == 0xFD:
            _prefixed_simd(reader)
        elif op == 0xFE:
            sub = reader.u32()
            if sub == 0x03:
                reader.byte()
            else:
                _memarg(reader)
        elif op == 0x19:  # catch_all
            continue
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


def _blocktype(reader: Reader) -> None:
    first = reader.data[reader.pos]
    if first == 0x40 or first in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
        reader.pos += 1
    else:
        reader.skip_leb()  # a type index (s33)


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
