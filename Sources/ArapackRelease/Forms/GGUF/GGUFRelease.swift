import ArapackFormats
import ArapackModel
import ArapackTensor

/// One GGUF file for llama.cpp's gpt2 architecture (docs/model-family.md, "The GGUF form"), written by `GGUFExport` and
/// read back by `GGUFVerifier`: causal models with GELU (llama.cpp's gpt2 graph always applies it) and a tokenizer;
/// matrices f32, bf16, f16, q8_0, or llama.cpp's 4-, 5- and 6-bit types and mixes (`GGUFScheme`).
public struct GGUFRelease: ReleaseForm {
    public init() {}
    public var name: String { "gguf" }
    public var title: String { "GGUF form" }
    public var summary: String { "one file for llama.cpp; AR with GELU only, needs a tokenizer" }
    public var layout: NamingLayout { .gguf }
    public var dtypes: [String] { GGUFScheme.all.map(\.name) }

    public func check(_ config: ModelConfig, dtype: String?, source: String) throws {
        guard config.causal else {
            throw ReleaseFormError(self, source: source, refusal: .bidirectional, reason: "llama.cpp's gpt2 architecture is causal")
        }
        guard config.activation == "gelu" else {
            throw ReleaseFormError(self, source: source, refusal: .activation(config.activation),
                                   reason: "llama.cpp's gpt2 architecture always applies GELU (src/models/gpt2.cpp, LLM_FFN_GELU)")
        }
        try checkDtype(dtype, source: source)
    }

    /// The block formats are GGUF's own.
    public var dtypeNotes: [String: String] {
        Dictionary(uniqueKeysWithValues: GGUFScheme.all.filter(\.quantizes).map {
            ($0.name, "--dtype \($0.name) is a GGUF block format: it applies to --to gguf (bundles take int8 and int4)")
        })
    }

    public func isWritten(as format: SourceFormat) -> Bool { format == .gguf }

    public var destinationKind: DestinationGuard.Kind { .ggufFile }


    public func check(_ model: ReleaseModel, for conversion: Conversion) throws {
        try GGUFExport.check(model, options: options(conversion))
    }

    func options(_ conversion: Conversion) -> GGUFOptions {
        GGUFOptions(scheme: conversion.options.dtype.flatMap(GGUFScheme.named), allowTokenizerMismatch: conversion.options.allowTokenizerMismatch)
    }

    /// Written, checked and signed in a private folder beside DST, then moved into place with its signature.
    public func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result {
        let options = options(conversion)
        let staging = try AtomicDirectory(destination: destination)
        let staged = staging.path(splitPath(destination).1)
        let written = try GGUFExport.write(model, options: options, to: staged, replacing: false, progress: progress)
        var result = Conversion.Result(model: model, manifest: nil)
        if let parity = conversion.parity {
            progress.begin("parity", total: 0)
            var run = try parity.run(bundle: try ReleaseModel(path: staged), source: model)
            progress.end()
            run.bundle = conversion.destination
            guard run.passed else { throw ConversionError.parityFailed(run) }
            result.parity = run
        }
        if let signing = conversion.signing {
            try ModelSignature.sign(folder: staged, name: splitPath(destination).1, key: signing.key, signaturePath: staged + ".sig", provenance: nil)
            try moveIntoPlace(staged + ".sig", to: ModelSignature.defaultSignaturePath(of: destination), replacing: conversion.force)
        }
        try moveIntoPlace(staged, to: destination, replacing: conversion.force)
        if let mismatch = written.mismatch {
            result.warnings.append("\(conversion.destination): llama.cpp tokenizes text otherwise than the tokenizer (\(mismatch)); written as --allow-tokenizer-mismatch asked, and recorded in the file's \(GGUFExport.mismatchKey)")
        }
        for note in written.tokenizerNotes { result.warnings.append("\(conversion.destination): " + note) }
        if let morph = model.tokenizer?.morphBPEFiles, !morph.isEmpty {
            result.warnings.append("\(conversion.destination): the tokenizer's MorphBPE segmentation (\(morph.joined(separator: ", "))) does not travel into GGUF: llama.cpp applies the base BPE alone, so its ids differ from the published tokenizer's wherever MorphBPE splits words")
        }
        return result
    }

    public func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport {
        try GGUFVerifier.verify(path: path)
    }
}

extension GGUFRelease {
    /// What a GGUF file says about the model, into a config assembly: the `gpt2.*` sizes, the special ids, GELU and
    /// causal attention (the only gpt2 graph llama.cpp has). The float32 eps is read back as the shortest decimal that
    /// gives the same float32 (1e-05, as the source had it).
    public static func describe(_ file: GGUFFile, into assembly: inout ConfigAssembly) throws {
        let origin = file.path + " (GGUF metadata)"
        guard file["general.architecture"]?.stringValue == "gpt2" else {
            throw GGUFError.format(file: file.path, offset: 0, detail: "general.architecture is \(file["general.architecture"]?.summary ?? "missing"); arapack reads the gpt2 architecture it writes")
        }
        for key in GGUFConfigKey.allCases {
            guard let value = file[key.stringValue] else { continue }
            if key == .layerNormEpsilon {
                guard let eps = value.floatValue else { throw GGUFError.format(file: file.path, offset: 0, detail: "\(key.stringValue) is \(value.summary), not a number") }
                try assembly.add(key.field, .number(Float(eps).description), origin: origin)
                continue
            }
            guard let n = value.intValue else { throw GGUFError.format(file: file.path, offset: 0, detail: "\(key.stringValue) is \(value.summary), not an integer") }
            try assembly.add(key.field, .int(n), origin: origin)
        }
        try assembly.add(.activation, .string("gelu"), origin: origin)
        try assembly.add(.causal, .bool(true), origin: origin)
    }
}

extension GGUFRelease {
    /// What a written file's tokenizer does otherwise in llama.cpp than in `tokenizers` (`inspect` and `verify` print it).
    public static func tokenizerNotes(_ file: GGUFFile) -> [String] { GGUFTokenizer.notes(file) }
}
