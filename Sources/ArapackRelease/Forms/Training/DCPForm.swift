import ArapackFormats
import ArapackTensor

/// A single-rank torch.distributed.checkpoint folder (docs/formats.md) that `dcp.load` reads into
/// `{"model": state_dict}`, written by `TrainingExport.writeDCP` and read back by `DCPCheckpoint`.
public struct DCPForm: TrainingForm {
    public init() {}
    public var name: String { "dcp" }
    public var title: String { "DCP folder" }
    public var summary: String { "a single-rank torch.distributed.checkpoint folder" }
    public var destinationKind: DestinationGuard.Kind { .dcpFolder }
    public func isWritten(as format: SourceFormat) -> Bool { format == .dcp }

    public func writeTraining(_ model: ReleaseModel, dtype: DType?, at destination: String, replacing: Bool) throws {
        let folder = try AtomicDirectory(destination: destination)
        try TrainingExport.writeDCP(model, dtype: dtype, into: folder.temporaryPath)
        try folder.commit(replacing: replacing)
    }
}
