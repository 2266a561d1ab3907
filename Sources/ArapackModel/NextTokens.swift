import CKernels

extension ForwardPass {
    /// The `k` most likely next tokens of one position's `logits` (its row of `vocab` values): ids by logit, ties by
    /// the smaller id, each with its softmax probability over the whole row, computed in double with arapack's own
    /// exp (the same digits on every machine).
    ///
    /// The `k` best are kept in a heap whose root is the worst of them (one pass over the row, `V log k` steps), then
    /// sorted: the order a full sort of the row would give, without sorting 76,800 logits to print five.
    public static func nextTokens(_ logits: ArraySlice<Float>, k: Int) -> [(id: Int, logit: Float, probability: Double)] {
        let row = Array(logits)
        guard !row.isEmpty, k > 0 else { return [] }
        func better(_ a: Int, _ b: Int) -> Bool { row[a] > row[b] || row[a] == row[b] && a < b }
        var kept = Array(0..<min(k, row.count))
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let left = 2 * i + 1, right = left + 1
                var worst = i
                if left < kept.count, better(kept[worst], kept[left]) { worst = left }
                if right < kept.count, better(kept[worst], kept[right]) { worst = right }
                if worst == i { return }
                kept.swapAt(i, worst)
                i = worst
            }
        }
        for i in stride(from: kept.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        for i in kept.count..<row.count where better(i, kept[0]) {
            kept[0] = i
            siftDown(0)
        }
        kept.sort(by: better)
        let top = Double(row[kept[0]])
        let total = row.reduce(0.0) { $0 + arapack_exp(Double($1) - top) }
        return kept.map { ($0, row[$0], arapack_exp(Double(row[$0]) - top) / total) }
    }
}
