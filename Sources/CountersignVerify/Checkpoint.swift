import Foundation

/// A checkpoint in the C2SP tlog-checkpoint text form: the origin line, the tree size in decimal,
/// the base64 root hash, then optional extension lines, each line ending in `\n`.
///
/// Countersign signs the exact text as a DSSE statement with payload type
/// ``PayloadType/checkpoint`` (no signature lines inside the text).
public struct Checkpoint: Sendable, Hashable {
    /// The log's name (`ledger.origin`), the first line.
    public var origin: String
    /// Number of leaves in the tree.
    public var treeSize: UInt64
    /// RFC 6962 root hash of the first `treeSize` leaves, 32 bytes.
    public var rootHash: [UInt8]
    /// Optional extension lines, without their newlines (Countersign writes none).
    public var extensions: [String]

    public init(origin: String, treeSize: UInt64, rootHash: [UInt8], extensions: [String] = []) {
        self.origin = origin
        self.treeSize = treeSize
        self.rootHash = rootHash
        self.extensions = extensions
    }

    /// The checkpoint text, each line ending in `\n`.
    public var text: String {
        var out = "\(origin)\n\(treeSize)\n\(Data(rootHash).base64EncodedString())\n"
        for e in extensions { out += e + "\n" }
        return out
    }

    /// The checkpoint text as UTF-8 bytes: the bytes that are signed and stored.
    public var bytes: [UInt8] { Array(text.utf8) }

    /// Parses checkpoint text strictly: a non-empty origin, a decimal size without leading zeros,
    /// standard base64 of a 32-byte hash, non-empty extension lines, and a final newline.
    /// - Throws: ``VerificationError`` with code `badCheckpoint`.
    public init(parsing bytes: [UInt8]) throws {
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw VerificationError(.badCheckpoint, "checkpoint is not UTF-8")
        }
        guard text.hasSuffix("\n") else { throw VerificationError(.badCheckpoint, "checkpoint does not end in a newline") }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3 else { throw VerificationError(.badCheckpoint, "checkpoint needs origin, size and root lines") }
        guard !lines[0].isEmpty else { throw VerificationError(.badCheckpoint, "empty origin line") }
        let sizeLine = lines[1]
        guard !sizeLine.isEmpty, sizeLine.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              sizeLine == "0" || !sizeLine.hasPrefix("0"), let size = UInt64(sizeLine) else {
            throw VerificationError(.badCheckpoint, "bad tree size line")
        }
        guard let root = Data(base64Encoded: lines[2]), root.count == Merkle.hashSize,
              root.base64EncodedString() == lines[2] else {
            throw VerificationError(.badCheckpoint, "root hash line is not base64 of 32 bytes")
        }
        let extensions = Array(lines.dropFirst(3))
        guard extensions.allSatisfy({ !$0.isEmpty }) else { throw VerificationError(.badCheckpoint, "empty extension line") }
        self.init(origin: lines[0], treeSize: size, rootHash: Array(root), extensions: extensions)
    }
}
