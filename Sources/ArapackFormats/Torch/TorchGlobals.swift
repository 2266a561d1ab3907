import ArapackTensor

/// The globals a checkpoint may name, and how `inspect` classifies the others.
public enum TorchGlobals {
    /// Storage classes and the dtype each holds.
    public static let storageTypes: [String: DType] = [
        "FloatStorage": .f32, "DoubleStorage": .f64, "HalfStorage": .f16, "BFloat16Storage": .bf16,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool,
    ]

    /// The one dtype ↔ torch name table: the canonical name of each dtype, as torch spells its dtype globals
    /// (`torch.float32`), DCP's metadata and config.json's `torch_dtype` name them.
    public static let dtypeName: [DType: String] = [
        .f32: "float32", .f64: "float64", .f16: "float16", .bf16: "bfloat16", .i64: "int64", .i32: "int32", .i16: "int16",
        .i8: "int8", .u8: "uint8", .bool: "bool", .u16: "uint16", .u32: "uint32", .u64: "uint64",
        .f8e4m3: "float8_e4m3fn", .f8e5m2: "float8_e5m2",
    ]

    /// torch dtype globals (`torch.float32`, …) as arapack dtypes (for `_rebuild_tensor_v3`): the canonical
    /// names and torch's aliases.
    public static let dtypes: [String: DType] = Dictionary(uniqueKeysWithValues: dtypeName.map { ($1, $0) }).merging(
        ["float": .f32, "double": .f64, "half": .f16, "long": .i64, "int": .i32, "short": .i16]) { canonical, _ in canonical }

    /// What `torch.load(weights_only=True)` would accept for a model checkpoint, and arapack reads.
    public static let checkpointAllowList: Set<PickleGlobal> = {
        var s: Set<PickleGlobal> = [
            PickleGlobal("collections", "OrderedDict"), PickleGlobal("builtins", "dict"), PickleGlobal("builtins", "set"),
            PickleGlobal("builtins", "frozenset"), PickleGlobal("_codecs", "encode"),
            // Protocol 2 names the builtins module __builtin__ (torch's weights_only loader maps it, as pickle does).
            PickleGlobal("__builtin__", "set"), PickleGlobal("__builtin__", "dict"),
            // Complex tensors load with weights_only; arapack has no complex dtype, so they stay opaque records
            // (never part of a model, which must be floating point).
            PickleGlobal("torch", "ComplexFloatStorage"), PickleGlobal("torch", "ComplexDoubleStorage"),
            PickleGlobal("torch", "complex64"), PickleGlobal("torch", "complex128"), PickleGlobal("torch", "cfloat"),
            PickleGlobal("torch", "cdouble"),
            PickleGlobal("torch._utils", "_rebuild_tensor_v2"), PickleGlobal("torch._utils", "_rebuild_tensor_v3"),
            PickleGlobal("torch._utils", "_rebuild_parameter"), PickleGlobal("torch._utils", "_rebuild_parameter_with_state"),
            PickleGlobal("torch._tensor", "_rebuild_from_type_v2"), PickleGlobal("torch.nn.parameter", "Parameter"),
            PickleGlobal("torch", "Tensor"), PickleGlobal("torch", "Size"), PickleGlobal("torch", "UntypedStorage"),
            PickleGlobal("torch.storage", "UntypedStorage"),
            PickleGlobal("torch", "device"), PickleGlobal("torch", "strided"),
        ]
        for name in storageTypes.keys { s.insert(PickleGlobal("torch", name)) }
        for name in dtypes.keys { s.insert(PickleGlobal("torch", name)) }
        return s
    }()

    /// How a global is classified in the `inspect` globals report.
    public enum Safety: String, Sendable {
        case safe, unknown, dangerous
    }

    /// Modules and names that scanners flag because calling them runs code, touches the system or the network.
    static let dangerousModules: Set<String> = [
        "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pty", "runpy", "importlib", "pickle", "_pickle",
        "marshal", "ctypes", "code", "codeop", "webbrowser", "requests", "urllib", "urllib.request", "http.client",
        "httplib", "ftplib", "telnetlib", "smtplib", "asyncio", "multiprocessing", "threading", "signal", "tempfile",
        "pdb", "bdb", "timeit", "profile", "cProfile", "trace", "venv", "ensurepip", "pip", "setuptools", "distutils",
        "commands", "popen2", "torch.hub", "torch.serialization", "torch._dynamo", "torch.utils.cpp_extension", "torch.jit", "dill", "joblib",
    ]
    static let dangerousBuiltins: Set<String> = [
        "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "__import__", "globals", "locals",
        "vars", "input", "breakpoint", "help", "memoryview", "apply", "execfile", "file", "reload",
    ]

    /// Classifies `g` for the globals report.
    public static func classify(_ g: PickleGlobal) -> Safety {
        if checkpointAllowList.contains(g) || DCPGlobals.allowList.contains(g) { return .safe }
        let root = String(g.module.split(separator: ".").first ?? "")
        if dangerousModules.contains(g.module) || dangerousModules.contains(root) { return .dangerous }
        if ["builtins", "__builtin__", "operator", "functools", "types", "inspect"].contains(g.module),
           dangerousBuiltins.contains(g.name) || ["attrgetter", "methodcaller", "partial", "reduce", "FunctionType", "CodeType"].contains(g.name) {
            return .dangerous
        }
        return .unknown
    }
}

/// DCP metadata globals (the dataclasses torch.distributed.checkpoint pickles), read as inert records.
public enum DCPGlobals {
    public static let allowList: Set<PickleGlobal> = {
        let m = "torch.distributed.checkpoint.metadata"
        var s: Set<PickleGlobal> = [
            PickleGlobal(m, "Metadata"), PickleGlobal(m, "TensorStorageMetadata"), PickleGlobal(m, "BytesStorageMetadata"),
            PickleGlobal(m, "ChunkStorageMetadata"), PickleGlobal(m, "TensorProperties"), PickleGlobal(m, "MetadataIndex"),
            PickleGlobal(m, "StorageMeta"), PickleGlobal(m, "_MEM_FORMAT_ENCODING"),
            PickleGlobal("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
            PickleGlobal("torch.distributed.checkpoint.planner", "LoadItemType"),
            PickleGlobal("torch.distributed.checkpoint.planner", "WriteItemType"),
            PickleGlobal("torch.distributed.checkpoint._extension", "ExtensionRegistry"),
            PickleGlobal("torch", "Size"), PickleGlobal("torch", "strided"), PickleGlobal("torch", "contiguous_format"),
            PickleGlobal("torch", "device"), PickleGlobal("collections", "OrderedDict"), PickleGlobal("builtins", "set"),
            PickleGlobal("torch", "layout"), PickleGlobal("torch", "memory_format"), PickleGlobal("_codecs", "encode"),
            // Named, never called: TensorProperties pickles its layout as _get_layout("torch.strided"),
            // StorageMeta its checkpoint_id as a pathlib path.
            PickleGlobal("torch.serialization", "_get_layout"), PickleGlobal("pathlib", "PosixPath"),
            PickleGlobal("pathlib", "WindowsPath"), PickleGlobal("pathlib", "PurePosixPath"),
        ]
        for name in TorchGlobals.dtypes.keys { s.insert(PickleGlobal("torch", name)) }
        return s
    }()
}
