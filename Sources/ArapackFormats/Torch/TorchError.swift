/// Why a `torch.save` checkpoint was refused.
public enum TorchError: Error, Equatable, CustomStringConvertible, Sendable {
    case layout(file: String, detail: String)
    case unsafePickle(file: String, detail: String)
    case badTensor(file: String, tensor: String, detail: String)
    case storage(file: String, key: String, detail: String)
    case noStateDict(file: String, detail: String)
    case legacyFormat(file: String)

    public var description: String {
        switch self {
        case let .layout(file, detail): return "\(file): not a torch.save checkpoint: \(detail)"
        case let .unsafePickle(file, detail): return "\(file): \(detail)"
        case let .badTensor(file, tensor, detail): return "\(file): tensor \"\(tensor)\": \(detail)"
        case let .storage(file, key, detail): return "\(file): storage data/\(key): \(detail)"
        case let .noStateDict(file, detail): return "\(file): no model state dict found: \(detail)"
        case let .legacyFormat(file):
            return "\(file): legacy (pre-1.6) torch.save format is not read; re-save it with torch >= 1.6: torch.save(torch.load(f, weights_only=True), g)"
        }
    }
}
