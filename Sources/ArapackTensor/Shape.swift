/// Element and byte counts of a shape, computed with overflow-reporting arithmetic.
public enum Shape {
    /// The number of elements of `dims`, or nil when a dimension is negative or the product overflows.
    public static func elementCount(_ dims: [Int]) -> Int? {
        var count = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// The number of bytes `dims` of `dtype` occupy, or nil on overflow.
    public static func byteCount(_ dims: [Int], dtype: DType) -> Int? {
        guard let n = elementCount(dims) else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: dtype.byteSize)
        return overflow ? nil : bytes
    }
}
