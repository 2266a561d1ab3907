import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import XCTest

/// The message of each error case the unit tests match by case, once, in one table (the hostile files' messages are
/// HostileTableTests', through the CLI): what the user reads, written out here rather than computed.
final class ErrorMessageTests: XCTestCase {
    func testEachCaseReadsAsWritten() throws {
        var bidirectional = ModelConfig.placeholder
        bidirectional.causal = false
        var relu = ModelConfig.placeholder
        relu.activation = "relu"
        func refusal(_ form: any ReleaseForm, _ config: ModelConfig, _ dtype: String? = nil) -> Error {
            do { try form.check(config, dtype: dtype, source: "s"); return CommandLineError() } catch { return error }
        }
        let rows: [(Error, String)] = [
            (PickleError.refusedGlobal(global: "os.system", offset: 2),
             "pickle refers to global os.system at byte 2, which is not allowed (arapack never executes pickled code)"),
            (PickleError.unsupportedOpcode(opcode: 0x49, offset: 9), "pickle opcode 0x49 at byte 9 is not supported"),
            (PickleError.truncated(offset: 7), "pickle ends early at byte 7"),
            (PickleError.malformed(offset: 3, detail: "APPEND to a non-list"), "pickle malformed at byte 3: APPEND to a non-list"),
            (PickleError.limitExceeded(offset: 5, what: "memo entries", limit: 2), "pickle exceeds the memo entries limit of 2 at byte 5"),
            (DCPError.metadata(directory: "ckpt", detail: "not a Metadata"), "ckpt/.metadata: not a Metadata"),
            (DCPError.chunk(directory: "ckpt", tensor: "w", detail: "overlap"), "ckpt: tensor \"w\": overlap"),
            (FileError(path: "/nonexistent/file", operation: "open", code: ENOENT), "/nonexistent/file: open failed: No such file or directory"),
            (TorchError.badTensor(file: "u.pt", tensor: "x", detail: "dtype U16 cannot be written to a torch checkpoint"),
             "u.pt: tensor \"x\": dtype U16 cannot be written to a torch checkpoint"),
            (ForwardError.raggedBatch, "forward: all sequences must have the same length"),
            (ForwardError.tooLong(length: 17, limit: 16), "forward: sequence length 17 exceeds max_position_embeddings 16"),
            (ForwardError.tokenOutsideVocabulary(id: 128, vocabSize: 128), "forward: token id 128 is outside the vocabulary of 128"),
            (ConfigError.headsNotInferable(source: "m.pt"),
             "m.pt: the number of attention heads cannot be inferred from the tensors; pass --config with n_heads (or num_attention_heads)"),
            (ConfigError.conflict(source: "m.pt", field: "num_attention_heads", first: "4", firstOrigin: "the checkpoint's config", second: "8", secondOrigin: "h.json"),
             "m.pt: num_attention_heads is 4 in the checkpoint's config but 8 in h.json"),
            (ConfigError.gpt2Flag(origin: "config.json", field: "scale_attn_weights", required: true, found: "false"),
             "config.json: scale_attn_weights must be true for the AraFusion model, found false"),
            (ReleaseModelError.untied(path: "m.pt", head: "lm_head.weight", embedding: "token_embedding.weight", difference: "max |difference| 0.25"),
             "m.pt: the model is untied: lm_head.weight differs from token_embedding.weight (max |difference| 0.25); pass --allow-untied to release it with tie_word_embeddings false"),
            (CastError.float16Overflow(file: "b", tensor: "t", count: 1),
             "b: tensor \"t\": 1 value(s) exceed the float16 range (|x| ≥ 65520) and would become infinite; keep it in bf16 or f32"),
            (CastError.quantizedGroupSize(tensor: "t", flag: "--int8-group-size", groupSize: 7, columns: 32), "t: --int8-group-size 7 does not divide the 32 columns; pass a --int8-group-size that divides every row, or 0 for one scale per row"),
            (CastError.int4Columns(tensor: "t", columns: 12), "t: int4 packs 8 columns in each int32 word, and the 12 columns are not a multiple of 8"),
            (CastError.int4Shape(tensor: "t", stated: "I64 [2] = [3, 8]", expected: [3, 16]),
             "t: an int4 weight's _shape tensor must be I64 [2] = [3, 16] (its words and scale); found I64 [2] = [3, 8]"),
            (ArchiveError.zstdTruncated(file: "a.tar.zst"), "a.tar.zst: the zstd stream is truncated"),
            (ArchiveError.zstd(file: "a.tar.zst", message: "Restored data doesn't match checksum"), "a.tar.zst: zstd: Restored data doesn't match checksum"),
            (ParityError.goldenLayout(file: "g", vocabSize: 128), "g: a golden file holds ids (I64 [N, L]) and logits (F32 [N, L, 128])"),
            (BundleError.modelCard(file: "card.md", problem: "the front matter states no license"), "card.md: the front matter states no license"),
            (ArchiveError.bomb(file: "a.tar.zst", limit: 268_435_456),
             "a.tar.zst: unpacks to more than 268435456 bytes (8 × the archive's size + 256 MiB): a decompression bomb? nothing was kept"),
            (refusal(GPT2Bundle(), bidirectional),
             "s: an MDLM (bidirectional) model has no GPT-2 form: GPT-2's attention is causal; write a native bundle (--to bundle)"),
            (refusal(GPT2Bundle(), .placeholder, "int8"),
             "s: int8 is not written in the GPT-2 form (compressed-tensors' int8 layout is made for nn.Linear weights ([out, in], "
                + "scales along each output row), and GPT-2 keeps its linear layers as Conv1D ([in, out]); write a native int8 bundle (--to bundle) "
                + "or use f32, bf16 or f16 with --to gpt2)"),
            (refusal(GPT2Bundle(), .placeholder, "int4"),
             "s: int4 is not written in the GPT-2 form (compressed-tensors' int4 layout is made for nn.Linear weights ([out, in], "
                + "scales along each output row), and GPT-2 keeps its linear layers as Conv1D ([in, out]); write a native int4 bundle (--to bundle) "
                + "or use f32, bf16 or f16 with --to gpt2)"),
            (refusal(GGUFRelease(), bidirectional), "s: an MDLM (bidirectional) model has no GGUF form: llama.cpp's gpt2 architecture is causal"),
            (refusal(GGUFRelease(), relu),
             "s: activation \"relu\" has no GGUF form: llama.cpp's gpt2 architecture always applies GELU (src/models/gpt2.cpp, LLM_FFN_GELU)"),
            (refusal(GGUFRelease(), .placeholder, "int8"), "s: int8 is not written in the GGUF form (it stores f32, bf16, f16, q8_0, q6_k, q5_k_m, q5_k, q5_0, q4_k_m, q4_k, q4_0; int8 is written by --to bundle)"),
            (refusal(GGUFRelease(), .placeholder, "int4"), "s: int4 is not written in the GGUF form (it stores f32, bf16, f16, q8_0, q6_k, q5_k_m, q5_k, q5_0, q4_k_m, q4_k, q4_0; int4 is written by --to bundle)"),
        ]
        for (error, message) in rows { XCTAssertEqual("\(error)", message, TestSupport.caseName(error)) }
    }
}

/// What a check that should have refused returns instead.
private struct CommandLineError: Error, CustomStringConvertible {
    var description: String { "nothing was refused" }
}
