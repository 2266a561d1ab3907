extension String {
    /// The string safe to print on one line: C0 and C1 control characters (newlines, ANSI escapes) written as
    /// `\u{…}`, so a name taken from a file cannot forge or split a line of output.
    public var escapingControlCharacters: String {
        var out = ""
        for u in unicodeScalars {
            if u.value < 0x20 || (0x7f...0x9f).contains(u.value) { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
        return out
    }
}
