/// The pickle opcodes arapack's machine reads and its writer emits (protocols 2-5; Python's `pickletools` names, as
/// candle's `OpCode` lists them). An opcode not listed here is refused by the machine.
enum PickleOpcode: UInt8 {
    // Framing
    case proto = 0x80, frame = 0x95, stop = 0x2E
    // Scalars
    case pushNone = 0x4E, newTrue = 0x88, newFalse = 0x89
    case binInt = 0x4A, binInt1 = 0x4B, binInt2 = 0x4D, long1 = 0x8A, long4 = 0x8B, binFloat = 0x47
    case binUnicode = 0x58, shortBinUnicode = 0x8C, binUnicode8 = 0x8D, binString = 0x54, shortBinString = 0x55
    case binBytes = 0x42, shortBinBytes = 0x43, binBytes8 = 0x8E, byteArray8 = 0x96
    // Tuples, lists, dicts, sets
    case emptyTuple = 0x29, tuple1 = 0x85, tuple2 = 0x86, tuple3 = 0x87, tuple = 0x74
    case emptyList = 0x5D, list = 0x6C, append = 0x61, appends = 0x65
    case emptyDict = 0x7D, dict = 0x64, setItem = 0x73, setItems = 0x75
    case emptySet = 0x8F, frozenSet = 0x91, addItems = 0x90
    // The stack and the memo
    case mark = 0x28, pop = 0x30, popMark = 0x31, dup = 0x32
    case binPut = 0x71, longBinPut = 0x72, memoize = 0x94, binGet = 0x68, longBinGet = 0x6A
    // Globals and objects
    case global = 0x63, stackGlobal = 0x93, reduce = 0x52, newObj = 0x81, newObjEx = 0x92, build = 0x62
    case binPersID = 0x51, inst = 0x69
}
