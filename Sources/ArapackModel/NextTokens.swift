import CKernels

extension ForwardPass {
    /// The `k` most likely next tokens of one position's `logits` (its row of `vocab` values): ids by logit, ties by
    /// the smaller id, each with its softmax probability over the whole row, computed in double with arapack's own
    /// exp (the same digits on every machine).
    public static func nextTokens(_ logits: ArraySlice<Float>, k: Int) -> [(id: Int, logit: Float, probability: Double)] {
        let row = Array(logits)
        guard !row.isEmpty else { return [] }
        var order = Array(row.indices)
        order.sort { row[$0] > row[$1] || row[$0] == row[$1] && $0 < $1 }
        let top = Double(row[order[0]])
        let total = row.reduce(0.0) { $0 + arapack_exp(Double($1) - top) }
        return order.prefix(k).map { ($0, row[$0], arapack_exp(Double(row[$0]) - top) / total) }
    }
}
